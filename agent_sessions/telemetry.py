"""OpenTelemetry spans and metrics for the store, the query API and maintenance (optional).

Installed with the ``[otel]`` extra (``opentelemetry-api``); without it this
module turns into no-ops: :func:`traced` returns the function itself, so an
installation without the extra pays nothing. With it, the project's
OpenTelemetry SDK setup decides where spans and metrics go (nothing is
recorded until one is configured).

Spans (kind INTERNAL) are named ``agent_sessions.<operation>``
(``agent_sessions.append_event``, ``agent_sessions.search_events``,
``agent_sessions.maintenance.execute``…) and carry, where they apply:

- ``db.system.name`` (``postgresql``/``sqlite``) and ``db.operation.name``
  (the method name);
- the GenAI semantic conventions: ``gen_ai.conversation.id`` (the session
  id), ``gen_ai.agent.id`` (the session's agent id), ``gen_ai.provider.name``
  (a run's or event's provider), and from a saved run's ``token_usage``
  ``gen_ai.usage.input_tokens`` / ``gen_ai.usage.output_tokens``;
- ``agent_sessions.event.type``, ``agent_sessions.event.count``,
  ``agent_sessions.run.id``;
- on failure, the span's status is ERROR with the exception recorded and
  ``error.type`` set to the :class:`~agent_sessions.errors.AgentSessionsError`
  code (or the exception's class name).

Metrics (meter ``agent_sessions``):

- ``agent_sessions.append.duration`` (histogram, s; attribute
  ``db.operation.name``: append_event / append_events / flush);
- ``agent_sessions.long_poll.duration`` (histogram, s; attribute
  ``agent_sessions.long_poll.outcome``: ``events`` or ``timeout``), the time a
  ``get_events(wait_timeout_ms=…)`` spent waiting;
- ``agent_sessions.maintenance.batches`` (counter; attribute
  ``agent_sessions.maintenance.step``) and
  ``agent_sessions.maintenance.rows`` (counter, same attribute).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from agent_sessions import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter
    from opentelemetry.trace import Tracer

try:
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry import trace as _otel_trace
except ImportError:  # the [otel] extra is not installed: everything below is a no-op
    _otel_trace = None  # type: ignore[assignment]
    _otel_metrics = None  # type: ignore[assignment]

__all__ = [
    "ENABLED",
    "Attributes",
    "count_maintenance_batch",
    "long_poll_timer",
    "traced",
]

F = TypeVar("F", bound=Callable[..., Any])
#: Span and metric attributes: what OpenTelemetry accepts as values.
Attributes = Mapping[str, str | int | float | bool]
#: A function that names the attributes of one call, from its arguments.
Describe = Callable[..., Attributes]

#: Whether opentelemetry-api is importable (the ``[otel]`` extra).
ENABLED = _otel_trace is not None

SCOPE = "agent_sessions"


class _Instruments:
    """The tracer and the metric instruments, created on first use."""

    def __init__(self) -> None:
        assert _otel_trace is not None
        assert _otel_metrics is not None
        # The API's proxy tracer and meter follow a provider configured later.
        self.tracer: Tracer = _otel_trace.get_tracer(SCOPE, __version__)
        meter: Meter = _otel_metrics.get_meter(SCOPE, __version__)
        self.append_duration: Histogram = meter.create_histogram(
            "agent_sessions.append.duration",
            unit="s",
            description="Time to store events (append_event, append_events, flush).",
        )
        self.long_poll_duration: Histogram = meter.create_histogram(
            "agent_sessions.long_poll.duration",
            unit="s",
            description="Time a long-polling get_events() waited for events.",
        )
        self.maintenance_batches: Counter = meter.create_counter(
            "agent_sessions.maintenance.batches",
            unit="{batch}",
            description="Maintenance batches done (one short transaction each).",
        )
        self.maintenance_rows: Counter = meter.create_counter(
            "agent_sessions.maintenance.rows",
            unit="{row}",
            description="Rows changed (or, in a dry run, counted) by maintenance batches.",
        )


def _configured() -> bool:
    """Whether a tracer or meter provider is set (without one, spans and metrics are no-ops).

    Until the application sets a provider, the API hands out proxies that
    record nothing; they switch to the real provider once it is set, and so
    does this check (it runs per call).
    """
    assert _otel_trace is not None
    assert _otel_metrics is not None
    return not (
        isinstance(_otel_trace.get_tracer_provider(), _otel_trace.ProxyTracerProvider)
        and type(_otel_metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    )


@functools.cache
def _instruments() -> _Instruments:
    return _Instruments()


def traced(
    operation: str, describe: Describe | None = None, *, append: bool = False
) -> Callable[[F], F]:
    """Decorator: run the method in a span ``agent_sessions.<operation>``.

    Without the ``[otel]`` extra the method is returned unchanged.

    Args:
        operation: The span's operation name (usually the method's name).
        describe: Called with the method's arguments (``self`` first) when the
            span records; returns its attributes. Its failures are ignored.
        append: Also record the call's duration in ``agent_sessions.append.duration``.
    """
    if not ENABLED:
        return lambda func: func

    def decorate(func: F) -> F:
        name = f"{SCOPE}.{operation}"

        @contextmanager
        def span_for(args: Any, kwargs: Any) -> Iterator[Any]:
            instruments = _instruments()
            started = time.perf_counter() if append else 0.0
            # The span's own error handling is replaced by ours (error.type).
            with instruments.tracer.start_as_current_span(
                name, record_exception=False, set_status_on_exception=False
            ) as span:
                if span.is_recording():
                    span.set_attribute("db.operation.name", operation)
                    if describe is not None:
                        _describe(span, describe, args, kwargs)
                try:
                    yield span
                except BaseException as exc:
                    _failed(span, exc)
                    raise
                finally:
                    if append:
                        instruments.append_duration.record(
                            time.perf_counter() - started, {"db.operation.name": operation}
                        )

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if not _configured():
                    return await func(*args, **kwargs)
                with span_for(args, kwargs):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The API's no-op span and histogram still cost a few microseconds a
            # call; on the hot append path that is worth skipping.
            if not _configured():
                return func(*args, **kwargs)
            with span_for(args, kwargs):
                return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def _describe(span: Any, describe: Describe, args: Any, kwargs: Any) -> None:
    try:
        attributes = describe(*args, **kwargs)
    except Exception:  # bad arguments: the method itself reports them
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)


def _failed(span: Any, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    if span.is_recording():
        code = getattr(exc, "code", None)
        span.set_attribute("error.type", code if isinstance(code, str) else type(exc).__qualname__)
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))


@contextmanager
def long_poll_timer() -> Iterator[Callable[[bool], None]]:
    """Time a long-poll's wait; call the yielded function with whether events arrived."""
    if not ENABLED:
        yield lambda found: None
        return
    started = time.perf_counter()
    outcome = {"found": False}

    def done(found: bool) -> None:
        outcome["found"] = found

    try:
        yield done
    finally:
        _instruments().long_poll_duration.record(
            time.perf_counter() - started,
            {"agent_sessions.long_poll.outcome": "events" if outcome["found"] else "timeout"},
        )


def count_maintenance_batch(step: str, rows: int) -> None:
    """Count one maintenance batch of ``rows`` rows in step ``step``."""
    if not ENABLED:
        return
    instruments = _instruments()
    attributes = {"agent_sessions.maintenance.step": step}
    instruments.maintenance_batches.add(1, attributes)
    instruments.maintenance_rows.add(rows, attributes)


# --------------------------------------------------------------------------- attribute helpers


def session_attributes(session_id: object = None, **extra: Any) -> dict[str, Any]:
    """``gen_ai.conversation.id`` plus the given attributes (None values dropped later)."""
    return {"gen_ai.conversation.id": session_id if isinstance(session_id, str) else None, **extra}


def run_attributes(run: Any) -> dict[str, Any]:
    """The GenAI attributes of a :class:`~agent_sessions.core.Run`."""
    usage = getattr(run, "token_usage", None) or {}
    attributes: dict[str, Any] = {
        "gen_ai.conversation.id": getattr(run, "session_id", None),
        "agent_sessions.run.id": getattr(run, "id", None),
        "gen_ai.provider.name": getattr(run, "provider", None),
    }
    for key in ("input_tokens", "output_tokens"):
        value = usage.get(key) if isinstance(usage, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            attributes[f"gen_ai.usage.{key}"] = value
    model = (getattr(run, "provider_metadata", None) or {}).get("model")
    if isinstance(model, str):
        attributes["gen_ai.request.model"] = model
    return {key: value for key, value in attributes.items() if value is not None}


def query_attributes(api: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The attributes of a read-only query call: its session, agent and provider filters."""
    from django.db import connections, router

    from agent_sessions.models import Event

    session_id = args[0] if args else kwargs.get("session_id")
    attributes = {
        "db.system.name": connections[api.using or router.db_for_read(Event)].vendor,
        "gen_ai.conversation.id": session_id,
        "gen_ai.agent.id": kwargs.get("agent_id"),
        "gen_ai.provider.name": kwargs.get("provider"),
    }
    return {key: value for key, value in attributes.items() if isinstance(value, str)}


def maintenance_attributes(maintenance: Any, policy: Any, *args: Any, **kwargs: Any) -> Attributes:
    """The attributes of a maintenance run: the database, dry run, batch size."""
    from django.db import connections

    return {
        "db.system.name": connections[maintenance.alias].vendor,
        "agent_sessions.maintenance.dry_run": bool(kwargs.get("dry_run", False)),
        "agent_sessions.maintenance.batch_size": int(getattr(policy, "batch_size", 0) or 0),
    }
