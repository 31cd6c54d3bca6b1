"""Migrating forwards, backwards, and adopting tables an Elixir application created."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, transaction

from agent_sessions import models as m
from tests.pg_catalog import (
    ASM_TABLES,
    assert_same_catalog,
    build_reference_schema,
    catalog,
    reference_ddl,
)

UTC = dt.UTC


def _asm_tables() -> set[str]:
    """ASM's tables present, leaving out the search index's own (asm_events_search*)."""
    return {t for t in _all_asm_tables() if not t.startswith("asm_events_search")}


def _all_asm_tables() -> set[str]:
    with connection.cursor() as cursor:
        return {t for t in connection.introspection.table_names(cursor) if t.startswith("asm_")}


@pytest.fixture
def restore_tables() -> Iterator[None]:
    """Whatever a test does to the asm_* tables, leave them migrated afterwards."""
    yield
    with connection.cursor() as cursor:
        for table in ASM_TABLES:
            cursor.execute(f'DROP TABLE IF EXISTS "{table}"')
        cursor.execute("DELETE FROM django_migrations WHERE app = 'agent_sessions'")
    call_command("migrate", "agent_sessions", verbosity=0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("restore_tables")
def test_migrate_to_zero_drops_the_five_tables() -> None:
    assert _asm_tables() == set(ASM_TABLES)
    assert "asm_events_search" in _all_asm_tables()
    call_command("migrate", "agent_sessions", "zero", verbosity=0)
    assert _all_asm_tables() == set()
    call_command("migrate", "agent_sessions", verbosity=0)
    assert _asm_tables() == set(ASM_TABLES)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("restore_tables")
def test_migrate_adopts_existing_tables_with_their_rows() -> None:
    """Tables exist but Django has no record of them: migrate takes them over."""
    from tests.factories import EventFactory, SessionFactory

    session = SessionFactory(tags=["a"])
    EventFactory(session_id=session.id, sequence_number=1)
    call_command("migrate", "agent_sessions", "zero", "--fake", verbosity=0)
    call_command("migrate", "agent_sessions", verbosity=0)
    assert m.Session.objects.get(id=session.id).tags == ["a"]
    assert m.Event.objects.filter(session_id=session.id).count() == 1


def _insert_elixir_rows() -> None:
    """Rows as AgentSessionManager's Ecto adapter writes them (naive UTC, jsonb, varchar[])."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO asm_sessions (id, agent_id, status, metadata, context, tags,
                                      created_at, updated_at)
            VALUES ('ses_elixir', 'agent-ex', 'active', '{"k": {"n": 1}}', NULL,
                    ARRAY['pinned', 'ex']::varchar[],
                    '2025-03-01 10:00:00.123456', '2025-03-01 11:00:00.654321')
            """
        )
        cursor.execute(
            """
            INSERT INTO asm_runs (id, session_id, status, token_usage, started_at, provider,
                                  provider_metadata, cost_usd)
            VALUES ('run_elixir', 'ses_elixir', 'completed', '{"input_tokens": 10}',
                    '2025-03-01 10:00:01', 'claude', '{"model": "claude-sonnet-4-5"}', 0.5)
            """
        )
        cursor.execute(
            """
            INSERT INTO asm_events (id, type, "timestamp", session_id, run_id, sequence_number,
                                    data, metadata)
            VALUES ('evt_elixir_1', 'session_created', '2025-03-01 10:00:00.5', 'ses_elixir',
                    NULL, 1, NULL, '{}'),
                   ('evt_orphan', 'message_sent', '2025-03-01 10:00:02', 'ses_missing',
                    'run_elixir', 1, '{"text": "hi"}', '{}')
            """
        )
        cursor.execute(
            "INSERT INTO asm_session_sequences VALUES ('ses_elixir', 1, '2025-03-01 10:00:00')"
        )
        cursor.execute(
            """
            INSERT INTO asm_artifacts (id, session_id, key, byte_size, checksum_sha256,
                                       storage_backend, storage_ref, created_at)
            VALUES ('art_elixir', 'ses_elixir', 'k1', 5, 'abc', 's3', 'bucket/k1',
                    '2025-03-01 10:00:03')
            """
        )


def _dump_rows() -> dict[str, list[tuple[Any, ...]]]:
    dump = {}
    with connection.cursor() as cursor:
        for table in ASM_TABLES:
            cursor.execute(f'SELECT * FROM "{table}" ORDER BY 1')
            dump[table] = cursor.fetchall()
    return dump


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("restore_tables")
def test_migrate_adopts_a_database_an_elixir_application_created() -> None:
    call_command("migrate", "agent_sessions", "zero", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(reference_ddl())
    _insert_elixir_rows()
    before = _dump_rows()

    call_command("migrate", "agent_sessions", verbosity=0)

    assert _dump_rows() == before
    with transaction.atomic():
        build_reference_schema("asm_reference")
        reference = catalog("asm_reference")
        actual = [line for line in catalog("public") if line in reference or "index" not in line]
        assert_same_catalog(actual, reference)
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA asm_reference CASCADE")

    session = m.Session.objects.get(id="ses_elixir")
    assert session.created_at == dt.datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert session.updated_at.tzinfo is not None
    assert session.tags == ["pinned", "ex"]
    assert session.metadata == {"k": {"n": 1}}
    assert session.context == {}
    event = m.Event.objects.get(id="evt_elixir_1")
    assert event.data == {}
    assert event.schema_version == 1
    run = m.Run.objects.get(id="run_elixir")
    assert run.turn_count == 0
    assert run.provider_metadata == {"model": "claude-sonnet-4-5"}
    assert run.input is None
    assert m.Event.objects.filter(session_id="ses_missing").count() == 1
    assert m.Artifact.objects.get(key="k1").metadata == {}
    # The search index was built over the adopted rows.
    from agent_sessions.query import DjangoQueryAPI

    assert [h.event.id for h in DjangoQueryAPI().search_text("hi").hits] == ["evt_orphan"]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("restore_tables")
def test_adoption_adds_columns_an_older_asm_version_lacked() -> None:
    call_command("migrate", "agent_sessions", "zero", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(reference_ddl())
        # Dropping the column drops asm_runs_provider_index with it.
        cursor.execute("ALTER TABLE asm_runs DROP COLUMN provider, DROP COLUMN cost_usd")
    call_command("migrate", "agent_sessions", verbosity=0)
    with connection.cursor() as cursor:
        columns = [
            c.name for c in connection.introspection.get_table_description(cursor, "asm_runs")
        ]
        constraints = connection.introspection.get_constraints(cursor, "asm_runs")
    assert {"provider", "cost_usd"} <= set(columns)
    assert "asm_runs_provider_index" in constraints


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("restore_tables")
def test_adoption_refuses_a_foreign_table_of_the_same_name() -> None:
    call_command("migrate", "agent_sessions", "zero", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE asm_sessions (id varchar(255) PRIMARY KEY, name text)")
    with pytest.raises(ImproperlyConfigured, match="lacks the required column"):
        call_command("migrate", "agent_sessions", verbosity=0)
