"""Bad input and database failures (CONTRACT §3): refused early, nothing written, no number used."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from agent_sessions import models as m
from agent_sessions.core import Event, Run, Session
from agent_sessions.errors import MigrationRequiredError, StorageError, ValidationError
from agent_sessions.store import DjangoSessionStore
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db

SESSION_ID = "ses_bad_input"


class NotJSON:
    """An object json cannot serialise."""


def _set(**fields: Any) -> Callable[[Event], None]:
    def corrupt(event: Event) -> None:
        for name, value in fields.items():
            setattr(event, name, value)

    return corrupt


# Each corruption is applied to an already valid event (attributes are
# mutable), so the store's own validation is what must catch it.
BAD_EVENTS = {
    "nul-in-string": (_set(provider="cla\x00ude"), "validation_error"),
    "nul-in-json-value": (_set(data={"text": "a\x00b"}), "validation_error"),
    "nul-in-json-key": (_set(metadata={"k\x00": 1}), "validation_error"),
    "nan-in-json": (_set(data={"score": float("nan")}), "validation_error"),
    "infinity-in-json": (_set(data={"nested": [float("inf")]}), "validation_error"),
    "non-json-value": (_set(data={"obj": NotJSON()}), "validation_error"),
    "set-in-json": (_set(data={"tags": {"a", "b"}}), "validation_error"),
    "256-char-id": (_set(id="e" * 256), "validation_error"),
    "256-char-session-id": (_set(session_id="s" * 256), "validation_error"),
    "256-char-correlation-id": (_set(correlation_id="c" * 256), "validation_error"),
    "naive-timestamp": (_set(timestamp=dt.datetime(2025, 1, 1)), "validation_error"),
    "unknown-type": (_set(type="message_shouted"), "invalid_event_type"),
    "schema-version-zero": (_set(schema_version=0), "validation_error"),
}


@pytest.fixture
def counter_at_two(store: DjangoSessionStore) -> Iterator[None]:
    store.append_events([Event.new("message_sent", SESSION_ID) for _ in range(2)])
    yield
    # Every test below must leave the counter and the log as they were.
    assert store.get_latest_sequence(SESSION_ID) == 2
    assert m.Event.objects.filter(session_id=SESSION_ID).count() == 2


@pytest.mark.usefixtures("counter_at_two")
@pytest.mark.parametrize("corruption", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_bad_event_is_refused_by_append_event(
    store: DjangoSessionStore, corruption: tuple[Callable[[Event], None], str]
) -> None:
    corrupt, code = corruption
    event = Event.new("message_sent", SESSION_ID)
    corrupt(event)
    with pytest.raises(ValidationError) as info:
        store.append_event(event)
    assert info.value.code == code


@pytest.mark.usefixtures("counter_at_two")
@pytest.mark.parametrize("corruption", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_bad_event_anywhere_in_a_batch_refuses_the_whole_batch(
    store: DjangoSessionStore, corruption: tuple[Callable[[Event], None], str]
) -> None:
    corrupt, code = corruption
    batch = [Event.new("message_sent", SESSION_ID) for _ in range(3)]
    corrupt(batch[2])
    with pytest.raises(ValidationError) as info:
        store.append_events(batch)
    assert info.value.code == code


@pytest.mark.usefixtures("counter_at_two")
def test_something_that_is_not_an_event_is_refused(store: DjangoSessionStore) -> None:
    with pytest.raises(ValidationError):
        store.append_events([Event.new("message_sent", SESSION_ID), {"type": "message_sent"}])  # type: ignore[list-item]


BAD_SESSIONS = {
    "unknown-status": ({"status": "sleeping"}, "invalid_status"),
    "nul-in-tag": ({"tags": ["a\x00"]}, "validation_error"),
    "nan-in-context": ({"context": {"x": float("-inf")}}, "validation_error"),
    "256-char-agent-id": ({"agent_id": "a" * 256}, "validation_error"),
    "naive-updated-at": ({"updated_at": dt.datetime(2025, 1, 1)}, "validation_error"),
}


@pytest.mark.parametrize("change", BAD_SESSIONS.values(), ids=BAD_SESSIONS.keys())
def test_bad_session_is_refused_and_the_stored_one_is_unchanged(
    store: DjangoSessionStore, change: tuple[dict[str, Any], str]
) -> None:
    session = Session.new("agent-1")
    store.save_session(session)
    fields, code = change
    bad = Session.new("agent-1", id=session.id)
    for name, value in fields.items():
        setattr(bad, name, value)
    with pytest.raises(ValidationError) as info:
        store.save_session(bad)
    assert info.value.code == code
    assert store.get_session(session.id) == session


BAD_RUNS = {
    "unknown-status": ({"status": "exploded"}, "invalid_status"),
    "non-json-output": ({"output": NotJSON()}, "validation_error"),
    "nan-cost": ({"cost_usd": float("nan")}, "validation_error"),
    "nul-in-provider": ({"provider": "\x00"}, "validation_error"),
    "naive-ended-at": ({"ended_at": dt.datetime(2025, 1, 1)}, "validation_error"),
}


@pytest.mark.parametrize("change", BAD_RUNS.values(), ids=BAD_RUNS.keys())
def test_bad_run_is_refused_and_nothing_is_written(
    store: DjangoSessionStore, change: tuple[dict[str, Any], str]
) -> None:
    run = Run.new("ses_1")
    fields, code = change
    for name, value in fields.items():
        setattr(run, name, value)
    with pytest.raises(ValidationError) as info:
        store.save_run(run)
    assert info.value.code == code
    assert not m.Run.objects.exists()


# --------------------------------------------------------------------------- database failures


@pytest.fixture
def refusing_provider(vendor: str) -> Iterator[str]:
    """Make the database itself refuse events whose provider is ``"refused"``."""
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(
                "ALTER TABLE asm_events ADD CONSTRAINT test_refuse_provider "
                "CHECK (provider IS DISTINCT FROM 'refused')"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER test_refuse_provider BEFORE INSERT ON asm_events "
                "WHEN NEW.provider = 'refused' BEGIN SELECT RAISE(ABORT, 'provider refused'); END"
            )
    yield "refused"
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("ALTER TABLE asm_events DROP CONSTRAINT test_refuse_provider")
        else:
            cursor.execute("DROP TRIGGER test_refuse_provider")


@pytest.mark.usefixtures("counter_at_two")
def test_database_failure_raises_storage_error_with_the_cause(
    store: DjangoSessionStore, refusing_provider: str
) -> None:
    with pytest.raises(StorageError) as info:
        store.append_event(Event.new("message_sent", SESSION_ID, provider=refusing_provider))
    assert info.value.code == "storage_error"
    assert info.value.details["operation"] == "append_event"
    assert "refuse" in info.value.details["cause"]


@pytest.mark.django_db(transaction=True)
def test_database_failure_outside_any_transaction_moves_no_counter(
    store: DjangoSessionStore, refusing_provider: str
) -> None:
    # Outside atomic() a single PostgreSQL append is one autocommit statement.
    store.append_event(Event.new("message_sent", SESSION_ID))
    with pytest.raises(StorageError):
        store.append_event(Event.new("message_sent", SESSION_ID, provider=refusing_provider))
    assert store.get_latest_sequence(SESSION_ID) == 1
    assert store.append_event(Event.new("message_sent", SESSION_ID)).sequence_number == 2


@pytest.mark.usefixtures("counter_at_two")
def test_database_failure_in_a_batch_writes_nothing(
    store: DjangoSessionStore, refusing_provider: str
) -> None:
    batch = [Event.new("message_sent", SESSION_ID) for _ in range(3)]
    batch.append(Event.new("message_sent", SESSION_ID, provider=refusing_provider))
    with pytest.raises(StorageError):
        store.append_events(batch)


def test_a_number_taken_by_another_writer_without_a_counter_is_skipped(
    store: DjangoSessionStore,
) -> None:
    # Another writer stored number 1 without creating a counter (CONTRACT §11:
    # the append continues at max(sequence_number) + 1).
    EventFactory(session_id="ses_foreign", sequence_number=1)
    stored = store.append_event(Event.new("message_sent", "ses_foreign"))
    assert stored.sequence_number == 2
    assert store.get_latest_sequence("ses_foreign") == 2
    assert m.Event.objects.filter(session_id="ses_foreign").count() == 2


@pytest.mark.parametrize(
    "schema_change",
    [
        "ALTER TABLE asm_events RENAME TO asm_events_elsewhere",
        "ALTER TABLE asm_session_sequences RENAME TO asm_session_sequences_elsewhere",
        "ALTER TABLE asm_events RENAME COLUMN correlation_id TO correlation",
    ],
    ids=["missing-events-table", "missing-sequences-table", "missing-column"],
)
def test_missing_schema_raises_migration_required(
    store: DjangoSessionStore, schema_change: str
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(schema_change)  # undone with the test's transaction
    with pytest.raises(MigrationRequiredError) as info:
        store.append_event(Event.new("message_sent", SESSION_ID))
    assert "migrate" in info.value.message


@pytest.mark.parametrize(
    ("table", "read"),
    [
        ("asm_sessions", lambda store: store.get_session("ses_1")),
        ("asm_runs", lambda store: store.list_runs("ses_1")),
        ("asm_events", lambda store: store.get_events("ses_1")),
        ("asm_session_sequences", lambda store: store.get_latest_sequence("ses_1")),
    ],
    ids=["get_session", "list_runs", "get_events", "get_latest_sequence"],
)
def test_missing_tables_on_reads_raise_migration_required(
    store: DjangoSessionStore, table: str, read: Callable[[DjangoSessionStore], Any]
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_elsewhere")
    with pytest.raises(MigrationRequiredError):
        read(store)
