"""The Django migration produces ASM's schema (CONTRACT §4)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from tests.pg_catalog import ASM_TABLES, assert_same_catalog, build_reference_schema, catalog

EXPECTED_INDEXES = {
    "asm_sessions": {
        "asm_sessions_status_index": (["status"], False),
        "asm_sessions_agent_id_index": (["agent_id"], False),
        "asm_sessions_created_at_index": (["created_at"], False),
        "asm_sessions_deleted_at_index": (["deleted_at"], False),
    },
    "asm_runs": {
        "asm_runs_session_id_status_index": (["session_id", "status"], False),
        "asm_runs_provider_index": (["provider"], False),
        "asm_runs_started_at_index": (["started_at"], False),
    },
    "asm_events": {
        "asm_events_session_id_sequence_number_index": (["session_id", "sequence_number"], True),
        "asm_events_session_id_type_index": (["session_id", "type"], False),
        "asm_events_session_id_run_id_index": (["session_id", "run_id"], False),
        "asm_events_correlation_id_index": (["correlation_id"], False),
        "asm_events_provider_index": (["provider"], False),
        "asm_events_timestamp_index": (["timestamp"], False),
    },
    "asm_session_sequences": {},
    "asm_artifacts": {
        "asm_artifacts_key_index": (["key"], True),
        "asm_artifacts_session_id_index": (["session_id"], False),
        "asm_artifacts_created_at_index": (["created_at"], False),
    },
}


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_migrated_schema_is_identical_to_the_reference_ddl() -> None:
    build_reference_schema("asm_reference")
    reference = catalog("asm_reference")
    assert len(reference) > 60, "the reference catalog looks empty"
    actual = catalog("public")
    # Indexes that later migrations add for performance are named asm_* too;
    # the reference ones must all be there unchanged.
    added = [line for line in actual if line not in reference]
    assert all(line.startswith("index ") for line in added), added
    assert_same_catalog([line for line in actual if line not in added], reference)


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_schema_comparison_reports_a_readable_diff() -> None:
    build_reference_schema("asm_reference")
    reference = catalog("asm_reference")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE asm_reference.asm_runs ALTER COLUMN turn_count SET NOT NULL")
    changed = catalog("asm_reference")
    with pytest.raises(AssertionError, match=r"(?s)-column asm_runs.turn_count.*\+column"):
        assert_same_catalog(changed, reference)


@pytest.mark.django_db
def test_every_backend_gets_the_same_tables_columns_and_index_names() -> None:
    from agent_sessions import models as m

    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        assert set(ASM_TABLES) <= tables
        for model in (m.Session, m.Run, m.Event, m.SessionSequence, m.Artifact):
            table = model._meta.db_table
            columns = [
                c.name for c in connection.introspection.get_table_description(cursor, table)
            ]
            assert columns == [f.column for f in model._meta.concrete_fields]
            constraints = connection.introspection.get_constraints(cursor, table)
            for name, (cols, unique) in EXPECTED_INDEXES[table].items():
                assert name in constraints, f"{table} lacks index {name}"
                assert constraints[name]["columns"] == cols
                assert bool(constraints[name]["unique"]) is unique
            assert not [c for c in constraints.values() if c.get("foreign_key")], table


@pytest.mark.django_db
def test_models_and_migrations_do_not_drift() -> None:
    out = StringIO()
    call_command("makemigrations", "agent_sessions", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
