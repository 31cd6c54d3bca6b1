"""PostgreSQL: one ``max_total_events`` pruning batch as a function, planned once per connection.

``asm_prune_oldest_events(...)`` deletes the next ``p_limit`` events after a
keyset position in pruning order (oldest ``timestamp``, then
``sequence_number``, then id; ``p_only_types`` if given, never
``p_never_types``) and returns how many it deleted and the last one's key,
which is where the next batch starts. Given the maintenance lock's holder
(``p_lock_*``, :class:`~agent_sessions.locks.AdvisoryLockHolder`), it checks
that the lock is still held before it returns, and fails with SQLSTATE
``AS001`` otherwise, so the batch rolls back. The row-value comparison is an index
condition on ``asm_events_timestamp_index``, so every batch reads from its
position on. The rows are deleted by the ``ctid`` the selecting scan found
(``asm_events`` is a plain table; no second lookup by primary key), in the
same statement and snapshot.

Why a function: called in autocommit, one batch is one round trip and one
short transaction (``synchronous_commit`` off for that transaction only,
when ``p_async_commit``), and PL/pgSQL keeps the statement and its plan for
the life of the server connection, which survives PgBouncer's transaction
pooling (unlike a client-side prepared statement). The plan is the generic
one (``plan_cache_mode`` for the function only): planning the statement
again for every batch of 100 would cost a good part of the batch, and the
custom plans would all be the same walk of the timestamp index anyway. The
generic plan does not know the limit (the planner assumes a tenth of the
rows), which still makes the ordered index scan far cheaper than reading and
sorting the table; PostgreSQL plans it again after the table is analyzed. The five ``asm_*`` tables
are not touched; ASM (Elixir) ignores the function. A no-op on SQLite.
"""

from typing import Any

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION asm_prune_oldest_events(
    p_after_timestamp timestamp, p_after_sequence integer, p_after_id varchar,
    p_only_types varchar[], p_never_types varchar[], p_limit integer, p_async_commit boolean,
    p_lock_key bigint, p_lock_pid integer, p_lock_transaction text
) RETURNS TABLE (pruned integer, last_timestamp timestamp, last_sequence integer,
                 last_id varchar)
LANGUAGE plpgsql VOLATILE
-- Planned once for the connection, not for every batch: the plan for any position
-- and limit is the same walk of the timestamp index (see the module docstring).
SET plan_cache_mode = force_generic_plan
-- The generic plan's cost grows with the table (it assumes a tenth of it): never
-- worth compiling for a batch of a few hundred rows.
SET jit = off
AS $$
BEGIN
    IF p_async_commit THEN
        -- This transaction only (the call is its own transaction in autocommit).
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    RETURN QUERY
    WITH doomed AS (
        DELETE FROM asm_events WHERE ctid = ANY(ARRAY(
            SELECT e.ctid FROM asm_events AS e
            WHERE (e."timestamp", e.sequence_number, e.id)
                  > (p_after_timestamp, p_after_sequence, p_after_id)
              AND (p_only_types IS NULL OR e."type" = ANY(p_only_types))
              AND e."type" <> ALL(p_never_types)
            ORDER BY e."timestamp", e.sequence_number, e.id
            LIMIT p_limit
        ))
        RETURNING asm_events."timestamp", asm_events.sequence_number, asm_events.id
    )
    SELECT (SELECT count(*) FROM doomed)::integer, d."timestamp", d.sequence_number, d.id
    FROM doomed AS d
    ORDER BY d."timestamp" DESC, d.sequence_number DESC, d.id DESC
    LIMIT 1;
    -- The maintenance lock, when given, is still held by the run's lock transaction:
    -- checked last, so that nothing commits once another run could hold it.
    IF p_lock_key IS NOT NULL AND NOT EXISTS (
        SELECT FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1
          AND classid = ((p_lock_key >> 32) & 4294967295)::oid
          AND objid = (p_lock_key & 4294967295)::oid
          AND pid = p_lock_pid AND virtualtransaction = p_lock_transaction
    ) THEN
        RAISE EXCEPTION 'the agent_sessions maintenance lock was lost' USING ERRCODE = 'AS001';
    END IF;
END
$$
"""

DROP = """
DROP FUNCTION IF EXISTS asm_prune_oldest_events(
    timestamp, integer, varchar, varchar[], varchar[], integer, boolean, bigint, integer, text
)
"""


def _run(sql: str) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("agent_sessions", "0007_append_session_events_function")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP), elidable=False)]
