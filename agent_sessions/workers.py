"""Synchronous ORM work from async code: :func:`run_in_worker` and :func:`stream_events`.

Django's ORM cannot hold a transaction across ``await`` points, so a
coroutine runs the synchronous call — one short transaction — in a worker
thread and awaits the result. The event loop is never blocked.

Why ``thread_sensitive=False``: with ``True`` asgiref funnels every call into
one thread (per request under ASGI, one for the whole process otherwise), so a
long-poll (``aget_events(wait_timeout_ms=...)``, :func:`stream_events`) would
stall every other ORM call behind it. A pool thread does not have that
problem, but Django keeps connections per thread; each call therefore runs
between two :func:`django.db.close_old_connections` calls, exactly as a
request does: with ``CONN_MAX_AGE = 0`` the connection is closed when the call
ends (nothing leaks), with a positive ``CONN_MAX_AGE`` it is reused by later
calls on the same pool thread until it expires or breaks.

The services' declared twins are in :mod:`agent_sessions.aio` (which
re-exports everything here); :func:`with_async_twins` generates twins for a
class of your own.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from agent_sessions.core import Event
from agent_sessions.validation import check_int

__all__ = [
    "DEFAULT_STREAM_BATCH",
    "DEFAULT_STREAM_POLL_MS",
    "run_in_worker",
    "stream_events",
    "with_async_twins",
    "with_fresh_connections",
]

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C", bound=type)

#: Marks generated coroutines, so that decorating twice (or a subclass) never twins a twin.
_TWIN_MARKER = "__asm_async_twin__"

#: How long one long-poll inside :func:`stream_events` waits before asking again.
DEFAULT_STREAM_POLL_MS = 5_000
DEFAULT_STREAM_BATCH = 100


def with_fresh_connections(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``func`` between two ``close_old_connections()``, as Django wraps a request."""
    # Same hygiene as Django's request_started/request_finished handlers: drop
    # a broken or expired connection before the work, and after it close what
    # CONN_MAX_AGE says must not outlive the call.
    close_old_connections()
    try:
        return func(*args, **kwargs)
    finally:
        close_old_connections()


async def run_in_worker(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the synchronous ``func`` in a pool thread and return its result.

    The call is what the adapters and the generated twins use: ``func`` should
    do its database work in one transaction. Connections follow
    ``CONN_MAX_AGE`` (closed after the call by default).

    Args:
        func: A synchronous callable.
        *args: Positional arguments for ``func``.
        **kwargs: Keyword arguments for ``func``.

    Returns:
        Whatever ``func`` returns; whatever it raises propagates unchanged.
    """
    worker = sync_to_async(with_fresh_connections, thread_sensitive=False)
    return await worker(func, *args, **kwargs)


def _make_twin(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    async def twin(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Looked up at call time so that a subclass override is honoured.
        return await run_in_worker(getattr(self, name), *args, **kwargs)

    functools.update_wrapper(twin, method)
    twin.__name__ = f"a{name}"
    twin.__qualname__ = f"{method.__qualname__.rpartition('.')[0]}.a{name}".lstrip(".")
    summary = f"Async twin of :meth:`{name}`: same arguments, result and errors.\n\n"
    twin.__doc__ = summary + inspect.cleandoc(method.__doc__ or "")
    # Keep the sync signature for help() and IDEs, without __wrapped__ making
    # inspect treat the coroutine function as a plain function.
    twin.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
    del twin.__wrapped__  # type: ignore[attr-defined]
    setattr(twin, _TWIN_MARKER, True)
    return twin


def _public_methods(cls: type) -> list[tuple[str, Callable[..., Any]]]:
    found: list[tuple[str, Callable[..., Any]]] = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name)
        if (
            inspect.isfunction(attr)
            and not inspect.iscoroutinefunction(attr)
            and not getattr(attr, _TWIN_MARKER, False)
        ):
            found.append((name, attr))
    return found


def with_async_twins(cls: C) -> C:
    """Class decorator: give every public synchronous method an ``a``-prefixed coroutine twin.

    ``store.aget_session(sid)`` awaits ``store.get_session(sid)`` run in a
    worker thread (see the module docstring). A twin that the class already
    defines is left alone. A class with ``get_events`` also gets
    :meth:`stream_events`.

    Args:
        cls: The class to extend (it is modified in place).

    Returns:
        The same class.
    """
    for name, method in _public_methods(cls):
        twin_name = f"a{name}"
        if twin_name not in cls.__dict__ and not hasattr(cls, twin_name):
            setattr(cls, twin_name, _make_twin(name, method))
    if hasattr(cls, "get_events") and not hasattr(cls, "stream_events"):
        cls.stream_events = stream_events  # type: ignore[attr-defined]
    return cls


async def stream_events(
    self: Any,
    session_id: str,
    *,
    after: int = 0,
    run_id: str | None = None,
    type: str | Sequence[str] | None = None,
    poll_timeout_ms: int = DEFAULT_STREAM_POLL_MS,
    batch_size: int = DEFAULT_STREAM_BATCH,
) -> AsyncIterator[Event]:
    """Yield the session's events in sequence order as they are committed, without end.

    Events already stored after ``after`` come first, then each new one as it
    is appended (a long-poll through ``aget_events(wait_timeout_ms=...)``
    underneath, so an idle stream costs one query per ``poll_timeout_ms``).
    While idle the stream holds no thread and no connection: it awaits the
    process's shared :mod:`~agent_sessions.listener`. The stream ends when its
    consumer stops: ``break`` out of the ``async for``, call ``aclose()``, or
    cancel the task.

    Args:
        session_id: The session to follow.
        after: Start after this sequence number (0: from the beginning).
        run_id: Only events of this run.
        type: Only events of this type, or of any of these types.
        poll_timeout_ms: How long each long-poll waits, in milliseconds (≥ 1).
        batch_size: At most this many events fetched per query (≥ 1).

    Yields:
        Stored :class:`~agent_sessions.core.Event` objects.

    Raises:
        ValidationError: an invalid filter or bound (raised on the first
            iteration, like ``get_events``).
    """
    check_int(poll_timeout_ms, "poll_timeout_ms", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    last_seen = after
    while True:
        batch = await self.aget_events(
            session_id,
            after=last_seen,
            run_id=run_id,
            type=type,
            limit=batch_size,
            wait_timeout_ms=poll_timeout_ms,
        )
        for event in batch:
            yield event
            last_seen = event.sequence_number
