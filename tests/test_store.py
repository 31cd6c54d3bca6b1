"""DjangoSessionStore: every SessionStore method behaves as CONTRACT §5 says."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import override_settings

from agent_sessions import models as m
from agent_sessions.core import Event, EventType, Run, RunStatus, Session, SessionStatus
from agent_sessions.errors import NotFoundError, StorageError, ValidationError
from agent_sessions.ports import SessionStore
from agent_sessions.store import DjangoSessionStore, delete_sessions_cascade
from tests.factories import ArtifactFactory, EventFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture
def session(store: DjangoSessionStore) -> Session:
    saved = Session.new("agent-1")
    store.save_session(saved)
    return saved


def message(session_id: str, **fields: Any) -> Event:
    return Event.new(EventType.MESSAGE_SENT, session_id, **fields)


# --------------------------------------------------------------------------- sessions


def test_store_implements_the_session_store_protocol(store: DjangoSessionStore) -> None:
    assert isinstance(store, SessionStore)


def test_saved_session_reads_back_equal(store: DjangoSessionStore) -> None:
    session = Session.new(
        "agent-1", metadata={"k": [1, "two"]}, context={"c": True}, tags=["a", "b"]
    )
    store.save_session(session)
    assert store.get_session(session.id) == session


def test_save_session_replaces_every_column_but_id(store: DjangoSessionStore) -> None:
    first = Session.new("agent-1", metadata={"old": 1}, tags=["old"], created_at=at(0))
    store.save_session(first)
    second = Session(
        id=first.id,
        agent_id="agent-2",
        status=SessionStatus.PAUSED,
        parent_session_id="ses_parent",
        metadata={"new": 2},
        context={"ctx": 1},
        tags=["new"],
        created_at=at(5),
        updated_at=at(6),
        deleted_at=at(7),
    )
    store.save_session(second)
    assert store.get_session(first.id) == second
    assert m.Session.objects.count() == 1


def test_get_session_returns_soft_deleted_sessions(store: DjangoSessionStore) -> None:
    session = Session.new("agent-1", deleted_at=at(1))
    store.save_session(session)
    assert store.get_session(session.id).deleted_at == at(1)


def test_get_session_of_missing_id_raises_session_not_found(store: DjangoSessionStore) -> None:
    with pytest.raises(NotFoundError) as info:
        store.get_session("ses_missing")
    assert info.value.code == "session_not_found"


def test_list_sessions_is_newest_first_then_by_id_and_includes_deleted(
    store: DjangoSessionStore,
) -> None:
    old = Session.new("agent-1", id="ses_old", created_at=at(0))
    tie_b = Session.new("agent-1", id="ses_b", created_at=at(5), deleted_at=at(6))
    tie_a = Session.new("agent-1", id="ses_a", created_at=at(5))
    for session in (old, tie_b, tie_a):
        store.save_session(session)
    assert [s.id for s in store.list_sessions()] == ["ses_a", "ses_b", "ses_old"]


def test_list_sessions_filters_by_status_and_agent(store: DjangoSessionStore) -> None:
    wanted = Session.new("agent-1", status="active")
    store.save_session(wanted)
    store.save_session(Session.new("agent-1", status="paused"))
    store.save_session(Session.new("agent-2", status="active"))
    assert store.list_sessions(status="active", agent_id="agent-1") == [wanted]


def test_list_sessions_applies_limit_and_offset(store: DjangoSessionStore) -> None:
    for minute in range(5):
        store.save_session(Session.new("agent-1", id=f"ses_{minute}", created_at=at(minute)))
    assert [s.id for s in store.list_sessions(limit=2, offset=1)] == ["ses_3", "ses_2"]
    assert [s.id for s in store.list_sessions(offset=4)] == ["ses_0"]


def test_list_sessions_with_unknown_status_raises_invalid_status(
    store: DjangoSessionStore,
) -> None:
    with pytest.raises(ValidationError) as info:
        store.list_sessions(status="sleeping")
    assert info.value.code == "invalid_status"


def test_delete_session_removes_its_runs_events_counter_and_artifacts(
    store: DjangoSessionStore, session: Session
) -> None:
    other = Session.new("agent-1")
    store.save_session(other)
    for owner in (session, other):
        store.save_run(Run.new(owner.id))
        store.append_events([message(owner.id), message(owner.id)])
        ArtifactFactory(session_id=owner.id)

    store.delete_session(session.id)

    for model in (m.Run, m.Event, m.SessionSequence, m.Artifact):
        assert not model.objects.filter(session_id=session.id).exists(), model
        assert model.objects.filter(session_id=other.id).exists(), model
    assert not m.Session.objects.filter(id=session.id).exists()
    assert store.get_latest_sequence(other.id) == 2


def test_delete_session_is_idempotent(store: DjangoSessionStore, session: Session) -> None:
    store.delete_session(session.id)
    store.delete_session(session.id)
    store.delete_session("ses_never_existed")
    assert not m.Session.objects.exists()


def test_delete_sessions_cascade_returns_the_number_of_sessions_deleted(
    store: DjangoSessionStore,
) -> None:
    sessions = [Session.new("agent-1") for _ in range(3)]
    for session in sessions:
        store.save_session(session)
        store.append_event(message(session.id))
    store.append_event(message("ses_without_row"))

    deleted = delete_sessions_cascade([s.id for s in sessions[:2]] + ["ses_without_row"])

    assert deleted == 2
    assert set(m.Event.objects.values_list("session_id", flat=True)) == {sessions[2].id}


# --------------------------------------------------------------------------- runs


def test_saved_run_reads_back_equal(store: DjangoSessionStore, session: Session) -> None:
    run = Run.new(
        session.id,
        status="completed",
        input={"prompt": "hi"},
        output={"items": ["a", 1]},
        token_usage={"input_tokens": 3},
        ended_at=at(1),
        provider="claude",
        provider_metadata={"model": "claude-sonnet-4-5"},
        cost_usd=0.25,
        turn_count=2,
    )
    store.save_run(run)
    assert store.get_run(run.id) == run


def test_save_run_replaces_every_column_but_id(store: DjangoSessionStore, session: Session) -> None:
    run = Run.new(session.id, provider="claude", metadata={"old": 1}, cost_usd=1.0)
    store.save_run(run)
    replaced = dataclasses.replace(
        run,
        session_id="ses_other",
        status=RunStatus.FAILED,
        error={"reason": "boom"},
        metadata={},
        provider=None,
        cost_usd=None,
        started_at=at(3),
    )
    store.save_run(replaced)
    assert store.get_run(run.id) == replaced


def test_get_run_of_missing_id_raises_run_not_found(store: DjangoSessionStore) -> None:
    with pytest.raises(NotFoundError) as info:
        store.get_run("run_missing")
    assert info.value.code == "run_not_found"


def test_list_runs_is_oldest_first_and_filters_by_status_and_limit(
    store: DjangoSessionStore, session: Session
) -> None:
    late = Run.new(session.id, status="running", started_at=at(9))
    early = Run.new(session.id, status="running", started_at=at(1))
    done = Run.new(session.id, status="completed", started_at=at(5))
    for run in (late, early, done, Run.new("ses_other", status="running")):
        store.save_run(run)
    assert store.list_runs(session.id) == [early, done, late]
    assert store.list_runs(session.id, status="running") == [early, late]
    assert store.list_runs(session.id, limit=1) == [early]


def test_list_runs_with_unknown_status_raises_invalid_status(
    store: DjangoSessionStore, session: Session
) -> None:
    with pytest.raises(ValidationError) as info:
        store.list_runs(session.id, status="sleeping")
    assert info.value.code == "invalid_status"


def test_get_active_run_is_the_latest_started_running_run(
    store: DjangoSessionStore, session: Session
) -> None:
    store.save_run(Run.new(session.id, status="running", started_at=at(1)))
    latest = Run.new(session.id, status="running", started_at=at(2))
    store.save_run(latest)
    store.save_run(Run.new(session.id, status="completed", started_at=at(3)))
    assert store.get_active_run(session.id) == latest


def test_get_active_run_reads_its_own_writes(store: DjangoSessionStore, session: Session) -> None:
    assert store.get_active_run(session.id) is None
    run = Run.new(session.id, status="running")
    store.save_run(run)
    assert store.get_active_run(session.id) == run
    store.save_run(run.with_status("completed"))
    assert store.get_active_run(session.id) is None


# --------------------------------------------------------------------------- appends


def test_sequence_numbers_start_at_one_per_session(
    store: DjangoSessionStore, session: Session
) -> None:
    numbers = [store.append_event(message(session.id)).sequence_number for _ in range(3)]
    other = store.append_event(message("ses_other")).sequence_number
    assert numbers == [1, 2, 3]
    assert other == 1


def test_append_returns_the_stored_event(store: DjangoSessionStore, session: Session) -> None:
    event = message(session.id, data={"text": "hello"}, provider="claude", correlation_id="c1")
    stored = store.append_event(event)
    assert stored == dataclasses.replace(event, sequence_number=1)
    assert store.get_events(session.id) == [stored]


def test_append_event_with_sequence_is_the_same_as_append_event(
    store: DjangoSessionStore, session: Session
) -> None:
    first = store.append_event(message(session.id))
    second = store.append_event_with_sequence(message(session.id))
    assert (first.sequence_number, second.sequence_number) == (1, 2)


def test_caller_supplied_sequence_number_is_ignored(
    store: DjangoSessionStore, session: Session
) -> None:
    event = message(session.id, sequence_number=42)
    stored = store.append_event(event)
    assert stored.sequence_number == 1
    assert event.sequence_number == 42, "the caller's object is not modified"


def test_appending_a_stored_id_returns_the_stored_event_and_consumes_no_number(
    store: DjangoSessionStore, session: Session
) -> None:
    original = store.append_event(message(session.id, data={"v": 1}))
    changed = dataclasses.replace(original, data={"v": 2}, type=EventType.ERROR_OCCURRED)
    assert store.append_event(changed) == original
    assert store.append_events([changed]) == [original]
    assert store.get_latest_sequence(session.id) == 1
    assert store.append_event(message(session.id)).sequence_number == 2


def test_duplicates_within_a_batch_return_the_same_stored_event(
    store: DjangoSessionStore, session: Session
) -> None:
    event = message(session.id, data={"v": 1})
    repeat = dataclasses.replace(event, data={"v": 2})
    other = message(session.id)
    stored = store.append_events([event, other, repeat])
    assert [e.sequence_number for e in stored] == [1, 2, 1]
    assert stored[2] == stored[0]
    assert stored[2].data == {"v": 1}
    assert store.get_latest_sequence(session.id) == 2


def test_batch_numbers_are_contiguous_per_session_in_input_order(
    store: DjangoSessionStore, session: Session
) -> None:
    store.append_event(message(session.id))
    batch = [message(session.id), message("ses_b"), message(session.id), message("ses_b")]
    stored = store.append_events(batch)
    assert [(e.session_id, e.sequence_number) for e in stored] == [
        (session.id, 2),
        ("ses_b", 1),
        (session.id, 3),
        ("ses_b", 2),
    ]
    assert [e.id for e in stored] == [e.id for e in batch]


def test_append_events_accepts_any_sequence_and_an_empty_one(
    store: DjangoSessionStore, session: Session
) -> None:
    assert store.append_events(()) == []
    assert len(store.append_events((message(session.id), message(session.id)))) == 2


def test_events_of_a_session_without_a_row_are_stored_and_read_back(
    store: DjangoSessionStore,
) -> None:
    stored = store.append_events([message("ses_no_row"), message("ses_no_row")])
    assert store.get_events("ses_no_row") == stored
    assert not m.Session.objects.filter(id="ses_no_row").exists()


def test_rows_written_by_another_application_read_back_with_defaults(
    store: DjangoSessionStore,
) -> None:
    EventFactory(session_id="ses_elixir", sequence_number=1, data=None, metadata=None)
    [event] = store.get_events("ses_elixir")
    assert (event.data, event.metadata) == ({}, {})
    assert event.timestamp.tzinfo is UTC


def test_an_event_type_this_version_does_not_know_reads_back_as_its_string(
    store: DjangoSessionStore,
) -> None:
    EventFactory(session_id="ses_newer_writer", sequence_number=1, type="agent_reflected")
    [event] = store.get_events("ses_newer_writer")
    assert event.type == "agent_reflected"


def test_get_latest_sequence_is_zero_without_a_counter(store: DjangoSessionStore) -> None:
    assert store.get_latest_sequence("ses_none") == 0


# --------------------------------------------------------------------------- reads


@pytest.fixture
def log(store: DjangoSessionStore, session: Session) -> list[Event]:
    """Six events over two runs and three types, one minute apart."""
    kinds = [
        ("run_1", EventType.RUN_STARTED),
        ("run_1", EventType.MESSAGE_SENT),
        ("run_1", EventType.TOOL_CALL_STARTED),
        ("run_2", EventType.RUN_STARTED),
        ("run_2", EventType.MESSAGE_SENT),
        ("run_2", EventType.MESSAGE_SENT),
    ]
    return store.append_events(
        [
            Event.new(kind, session.id, run_id=run_id, timestamp=at(minute))
            for minute, (run_id, kind) in enumerate(kinds)
        ]
    )


def test_get_events_is_in_ascending_sequence(
    store: DjangoSessionStore, session: Session, log: list[Event]
) -> None:
    assert store.get_events(session.id) == log


def test_get_events_filters_by_run(
    store: DjangoSessionStore, session: Session, log: list[Event]
) -> None:
    assert store.get_events(session.id, run_id="run_2") == log[3:]


def test_get_events_filters_by_one_type_or_a_list_of_types(
    store: DjangoSessionStore, session: Session, log: list[Event]
) -> None:
    assert store.get_events(session.id, type="run_started") == [log[0], log[3]]
    assert store.get_events(session.id, type=[EventType.RUN_STARTED, "tool_call_started"]) == [
        log[0],
        log[2],
        log[3],
    ]


def test_get_events_since_is_strict_on_timestamp(
    store: DjangoSessionStore, session: Session, log: list[Event]
) -> None:
    assert store.get_events(session.id, since=at(3)) == log[4:]


def test_get_events_since_compares_instants_not_wall_clock(
    store: DjangoSessionStore, session: Session, log: list[Event]
) -> None:
    kolkata = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert store.get_events(session.id, since=at(3).astimezone(kolkata)) == log[4:]


def test_get_events_after_and_before_are_strict_on_sequence(
    store: DjangoSessionStore, session: Session, log: list[Event]
) -> None:
    assert store.get_events(session.id, after=2, before=5) == log[2:4]


def test_get_events_limit_applies_after_ordering(
    store: DjangoSessionStore, session: Session, log: list[Event]
) -> None:
    assert store.get_events(session.id, after=1, limit=2) == log[1:3]


def test_get_events_filters_are_anded(
    store: DjangoSessionStore, session: Session, log: list[Event]
) -> None:
    assert store.get_events(session.id, run_id="run_2", type="message_sent", after=5) == [log[5]]


def test_get_events_with_unknown_type_raises_invalid_event_type(
    store: DjangoSessionStore, session: Session
) -> None:
    with pytest.raises(ValidationError) as info:
        store.get_events(session.id, type=["message_sent", "message_shouted"])
    assert info.value.code == "invalid_event_type"


@pytest.mark.parametrize(
    "arguments",
    [
        {"since": dt.datetime(2025, 1, 1)},
        {"limit": -1},
        {"after": "3"},
        {"wait_timeout_ms": -5},
        {"run_id": "x" * 256},
        {"type": 5},
        {"type": {"message_sent": 1}},
    ],
    ids=[
        "naive-since",
        "negative-limit",
        "string-after",
        "negative-wait",
        "long-run-id",
        "number-as-type",
        "dict-as-type",
    ],
)
def test_get_events_refuses_invalid_arguments(
    store: DjangoSessionStore, session: Session, arguments: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        store.get_events(session.id, **arguments)


# --------------------------------------------------------------------------- flush


def test_flush_saves_session_run_and_events(store: DjangoSessionStore) -> None:
    session = Session.new("agent-1", status="active")
    run = Run.new(session.id, status="running")
    events = [message(session.id, run_id=run.id) for _ in range(3)]

    store.flush(session=session, run=run, events=events)

    assert store.get_session(session.id) == session
    assert store.get_run(run.id) == run
    assert [e.id for e in store.get_events(session.id)] == [e.id for e in events]


def test_flush_merges_provider_metadata_into_the_run(store: DjangoSessionStore) -> None:
    session = Session.new("agent-1")
    run = Run.new(session.id, provider_metadata={"model": "o3", "region": "eu"})

    store.flush(session=session, run=run, events=[], provider_metadata={"model": "o3-mini"})

    assert store.get_run(run.id).provider_metadata == {"model": "o3-mini", "region": "eu"}


def test_flush_with_an_invalid_event_writes_nothing(store: DjangoSessionStore) -> None:
    session = Session.new("agent-1")
    run = Run.new(session.id)
    bad = message(session.id)
    bad.data = {"nul": "\x00"}

    with pytest.raises(ValidationError):
        store.flush(session=session, run=run, events=[message(session.id), bad])

    assert not m.Session.objects.exists()
    assert not m.Run.objects.exists()
    assert not m.Event.objects.exists()
    assert store.get_latest_sequence(session.id) == 0


def test_flush_with_invalid_provider_metadata_writes_nothing(store: DjangoSessionStore) -> None:
    session = Session.new("agent-1")
    with pytest.raises(ValidationError):
        store.flush(
            session=session,
            run=Run.new(session.id),
            events=[message(session.id)],
            provider_metadata={"cost": float("nan")},
        )
    assert not m.Session.objects.exists()
    assert not m.Event.objects.exists()


def test_flush_is_undone_when_a_later_part_fails_in_the_database(
    store: DjangoSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = Session.new("agent-1")
    run = Run.new(session.id)

    def refuse(*args: Any) -> Any:
        raise DatabaseError("the database refused the events")

    # The events are written last, after the session and the run.
    monkeypatch.setattr("agent_sessions.store.append_prepared", refuse)
    with pytest.raises(StorageError) as info:
        store.flush(session=session, run=run, events=[message(session.id)])
    assert "cause" in info.value.details
    assert not m.Session.objects.filter(id=session.id).exists()
    assert not m.Run.objects.filter(id=run.id).exists()
    assert store.get_latest_sequence(session.id) == 0


# --------------------------------------------------------------------------- using / routers


class RecordingRouter:
    """Sends everything to ``default`` and remembers what was asked."""

    calls: list[str] = []

    def db_for_read(self, model: type, **hints: Any) -> str:
        self.calls.append(f"read:{model._meta.model_name}")
        return "default"

    def db_for_write(self, model: type, **hints: Any) -> str:
        self.calls.append(f"write:{model._meta.model_name}")
        return "default"


# Outside a transaction: inside one on the write database, reads stay on it.
@pytest.mark.django_db(transaction=True)
def test_store_without_using_follows_the_routers(session: Session) -> None:
    RecordingRouter.calls = []
    with override_settings(DATABASE_ROUTERS=[f"{__name__}.RecordingRouter"]):
        store = DjangoSessionStore()
        store.append_event(message(session.id))
        store.get_events(session.id)
    assert "write:event" in RecordingRouter.calls
    assert "read:event" in RecordingRouter.calls


def test_store_with_using_writes_to_that_alias(session: Session) -> None:
    RecordingRouter.calls = []
    with override_settings(DATABASE_ROUTERS=[f"{__name__}.RecordingRouter"]):
        store = DjangoSessionStore(using="default")
        store.append_event(message(session.id))
        assert store.get_events(session.id)[0].sequence_number == 1
    assert RecordingRouter.calls == []


def test_store_with_an_unknown_alias_raises_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        DjangoSessionStore(using="replica_that_does_not_exist")
    assert info.value.details["field"] == "using"


def test_appends_inside_a_callers_transaction_roll_back_with_it(
    store: DjangoSessionStore, session: Session
) -> None:
    class Abort(Exception):
        pass

    def append_then_abort() -> None:
        with transaction.atomic():
            store.append_events([message(session.id), message(session.id)])
            raise Abort

    with pytest.raises(Abort):
        append_then_abort()
    assert store.get_events(session.id) == []
    assert store.get_latest_sequence(session.id) == 0
    assert connection.in_atomic_block  # pytest-django's test transaction is intact
