"""OpenTelemetry spans and metrics, read back with the SDK's in-memory exporter and reader."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agent_sessions import telemetry
from agent_sessions.core import Event, EventType, Run, Session
from agent_sessions.errors import ValidationError
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.retention import RetentionPolicy
from agent_sessions.store import DjangoSessionStore

pytestmark = pytest.mark.django_db(transaction=True)

_EXPORTER = InMemorySpanExporter()
_READER = InMemoryMetricReader()
_installed = False


def _install() -> None:
    """Install the in-memory SDK once per process (global providers can be set only once)."""
    global _installed
    if _installed:
        return
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    _installed = True


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _install()
    _EXPORTER.clear()
    _READER.get_metrics_data()  # drop what earlier tests recorded (cumulative points stay)
    yield _EXPORTER
    _EXPORTER.clear()


def span_named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [span for span in exporter.get_finished_spans() if span.name == name]
    assert found, [span.name for span in exporter.get_finished_spans()]
    return found[-1]


def metric_points(name: str) -> list[Any]:
    data = _READER.get_metrics_data()
    points: list[Any] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


def test_append_event_span_and_duration(spans: InMemorySpanExporter, vendor: str) -> None:
    store = DjangoSessionStore()
    session = Session.new("agent-7")
    store.save_session(session)
    store.append_event(Event.new(EventType.MESSAGE_SENT, session.id, provider="claude"))
    span = span_named(spans, "agent_sessions.append_event")
    assert span.kind == trace.SpanKind.INTERNAL
    assert span.attributes is not None
    assert span.attributes["gen_ai.conversation.id"] == session.id
    assert span.attributes["gen_ai.provider.name"] == "claude"
    assert span.attributes["agent_sessions.event.type"] == "message_sent"
    assert span.attributes["db.operation.name"] == "append_event"
    assert span.attributes["db.system.name"] == vendor
    saved = span_named(spans, "agent_sessions.save_session")
    assert saved.attributes is not None
    assert saved.attributes["gen_ai.agent.id"] == "agent-7"
    durations = [
        point
        for point in metric_points("agent_sessions.append.duration")
        if point.attributes["db.operation.name"] == "append_event"
    ]
    assert durations
    assert durations[0].count >= 1


def test_run_spans_carry_token_usage(spans: InMemorySpanExporter) -> None:
    store = DjangoSessionStore()
    session = Session.new("agent-7")
    run = Run.new(
        session.id,
        provider="codex",
        token_usage={"input_tokens": 120, "output_tokens": 30},
        provider_metadata={"model": "o3"},
    )
    store.flush(session=session, run=run, events=[Event.new("run_started", session.id)])
    span = span_named(spans, "agent_sessions.flush")
    assert span.attributes is not None
    assert span.attributes["gen_ai.usage.input_tokens"] == 120
    assert span.attributes["gen_ai.usage.output_tokens"] == 30
    assert span.attributes["gen_ai.provider.name"] == "codex"
    assert span.attributes["gen_ai.request.model"] == "o3"
    assert span.attributes["gen_ai.agent.id"] == "agent-7"
    assert span.attributes["agent_sessions.event.count"] == 1


def test_a_failed_call_is_an_error_span(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValidationError):
        DjangoSessionStore().append_events(["not an event"])  # type: ignore[list-item]
    span = span_named(spans, "agent_sessions.append_events")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "validation_error"
    assert [event.name for event in span.events] == ["exception"]


def test_query_and_maintenance_spans(spans: InMemorySpanExporter) -> None:
    store = DjangoSessionStore()
    session = Session.new("agent-7", status="completed")
    store.save_session(session)
    store.append_events([Event.new(EventType.MESSAGE_SENT, session.id) for _ in range(5)])
    DjangoQueryAPI().get_session_stats(session.id)
    stats = span_named(spans, "agent_sessions.get_session_stats")
    assert stats.attributes is not None
    assert stats.attributes["gen_ai.conversation.id"] == session.id
    report = DjangoMaintenance().execute(
        RetentionPolicy(max_events_per_session=2, prune_event_types_first=["message_sent"])
    )
    assert report.events_pruned == 3
    run = span_named(spans, "agent_sessions.maintenance.execute")
    assert run.attributes is not None
    assert run.attributes["agent_sessions.maintenance.dry_run"] is False
    batches = {
        point.attributes["agent_sessions.maintenance.step"]: point.value
        for point in metric_points("agent_sessions.maintenance.batches")
    }
    assert batches
    rows = {
        point.attributes["agent_sessions.maintenance.step"]: point.value
        for point in metric_points("agent_sessions.maintenance.rows")
    }
    assert sum(rows.values()) >= 3


def test_long_poll_wait_is_measured(spans: InMemorySpanExporter) -> None:
    store = DjangoSessionStore()
    assert store.get_events("ses_nobody", wait_timeout_ms=30) == []
    points = metric_points("agent_sessions.long_poll.duration")
    timeouts = [p for p in points if p.attributes["agent_sessions.long_poll.outcome"] == "timeout"]
    assert timeouts
    assert timeouts[0].sum >= 0.02


def test_without_the_extra_traced_is_the_function_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "ENABLED", False)

    def work() -> int:
        return 1

    assert telemetry.traced("work")(work) is work


def test_the_package_imports_without_opentelemetry() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import django; from django.conf import settings\n"
        "settings.configure(INSTALLED_APPS=['agent_sessions'], DATABASES={})\n"
        "django.setup()\n"
        "from agent_sessions import telemetry, store\n"
        "assert not telemetry.ENABLED\n"
        "f = store.DjangoSessionStore.append_event_with_sequence\n"
        "assert not hasattr(f, '__wrapped__'), f\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_async_long_poll_has_its_span(spans: InMemorySpanExporter) -> None:
    store = DjangoSessionStore()
    assert asyncio.run(store.aget_events("ses_async_nobody", wait_timeout_ms=20)) == []
    span = span_named(spans, "agent_sessions.get_events")
    assert span.attributes is not None
    assert span.attributes["gen_ai.conversation.id"] == "ses_async_nobody"


def test_spans_start_once_a_provider_is_set_and_cost_nothing_before() -> None:
    """Without a configured provider the store skips the API's no-op span; a provider set
    later (even after the first calls) is used from then on. Fresh interpreter: the
    global providers of this test run are already set."""
    import subprocess
    import sys

    code = """
from agent_sessions import telemetry
assert not telemetry._configured()
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

calls = []

@telemetry.traced("probe")
def probe():
    calls.append(trace.get_current_span().get_span_context().is_valid)

probe()
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
assert telemetry._configured()
probe()
assert calls == [False, True], calls
assert [span.name for span in exporter.get_finished_spans()] == ["agent_sessions.probe"]
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
