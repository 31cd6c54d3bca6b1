"""The event pipeline on every write path: shape warnings, redaction before write, signals (§12)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.core.management import call_command
from django.db import connection, transaction
from django.dispatch import Signal
from django.urls import reverse

from agent_sessions import signals
from agent_sessions.core import Event, EventType, Run, Session
from agent_sessions.errors import ValidationError
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.pipeline import WARNINGS_KEY, shape_warnings
from agent_sessions.retention import RetentionPolicy
from agent_sessions.store import DjangoSessionStore

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-ant-api03-" + "Zx9" * 12
REDACTING = {"REDACTION": {"enabled": True}}


@pytest.fixture
def session(store: DjangoSessionStore) -> Session:
    saved = Session.new("agent-1")
    store.save_session(saved)
    return saved


@pytest.fixture
def redacting(settings: Any) -> None:
    settings.AGENT_SESSIONS = REDACTING


def raw_event_text(event_id: str) -> str:
    """The stored row as the database returns it (JSON columns as text)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CAST(data AS TEXT), CAST(metadata AS TEXT) FROM asm_events WHERE id = %s",
            [event_id],
        )
        row = cursor.fetchone()
    assert row is not None
    return f"{row[0]} {row[1]}"


def leaky(session_id: str, **fields: Any) -> Event:
    return Event.new(
        EventType.TOOL_CALL_COMPLETED,
        session_id,
        data={"tool_name": "shell", "tool_output": f"export KEY={SECRET}"},
        **fields,
    )


# --------------------------------------------------------------------------- shape warnings


def test_shape_warning_messages_are_asms() -> None:
    assert shape_warnings("message_received", {"content": 3}) == [
        "field 'content' expected string, got 3",
        "missing required field 'role' for shape validation",
    ]
    assert shape_warnings("token_usage_updated", {"input_tokens": True, "output_tokens": None}) == [
        "field 'input_tokens' expected integer, got true",
        "missing required field 'output_tokens' for shape validation",
    ]
    assert shape_warnings("policy_violation", {"policy": {"a": [1]}, "kind": "x"}) == [
        "field 'policy' expected string, got {\"a\": [1]}"
    ]
    assert shape_warnings("tool_approval_requested", {"tool_name": "t"}) == [
        "missing required field 'policy_name' for shape validation"
    ]
    assert shape_warnings("message_sent", {}) == []
    assert shape_warnings("run_completed", {"stop_reason": "end_turn"}) == []


def test_a_long_quoted_value_is_cut() -> None:
    (warning,) = shape_warnings("run_completed", {"stop_reason": ["x" * 1000]})
    assert warning.endswith("...")
    assert len(warning) < 260


def test_warnings_are_stored_in_metadata_and_the_event_is_written(
    store: DjangoSessionStore, session: Session
) -> None:
    event = Event.new(
        EventType.MESSAGE_RECEIVED, session.id, data={"content": "hi"}, metadata={"m": 1}
    )
    stored = store.append_event(event)
    expected = ["missing required field 'role' for shape validation"]
    assert stored.metadata == {"m": 1, WARNINGS_KEY: expected}
    assert store.get_events(session.id)[0].metadata == {"m": 1, WARNINGS_KEY: expected}
    assert event.metadata == {"m": 1}  # the caller's object is untouched


def test_a_well_shaped_event_gets_no_warnings_key(
    store: DjangoSessionStore, session: Session
) -> None:
    stored = store.append_event(
        Event.new(EventType.MESSAGE_RECEIVED, session.id, data={"content": "hi", "role": "user"})
    )
    assert stored.metadata == {}


def test_shape_warnings_setting_turns_them_off(
    settings: Any, store: DjangoSessionStore, session: Session
) -> None:
    settings.AGENT_SESSIONS = {"SHAPE_WARNINGS": False}
    stored = store.append_event(Event.new(EventType.MESSAGE_RECEIVED, session.id))
    assert stored.metadata == {}
    assert store.get_events(session.id)[0].metadata == {}


# --------------------------------------------------------------------------- redaction


def test_redaction_is_off_by_default(store: DjangoSessionStore, session: Session) -> None:
    stored = store.append_event(leaky(session.id))
    assert SECRET in stored.data["tool_output"]
    assert SECRET in raw_event_text(stored.id)


@pytest.mark.usefixtures("redacting")
def test_append_event_redacts_before_write(store: DjangoSessionStore, session: Session) -> None:
    event = leaky(session.id)
    stored = store.append_event(event)
    assert stored.data["tool_output"] == "export KEY=[REDACTED]"
    assert SECRET not in raw_event_text(stored.id)
    assert store.get_events(session.id)[0].data == stored.data
    assert SECRET in event.data["tool_output"]  # the caller's object is untouched


@pytest.mark.usefixtures("redacting")
def test_append_events_redacts_every_event(store: DjangoSessionStore, session: Session) -> None:
    stored = store.append_events([leaky(session.id), leaky(session.id), leaky(session.id)])
    assert [e.data["tool_output"] for e in stored] == ["export KEY=[REDACTED]"] * 3
    for event in stored:
        assert SECRET not in raw_event_text(event.id)


@pytest.mark.usefixtures("redacting")
def test_flush_redacts_its_events(store: DjangoSessionStore) -> None:
    session = Session.new("agent-1")
    run = Run.new(session.id)
    events = [leaky(session.id, run_id=run.id), leaky(session.id, run_id=run.id)]
    store.flush(session=session, run=run, events=events)
    for event in store.get_events(session.id):
        assert event.data["tool_output"] == "export KEY=[REDACTED]"
        assert SECRET not in raw_event_text(event.id)


def test_metadata_scanning_on_the_write_path(
    settings: Any, store: DjangoSessionStore, session: Session
) -> None:
    settings.AGENT_SESSIONS = {
        "REDACTION": {"enabled": True, "scan_metadata": True, "replacement": "categorized"}
    }
    stored = store.append_event(
        Event.new(
            EventType.MESSAGE_SENT,
            session.id,
            data={"content": "ok"},
            metadata={"headers": {"authorization": "Bearer " + "q1W2e3R4t5" * 3}},
        )
    )
    assert stored.metadata == {"headers": {"authorization": "[REDACTED:bearer_token]"}}
    assert "q1W2e3R4t5" not in raw_event_text(stored.id)


def test_warnings_never_quote_a_redacted_secret(
    settings: Any, store: DjangoSessionStore, session: Session
) -> None:
    settings.AGENT_SESSIONS = REDACTING
    stored = store.append_event(
        Event.new(EventType.RUN_COMPLETED, session.id, data={"stop_reason": {"why": SECRET}})
    )
    assert stored.metadata[WARNINGS_KEY] == [
        'field \'stop_reason\' expected string, got {"why": "[REDACTED]"}'
    ]
    assert SECRET not in raw_event_text(stored.id)


@pytest.mark.usefixtures("redacting")
def test_a_duplicate_append_returns_the_stored_event(
    store: DjangoSessionStore, session: Session
) -> None:
    first = store.append_event(leaky(session.id, id="evt_dup"))
    again = store.append_event(
        Event.new(EventType.MESSAGE_SENT, session.id, id="evt_dup", data={"content": SECRET})
    )
    assert again == first


# --------------------------------------------------------------------------- signals


class Recorder:
    """Connects to signals and records each call's keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[Signal, dict[str, Any]]] = []

    def connect(self, *watched: Signal) -> None:
        for signal in watched:
            signal.connect(self.receive, weak=False, dispatch_uid=f"recorder-{id(signal)}")
        self._watched = watched

    def receive(self, signal: Signal, sender: Any, **kwargs: Any) -> None:
        assert sender is DjangoSessionStore
        self.calls.append((signal, kwargs))

    def of(self, signal: Signal) -> list[dict[str, Any]]:
        return [kwargs for s, kwargs in self.calls if s is signal]

    def disconnect(self) -> None:
        for signal in self._watched:
            signal.disconnect(dispatch_uid=f"recorder-{id(signal)}")


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recording = Recorder()
    recording.connect(
        signals.event_persisted,
        signals.event_rejected,
        signals.event_redacted,
        signals.event_validation_warning,
    )
    yield recording
    recording.disconnect()


@pytest.mark.usefixtures("redacting")
def test_signals_of_a_stored_event(
    recorder: Recorder, store: DjangoSessionStore, session: Session
) -> None:
    stored = store.append_event(
        Event.new(EventType.MESSAGE_RECEIVED, session.id, data={"content": f"key {SECRET}"})
    )
    assert recorder.of(signals.event_persisted) == [{"event": stored}]
    assert recorder.of(signals.event_redacted) == [
        {"event": stored, "redaction_count": 1, "fields_redacted": ["data.content"]}
    ]
    assert recorder.of(signals.event_validation_warning) == [
        {"event": stored, "warnings": ["missing required field 'role' for shape validation"]}
    ]


def test_event_persisted_once_per_new_event(
    recorder: Recorder, store: DjangoSessionStore, session: Session
) -> None:
    events = [Event.new(EventType.MESSAGE_SENT, session.id) for _ in range(3)]
    stored = store.append_events([*events, events[0]])
    store.append_event(events[1])  # already stored: nothing new
    assert [c["event"] for c in recorder.of(signals.event_persisted)] == stored[:3]
    assert recorder.of(signals.event_redacted) == []


def test_signals_wait_for_the_outer_commit(
    recorder: Recorder, store: DjangoSessionStore, session: Session
) -> None:
    with transaction.atomic():
        store.append_event(Event.new(EventType.MESSAGE_SENT, session.id))
        store.append_events([Event.new(EventType.MESSAGE_SENT, session.id)])
        assert recorder.calls == []
    assert len(recorder.of(signals.event_persisted)) == 2


def test_no_signals_for_rolled_back_work(
    recorder: Recorder, store: DjangoSessionStore, session: Session
) -> None:
    def work_then_fail() -> None:
        with transaction.atomic():
            store.append_event(Event.new(EventType.MESSAGE_SENT, session.id))
            events = [Event.new("message_sent", session.id)]
            store.flush(session=session, run=Run.new(session.id), events=events)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        work_then_fail()
    assert recorder.calls == []
    assert store.get_events(session.id) == []


def test_event_rejected(recorder: Recorder, store: DjangoSessionStore, session: Session) -> None:
    bad = Event.new(EventType.MESSAGE_SENT, session.id)
    bad.data = {"text": "nul \x00"}
    with pytest.raises(ValidationError) as raised:
        store.append_event(bad)
    assert recorder.of(signals.event_rejected) == [
        {"error": raised.value, "session_id": session.id}
    ]
    with pytest.raises(ValidationError):
        store.append_events([Event.new(EventType.MESSAGE_SENT, session.id), bad])
    with pytest.raises(ValidationError):
        store.flush(session=session, run=Run.new(session.id), events=["not an event"])  # type: ignore[list-item]
    assert [c["session_id"] for c in recorder.of(signals.event_rejected)] == [session.id] * 3
    assert recorder.of(signals.event_persisted) == []


def test_a_failing_receiver_never_breaks_a_write(
    store: DjangoSessionStore, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    seen: list[Event] = []
    signals.event_persisted.connect(broken, weak=False, dispatch_uid="broken")
    signals.event_persisted.connect(
        lambda event, **kwargs: seen.append(event), weak=False, dispatch_uid="seen"
    )
    try:
        with caplog.at_level(logging.ERROR, logger="django.dispatch"):
            stored = store.append_event(Event.new(EventType.MESSAGE_SENT, session.id))
    finally:
        signals.event_persisted.disconnect(dispatch_uid="broken")
        signals.event_persisted.disconnect(dispatch_uid="seen")
    assert seen == [stored]
    assert store.get_events(session.id) == [stored]
    assert "receiver bug" in caplog.text


def test_no_receivers_no_callbacks(store: DjangoSessionStore, session: Session) -> None:
    assert not signals.wanted()
    with transaction.atomic():
        store.append_event(Event.new(EventType.MESSAGE_SENT, session.id))
        assert connection.run_on_commit == []


# --------------------------------------------------------------------------- nowhere downstream


def test_a_redacted_secret_is_nowhere_downstream(
    settings: Any, store: DjangoSessionStore, admin_client: Any, tmp_path: Path
) -> None:
    """Row, archive line (asm_maintenance --archive-dir), admin page and API export: no secret."""
    settings.AGENT_SESSIONS = REDACTING
    session = Session.new("agent-1", status="completed")
    store.save_session(session)
    kept = store.append_event(leaky(session.id))
    pruned = store.append_events([leaky(session.id), leaky(session.id)])
    assert SECRET not in raw_event_text(kept.id)

    # Admin URLs carry ids quoted (an id may hold "_22", which the admin unquotes).
    event_page = reverse("admin:agent_sessions_event_change", args=[quote(kept.id)])
    for page in (
        event_page,
        reverse("admin:agent_sessions_event_changelist") + f"?session_id={session.id}",
        reverse("admin:agent_sessions_session_change", args=[quote(session.id)]),
        reverse("agent_sessions:session-export", args=[session.id]),
    ):
        response = admin_client.get(page)
        assert response.status_code == 200, page
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert SECRET.encode() not in body, page
    assert b"[REDACTED]" in admin_client.get(event_page).content

    call_command(
        "asm_maintenance",
        "--archive-dir",
        str(tmp_path),
        "--max-events-per-session",
        "1",
        "--prune-event-types-first",
        "tool_call_completed",
        stdout=StringIO(),
    )
    [archive] = sorted(tmp_path.glob("*.jsonl"))
    lines = archive.read_text().splitlines()
    assert len(lines) == 2
    assert all("[REDACTED]" in line and SECRET not in line for line in lines)
    archived = {json.loads(line)["record"]["id"] for line in lines}
    assert archived < {kept.id, *(event.id for event in pruned)}


def test_maintenance_completed_after_a_run(store: DjangoSessionStore) -> None:
    received: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    signals.maintenance_completed.connect(receive, weak=False, dispatch_uid="maintenance-test")
    try:
        report = DjangoMaintenance().execute(RetentionPolicy())

        def run_then_roll_back() -> None:
            with transaction.atomic():
                DjangoMaintenance().execute(RetentionPolicy(), dry_run=True)
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            run_then_roll_back()
    finally:
        signals.maintenance_completed.disconnect(dispatch_uid="maintenance-test")
    assert len(received) == 1
    assert received[0]["sender"] is DjangoMaintenance
    assert received[0]["report"] is report
    assert received[0]["duration_ms"] == report.duration_ms


@pytest.mark.usefixtures("redacting")
def test_a_batch_with_a_stored_id_redacts_and_signals_each_new_event_once(
    recorder: Recorder, store: DjangoSessionStore, session: Session
) -> None:
    """PostgreSQL writes the batch a second time without the stored id; the pipeline runs once."""
    earlier = store.append_event(Event.new(EventType.MESSAGE_SENT, session.id))
    secret = Event.new(EventType.MESSAGE_RECEIVED, session.id, data={"content": f"key {SECRET}"})
    stored = store.append_events([secret, earlier, Event.new(EventType.MESSAGE_SENT, session.id)])
    assert [e.sequence_number for e in stored] == [2, 1, 3]
    assert SECRET not in stored[0].data["content"]
    assert recorder.of(signals.event_redacted) == [
        {"event": stored[0], "redaction_count": 1, "fields_redacted": ["data.content"]}
    ]
    assert [c["event"] for c in recorder.of(signals.event_persisted)] == [
        earlier,
        stored[0],
        stored[2],
    ]
    assert store.get_latest_sequence(session.id) == 3
