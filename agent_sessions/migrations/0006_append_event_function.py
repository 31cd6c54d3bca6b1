"""PostgreSQL: the single-append statement as a function, planned once per server connection.

``asm_append_event(...)`` does what the one-statement append in
:mod:`agent_sessions.sequences` does (idempotency probe, counter upsert,
insert, notify a watching reader), but PL/pgSQL keeps the plans of its
statements for the life of the server connection. Django's default
connection settings send every statement unprepared (``prepare_threshold``
off, which transaction-pooling proxies need), so without the function the
append is parsed and planned on every call. A function is a database object:
its plans survive PgBouncer's transaction pooling, where client-side
prepared statements do not. The five ``asm_*`` tables are not touched; an
Elixir service sharing the database ignores the function. A no-op on SQLite.
"""

from typing import Any

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION asm_append_event(
    p_id varchar, p_type varchar, p_timestamp timestamp, p_session_id varchar,
    p_run_id varchar, p_data jsonb, p_metadata jsonb, p_schema_version integer,
    p_provider varchar, p_correlation_id varchar, p_now timestamp
) RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_number integer;
BEGIN
    -- Idempotent: an id already stored consumes no number; NULL tells the caller.
    IF EXISTS (SELECT FROM asm_events WHERE id = p_id) THEN
        RETURN NULL;
    END IF;
    INSERT INTO asm_session_sequences AS seq (session_id, last_sequence, updated_at)
    VALUES (p_session_id, 1, p_now)
    ON CONFLICT (session_id) DO UPDATE
        SET last_sequence = seq.last_sequence + 1, updated_at = EXCLUDED.updated_at
    RETURNING last_sequence INTO v_number;
    INSERT INTO asm_events (id, type, "timestamp", session_id, run_id, sequence_number,
                            data, metadata, schema_version, provider, correlation_id)
    VALUES (p_id, p_type, p_timestamp, p_session_id, p_run_id, v_number,
            p_data, p_metadata, p_schema_version, p_provider, p_correlation_id);
    -- Notify only when a reader watches the session (agent_sessions.sequences).
    IF NOT pg_try_advisory_xact_lock(1634954615, hashtext(p_session_id)) THEN
        PERFORM pg_notify('agent_sessions_events', p_session_id);
    END IF;
    RETURN v_number;
END
$$
"""

DROP = """
DROP FUNCTION IF EXISTS asm_append_event(
    varchar, varchar, timestamp, varchar, varchar, jsonb, jsonb, integer, varchar, varchar,
    timestamp
)
"""


def _run(sql: str) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("agent_sessions", "0005_event_text_search_timestamps")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP), elidable=False)]
