"""Rows are stored the way ASM stores them, whatever the Django settings (CONTRACT §4)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.db import connection, transaction

from agent_sessions import models as m
from agent_sessions.errors import ValidationError
from tests.factories import (
    ArtifactFactory,
    EventFactory,
    RunFactory,
    SessionFactory,
    SessionSequenceFactory,
)

pytestmark = pytest.mark.django_db

UTC = dt.UTC
KOLKATA = dt.timezone(dt.timedelta(hours=5, minutes=30))


def _stored_datetime(value: Any) -> dt.datetime:
    """A timestamp column's raw value as a naive datetime (SQLite stores text)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert value.tzinfo is None, "timestamp columns hold naive UTC wall-clock time"
    return value


@pytest.mark.parametrize("time_zone", ["UTC", "Asia/Kolkata", "America/Los_Angeles"])
@pytest.mark.parametrize("use_tz", [True, False])
def test_timestamps_are_stored_as_utc_wall_clock_time(
    settings: Any, raw_row: Any, time_zone: str, use_tz: bool
) -> None:
    settings.TIME_ZONE = time_zone
    settings.USE_TZ = use_tz
    created = dt.datetime(2025, 6, 1, 12, 0, 0, 5, tzinfo=KOLKATA)
    session = SessionFactory(created_at=created, updated_at=created)

    row = raw_row("asm_sessions", "id", session.id)

    assert _stored_datetime(row["created_at"]) == dt.datetime(2025, 6, 1, 6, 30, 0, 5)
    reread = m.Session.objects.get(id=session.id)
    assert reread.created_at == created
    assert reread.created_at.tzinfo == UTC


def test_naive_datetimes_are_refused() -> None:
    naive = dt.datetime(2025, 1, 1)
    with pytest.raises(ValidationError, match="naive"), transaction.atomic():
        SessionFactory(created_at=naive, updated_at=naive)
    assert not m.Session.objects.exists()


def test_filters_compare_timestamps_in_utc(in_time_zone: Any) -> None:
    early = SessionFactory(created_at=dt.datetime(2025, 1, 1, 0, 0, tzinfo=UTC))
    SessionFactory(created_at=dt.datetime(2025, 1, 2, 0, 0, tzinfo=UTC))
    cutoff = dt.datetime(2025, 1, 1, 10, 0, tzinfo=KOLKATA)  # 04:30 UTC
    assert list(m.Session.objects.filter(created_at__lt=cutoff)) == [early]


def test_status_json_and_tags_are_stored_like_asm(raw_row: Any, vendor: str) -> None:
    session = SessionFactory(
        status="active", metadata={"nested": {"n": 1}}, tags=["pinned", "prod"]
    )
    row = raw_row("asm_sessions", "id", session.id)
    assert row["status"] == "active"
    # Django's cursor hands jsonb over as text on PostgreSQL too.
    metadata = json.loads(row["metadata"])
    assert metadata == {"nested": {"n": 1}}
    if vendor == "postgresql":
        assert row["tags"] == ["pinned", "prod"]  # a varchar[] array
    else:
        assert json.loads(row["tags"]) == ["pinned", "prod"]  # JSON text


def test_tags_array_column_has_the_varchar_array_type(vendor: str) -> None:
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'asm_sessions'::regclass AND attname = 'tags'"
            )
            assert cursor.fetchone()[0] == "character varying(255)[]"
        else:
            cursor.execute("SELECT type FROM pragma_table_info('asm_sessions') WHERE name='tags'")
            assert cursor.fetchone()[0].lower() == "text"


def test_null_json_written_by_someone_else_reads_back_empty() -> None:
    session = SessionFactory()
    run = RunFactory(session_id=session.id, input=None)
    event = EventFactory(session_id=session.id)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE asm_sessions SET metadata = NULL, context = NULL, tags = NULL WHERE id = %s",
            [session.id],
        )
        cursor.execute(
            "UPDATE asm_runs SET metadata = NULL, token_usage = NULL WHERE id = %s", [run.id]
        )
        cursor.execute(
            "UPDATE asm_events SET data = NULL, metadata = NULL WHERE id = %s", [event.id]
        )
    session = m.Session.objects.get(id=session.id)
    assert (session.metadata, session.context, session.tags) == ({}, {}, [])
    run = m.Run.objects.get(id=run.id)
    assert (run.metadata, run.token_usage, run.input, run.output, run.error) == (
        {},
        {},
        None,
        None,
        None,
    )
    event = m.Event.objects.get(id=event.id)
    assert (event.data, event.metadata) == ({}, {})


def test_database_defaults_fill_columns_an_insert_leaves_out(vendor: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO asm_sessions (id, agent_id, status, created_at, updated_at) "
            "VALUES ('ses_defaults', 'a', 'pending', '2025-01-01 00:00:00', '2025-01-01 00:00:00')"
        )
        cursor.execute(
            "INSERT INTO asm_events (id, type, timestamp, session_id, sequence_number) "
            "VALUES ('evt_defaults', 'message_sent', '2025-01-01 00:00:00', 'ses_defaults', 1)"
        )
    session = m.Session.objects.get(id="ses_defaults")
    assert (session.metadata, session.context, session.tags) == ({}, {}, [])
    assert m.Event.objects.get(id="evt_defaults").schema_version == 1


def test_direct_orm_queries_read_naturally() -> None:
    session = SessionFactory()
    for n in (3, 1, 2):
        EventFactory(session_id=session.id, sequence_number=n)
    numbers = m.Event.objects.filter(session_id=session.id).order_by("sequence_number")
    assert [e.sequence_number for e in numbers] == [1, 2, 3]


def test_rows_for_a_missing_session_stay_visible() -> None:
    EventFactory(session_id="ses_gone", sequence_number=1)
    RunFactory(session_id="ses_gone")
    ArtifactFactory(session_id="ses_gone")
    SessionSequenceFactory(session_id="ses_gone", last_sequence=1)
    assert m.Event.objects.filter(session_id="ses_gone").count() == 1
    assert m.Run.objects.filter(session_id="ses_gone").count() == 1
    assert m.Artifact.objects.filter(session_id="ses_gone").count() == 1
    assert m.SessionSequence.objects.get(session_id="ses_gone").last_sequence == 1


def test_tags_has_all_lookup_runs_in_the_database() -> None:
    both = SessionFactory(tags=["a", "b", "c"])
    SessionFactory(tags=["a"])
    SessionFactory(tags=[])
    assert list(m.Session.objects.filter(tags__has_all=["a", "b"])) == [both]
    assert m.Session.objects.filter(tags__has_all=[]).count() == 3


def test_models_convert_to_and_from_the_core_dataclasses() -> None:
    session = SessionFactory(status="active", tags=["x"], metadata={"k": "v"})
    domain = session.to_domain()
    assert domain.status == "active"
    assert m.Session.from_domain(domain).tags == ["x"]
    run = RunFactory(session_id=session.id, status="running", token_usage={"input_tokens": 3})
    assert run.to_domain().token_usage == {"input_tokens": 3}
    assert m.Run.from_domain(run.to_domain()).status == "running"
    event = EventFactory(session_id=session.id, type="tool_call_started", data={"tool": "ls"})
    assert event.to_domain().type == "tool_call_started"
    assert m.Event.from_domain(event.to_domain()).data == {"tool": "ls"}


def test_every_model_has_a_factory_that_saves() -> None:
    for factory in (
        SessionFactory,
        RunFactory,
        EventFactory,
        SessionSequenceFactory,
        ArtifactFactory,
    ):
        factory()
    assert m.Artifact.objects.count() == 1
