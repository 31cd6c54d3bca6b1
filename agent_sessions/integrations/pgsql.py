"""The adapters' PostgreSQL fast paths: the only vendor-specific SQL of the integrations.

Two hot paths of the framework adapters cost more through the ORM than the
frameworks' own SQL stores do, so on PostgreSQL they run as one hand-written
statement each, through Django's connection (same transaction handling, same
error translation). Every other database uses the portable ORM code in the
adapters, which callers reach by checking :func:`is_postgres` first.

- :func:`read_payloads` reads a session's framework records (``data[key]``
  of its events) as *one* JSON array built by the server: one row on the
  wire and one ``json.loads`` instead of one decode per event.
- :func:`append_adk_event` stores an ADK event in *one* statement: it
  touches the ADK session row (``updated_at`` and the session-scoped state
  delta), bumps the session's sequence counter, inserts the event and sends
  the store's ``pg_notify`` (only when a long-polling reader watches the
  session, by the store's advisory "watch lock" protocol, see
  :mod:`agent_sessions.sequences`). Alone in autocommit it needs no BEGIN/COMMIT,
  and it is atomic all the same: a failure undoes the state change and the
  counter bump with it.
- :func:`append_session_events` stores several events of one session in *one*
  statement (the LangGraph saver's ``put``: the new messages and the
  checkpoint), with the same guarantees as the store's batch append: a call
  of ``asm_append_session_events`` (migration 0007), planned once per server
  connection, or the same work as a CTE where the function is missing.
- :func:`read_checkpoint_events` reads a LangGraph checkpoint (the given one,
  or the thread's latest) with its pending writes in one statement.

:func:`aappend_one` (the store's single append) and :func:`aappend_adk_event`
run the same statements on a private async connection
(:mod:`agent_sessions.integrations.pgasync`), awaited without a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db import ProgrammingError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from agent_sessions import core, signals
from agent_sessions.fields import to_utc_naive
from agent_sessions.integrations.pgasync import execute_one
from agent_sessions.pipeline import PipelineOutcome
from agent_sessions.sequences import (
    APPEND_ONE_POSTGRES,
    EVENT_COLUMNS,
    INSERT_EVENT_FROM_COUNTER,
    NOTIFY_IF_WATCHED,
    AppendFunctionMissing,
    dump_json,
    encode_event,
)

__all__ = [
    "ADK_DUPLICATE",
    "ADK_NOT_FOUND",
    "ADK_STORED",
    "aappend_adk_event",
    "aappend_one",
    "append_adk_event",
    "append_session_events",
    "aselect_one",
    "is_postgres",
    "read_checkpoint_events",
    "read_payloads",
]

# The encoding the store writes JSON with (compact, UTF-8 kept, NaN refused).

# The latest ``limit`` records (LIMIT NULL: all of them) of one session,
# aggregated oldest first into a JSON array. ``json_agg`` (not ``jsonb_agg``)
# only concatenates the values' text, the cheapest form to build and to send.
_READ_PAYLOADS = """
SELECT coalesce(json_agg(latest.payload ORDER BY latest.number)::text, '[]')
FROM (
    SELECT data -> %(key)s AS payload, sequence_number AS number
    FROM asm_events
    WHERE session_id = %(session_id)s AND data ? %(key)s
      AND (%(since)s::timestamp IS NULL OR "timestamp" >= %(since)s::timestamp)
    ORDER BY sequence_number DESC
    LIMIT %(limit)s
) AS latest
"""

# The owner check (app, user) is written so that no index can serve it: the
# row is found by its primary key whatever the statistics say. As plain
# equalities, a plan could pick the agent_id index and walk every version of
# every session of the app on each append (each append leaves one: updated_at
# is indexed, so the update is never HOT).
# One ADK append. ``duplicate`` finds the event when it is already stored
# (a re-delivery): then nothing else happens. ``target`` updates (and so locks, until the statement
# commits) the ADK session row, which queues concurrent appends to the
# session: each merges its state delta into the state the previous one left.
# Only when the session exists does ``counter`` bump the sequence counter and
# ``inserted`` store the event under the number it returned.
_APPEND_ADK_EVENT = f"""
WITH duplicate AS (
    SELECT 1 FROM asm_events WHERE id = %(id)s
), target AS (
    UPDATE asm_sessions
    SET updated_at = %(updated_at)s,
        context = coalesce(context, '{{}}'::jsonb) || %(state_delta)s::jsonb
    WHERE id = %(session_id)s
      AND (agent_id, metadata ->> 'adk_user_id')
          IS NOT DISTINCT FROM (%(app_name)s::varchar, %(user_id)s::text)
      AND NOT EXISTS (SELECT 1 FROM duplicate)
    RETURNING id
), counter AS (
    INSERT INTO asm_session_sequences AS seq (session_id, last_sequence, updated_at)
    SELECT id, 1, %(now)s FROM target
    ON CONFLICT (session_id) DO UPDATE
        SET last_sequence = seq.last_sequence + 1, updated_at = EXCLUDED.updated_at
    RETURNING last_sequence
), inserted AS (
    {INSERT_EVENT_FROM_COUNTER}
    RETURNING session_id, sequence_number
), notified AS (
    -- The store's protocol: notify only when a reader holds the session's watch lock.
    SELECT {NOTIFY_IF_WATCHED.format(sid="session_id", source="inserted")}
)
SELECT (SELECT count(*) FROM target), (SELECT count(*) FROM duplicate),
       (SELECT count(*) FROM notified), (SELECT sequence_number FROM inserted)
"""

# Several events of one session in one statement, the columns as binary arrays
# (no quoting of large JSON texts on either side). ``fresh`` keeps the events
# whose id is not stored yet (a re-delivery writes nothing), in input order;
# ``counter`` bumps the session's counter by their number, only when there is
# one (no number is consumed otherwise); ``inserted`` stores them under the
# block of numbers the counter returned. A concurrent append of one of the same
# new ids fails the whole statement with a unique violation (nothing written),
# as does a counter found behind the stored numbers; the store's batch append
# handles both, so callers fall back to it.
_SESSION_EVENT_VALUES = {
    "session_id": "%(session_id)s",
    "sequence_number": "counter.last_sequence - total.n + fresh.rank",
}
_WATCHED = "(SELECT %(session_id)s::text AS sid WHERE EXISTS (SELECT FROM inserted)) AS watched"
_APPEND_SESSION_EVENTS = f"""
WITH batch AS (
    SELECT * FROM unnest(
        %(id)b::varchar[], %(type)b::varchar[], %(timestamp)b::timestamp[],
        %(run_id)b::varchar[], %(data)b::jsonb[], %(metadata)b::jsonb[],
        %(schema_version)b::integer[], %(provider)b::varchar[], %(correlation_id)b::varchar[]
    ) WITH ORDINALITY AS b(id, type, "timestamp", run_id, data, metadata, schema_version,
                           provider, correlation_id, position)
), fresh AS (
    SELECT batch.*, row_number() OVER (ORDER BY batch.position) AS rank
    FROM batch
    WHERE NOT EXISTS (SELECT FROM asm_events WHERE asm_events.id = batch.id)
), total AS (
    SELECT count(*) AS n FROM fresh
), counter AS (
    INSERT INTO asm_session_sequences AS seq (session_id, last_sequence, updated_at)
    SELECT %(session_id)s, total.n, %(now)s FROM total WHERE total.n > 0
    ON CONFLICT (session_id) DO UPDATE
        SET last_sequence = seq.last_sequence + EXCLUDED.last_sequence,
            updated_at = EXCLUDED.updated_at
    RETURNING last_sequence
), inserted AS (
    INSERT INTO asm_events ({", ".join(f'"{name}"' for name in EVENT_COLUMNS)})
    SELECT {", ".join(_SESSION_EVENT_VALUES.get(name, f'fresh."{name}"') for name in EVENT_COLUMNS)}
    FROM fresh, counter, total
    RETURNING id, sequence_number
), notified AS (
    -- The store's protocol: notify only when a reader holds the session's watch lock.
    SELECT {NOTIFY_IF_WATCHED.format(sid="watched.sid", source=_WATCHED)}
)
SELECT id, sequence_number, (SELECT count(*) FROM notified) FROM inserted
"""

#: Migration 0007's function: :data:`_APPEND_SESSION_EVENTS` planned once per
#: server connection.
_APPEND_SESSION_EVENTS_FUNCTION = (
    "asm_append_session_events(varchar, varchar[], varchar[], timestamp[], varchar[], jsonb[],"
    " jsonb[], integer[], varchar[], varchar[], timestamp)"
)
_CALL_APPEND_SESSION_EVENTS = """
SELECT stored_id, stored_number FROM asm_append_session_events(
    %(session_id)s, %(id)b::varchar[], %(type)b::varchar[], %(timestamp)b::timestamp[],
    %(run_id)b::varchar[], %(data)b::jsonb[], %(metadata)b::jsonb[],
    %(schema_version)b::integer[], %(provider)b::varchar[], %(correlation_id)b::varchar[],
    %(now)s)
"""

# A LangGraph checkpoint and its pending writes (they share the correlation id):
# the given checkpoint id, else the thread's latest in the namespace. The
# filters touch ``data`` only (small, readable fields): ``metadata`` holds the
# serialised payload, which PostgreSQL would have to decompress to test it.
_READ_CHECKPOINT_EVENTS = """
SELECT type = %(checkpoint_type)s, data -> %(key)s, metadata -> %(key)s
FROM asm_events
WHERE session_id = %(session_id)s
  AND correlation_id = coalesce(%(checkpoint_id)s::varchar, (
      SELECT correlation_id FROM asm_events
      WHERE session_id = %(session_id)s AND type = %(checkpoint_type)s
        AND data -> %(key)s ->> 'ns' = %(ns)s
      ORDER BY correlation_id DESC
      LIMIT 1))
  AND type IN (%(checkpoint_type)s, %(write_type)s)
  AND data -> %(key)s ->> 'ns' = %(ns)s
ORDER BY sequence_number
"""

_BATCH_COLUMNS = (
    "id",
    "type",
    "timestamp",
    "run_id",
    "data",
    "metadata",
    "schema_version",
    "provider",
    "correlation_id",
)

#: What :func:`append_adk_event` did: stored the event, found it already
#: stored (nothing written), or found no such ADK session (nothing written).
ADK_STORED, ADK_DUPLICATE, ADK_NOT_FOUND = "stored", "duplicate", "not_found"


def _adk_outcome(row: Any) -> str:
    if row and row[0]:
        return ADK_STORED
    if row and row[1]:
        return ADK_DUPLICATE
    return ADK_NOT_FOUND


def is_postgres(alias: str) -> bool:
    """Whether ``alias`` is a PostgreSQL database (and the fast paths apply)."""
    return connections[alias].vendor == "postgresql"


def read_payloads(
    cursor: CursorWrapper,
    session_id: str,
    key: str,
    *,
    limit: int | None = None,
    since: datetime | None = None,
) -> list[Any]:
    """The ``data[key]`` values of a session's events that have one, oldest first.

    Args:
        cursor: A cursor of a PostgreSQL Django connection.
        session_id: The session whose events are read.
        key: The key of ``data`` that holds a record (events without it are skipped).
        limit: Only the latest ``limit`` records (still oldest first); None: all.
        since: Only events whose ``timestamp`` is at or after this aware datetime.

    Returns:
        The decoded records.
    """
    cursor.execute(
        _READ_PAYLOADS,
        {
            "session_id": session_id,
            "key": key,
            "limit": limit,
            "since": None if since is None else to_utc_naive(since),
        },
    )
    row = cursor.fetchone()
    payloads: list[Any] = json.loads(row[0])
    return payloads


def append_adk_event(
    cursor: CursorWrapper,
    event: core.Event,
    *,
    app_name: str,
    user_id: str,
    state_delta: Mapping[str, Any],
    now: datetime,
) -> str:
    """Store one validated ADK event and apply its session-scoped state delta, in one statement.

    The ADK session row gets ``updated_at = event.timestamp`` and its
    ``context`` shallow-merged with ``state_delta`` (as ``{**context,
    **state_delta}`` does in the portable path).

    Args:
        cursor: A cursor of a PostgreSQL Django connection.
        event: The asm event to store, the caller's own validated copy: the
            event pipeline (redaction, shape warnings) changes it in place,
            and it gets its sequence number.
        app_name: The ADK app (the asm session's ``agent_id``).
        user_id: The ADK user (``metadata["adk_user_id"]`` of the asm session).
        state_delta: Session-scoped state changes (JSON-serialisable).
        now: When the counter was bumped (aware).

    Returns:
        :data:`ADK_STORED`, :data:`ADK_DUPLICATE` (an event with this id is
        stored: nothing was written) or :data:`ADK_NOT_FOUND` (no such ADK
        session: nothing was written).

    Raises:
        django.db.IntegrityError: a concurrent append stored the same event
            first (nothing was written).
    """
    params, outcome = _adk_event_params(
        event, app_name=app_name, user_id=user_id, state_delta=state_delta, now=now
    )
    cursor.execute(_APPEND_ADK_EVENT, params)
    row = cursor.fetchone()
    result = _adk_outcome(row)
    if result == ADK_STORED:
        event.sequence_number = int(row[3])
        signals.events_stored(cursor.db.alias, [(event, outcome)])
    return result


async def aappend_adk_event(
    alias: str,
    event: core.Event,
    *,
    app_name: str,
    user_id: str,
    state_delta: Mapping[str, Any],
    now: datetime,
) -> str:
    """:func:`append_adk_event` awaited on a private async connection (see :mod:`.pgasync`).

    The same statement, alone in autocommit: atomic on its own.

    Args:
        alias: A PostgreSQL database alias.
        event: The asm event to store, the caller's own validated copy
            (changed in place as by :func:`append_adk_event`).
        app_name: The ADK app (the asm session's ``agent_id``).
        user_id: The ADK user (``metadata["adk_user_id"]`` of the asm session).
        state_delta: Session-scoped state changes (JSON-serialisable).
        now: When the counter was bumped (aware).

    Returns:
        What happened, as :func:`append_adk_event` returns it.

    Raises:
        django.db.IntegrityError: a concurrent append stored the same event first.
        django.db.DatabaseError: the database failed (nothing was written).
    """
    params, outcome = _adk_event_params(
        event, app_name=app_name, user_id=user_id, state_delta=state_delta, now=now
    )
    row = await execute_one(alias, _APPEND_ADK_EVENT, params)
    result = _adk_outcome(row)
    if result == ADK_STORED:
        assert row is not None
        event.sequence_number = int(row[3])
        # Committed already (one statement in autocommit on the private connection).
        await signals.aevents_stored([(event, outcome)])
    return result


async def aselect_one(alias: str, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A one-row read awaited on the private async connection (the write database).

    Args:
        alias: A PostgreSQL database alias.
        sql: A SELECT with ``%(name)s`` parameters.
        params: Its parameters.

    Returns:
        The first row, or None.
    """
    return await execute_one(alias, sql, params)


async def aappend_one(alias: str, event: core.Event) -> int | None:
    """The store's one-statement append (:mod:`agent_sessions.sequences`), awaited on a
    private async connection (see :mod:`.pgasync`).

    Same statement, so the same guarantees: the counter is bumped only when
    the event is stored (gap-free numbers), an id already stored writes
    nothing, and a long-polling reader of the session is notified.

    Args:
        alias: A PostgreSQL database alias.
        event: The caller's own validated event: the event pipeline changes
            it in place, and it gets its sequence number when stored.

    Returns:
        The new event's sequence number, or None when an event with its id
        is already stored (nothing was written).

    Raises:
        django.db.IntegrityError: a concurrent append stored the same new id
            first (nothing was written; retry through the store).
        django.db.DatabaseError: the database failed (nothing was written).
    """
    # The store's own statement and parameters, reused as they are (sequences.py
    # is their one home), so that both paths keep the same guarantees.
    params, outcome = encode_event(event)
    params["now"] = datetime.now(UTC).replace(tzinfo=None)
    row = await execute_one(alias, APPEND_ONE_POSTGRES, params)
    if row is None:
        return None
    event.sequence_number = int(row[0])
    # Committed already (one statement in autocommit on the private connection).
    await signals.aevents_stored([(event, outcome)])
    return event.sequence_number


def append_session_events(
    connection: BaseDatabaseWrapper, session_id: str, events: Sequence[core.Event]
) -> dict[str, int]:
    """Store validated events of one session in one statement (new ids only).

    What the store's batch append guarantees, in one round trip: events whose
    id is already stored are skipped (no number consumed), the others get the
    session's next numbers in input order, long-polling readers of the
    session are notified, all or nothing. Alone in autocommit the statement
    needs no BEGIN/COMMIT.

    Args:
        connection: A PostgreSQL Django connection (in autocommit, or inside
            the caller's transaction).
        session_id: The session of every event.
        events: The writer's own validated events, distinct ids: the event
            pipeline changes them in place (see
            :func:`~agent_sessions.sequences.encode_event`).

    Returns:
        The sequence number of each newly stored event, by id.

    Raises:
        django.db.IntegrityError: a concurrent append stored one of the new
            ids first, or the session's counter is behind its events
            (nothing was written; the store's ``append_events`` handles both).
        AppendFunctionMissing: the function was dropped since it was looked
            up (nothing was written); call again (then with the CTE).
    """
    columns: dict[str, list[Any]] = {name: [] for name in _BATCH_COLUMNS}
    outcomes: dict[str, PipelineOutcome | None] = {}
    for event in events:
        if event.session_id != session_id:
            raise ValueError(f"event {event.id} belongs to session {event.session_id}")
        params, outcomes[event.id] = encode_event(event)
        for name, values in columns.items():
            values.append(params[name])
    params = {**columns, "session_id": session_id, "now": datetime.now(UTC).replace(tzinfo=None)}
    use_function = False
    try:
        with _statement_cursor(connection) as cursor:
            use_function = _has_function(connection, cursor, _APPEND_SESSION_EVENTS_FUNCTION)
            cursor.execute(
                _CALL_APPEND_SESSION_EVENTS if use_function else _APPEND_SESSION_EVENTS, params
            )
            numbers = {str(row[0]): int(row[1]) for row in cursor.fetchall()}
    except ProgrammingError as exc:
        if use_function and getattr(exc.__cause__, "sqlstate", None) == _UNDEFINED_FUNCTION:
            # Dropped since it was looked up: looked up again on the next call.
            del connection._agent_sessions_functions  # type: ignore[attr-defined]
            raise AppendFunctionMissing from exc
        raise
    stored = [event for event in events if event.id in numbers]
    for event in stored:
        event.sequence_number = numbers[event.id]
    signals.events_stored(connection.alias, [(event, outcomes[event.id]) for event in stored])
    return numbers


_UNDEFINED_FUNCTION = "42883"


def _has_function(connection: BaseDatabaseWrapper, cursor: Any, signature: str) -> bool:
    """Whether a database function exists, looked up once per server connection (remembered
    with the driver connection: a process started before ``migrate`` uses it from its next
    connection on)."""
    cached = getattr(connection, "_agent_sessions_functions", None)
    if cached is None or cached[0] is not connection.connection:
        cached = (connection.connection, {})
        connection._agent_sessions_functions = cached  # type: ignore[attr-defined]
    known: dict[str, bool] = cached[1]
    if signature not in known:
        cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [signature])
        known[signature] = bool(cursor.fetchone()[0])
    return known[signature]


def read_checkpoint_events(
    connection: BaseDatabaseWrapper,
    *,
    session_id: str,
    ns: str,
    checkpoint_id: str | None,
    key: str,
    checkpoint_type: str,
    write_type: str,
) -> list[tuple[bool, dict[str, Any], dict[str, Any] | None]]:
    """A LangGraph checkpoint's event and its pending writes' events, in one statement.

    Args:
        connection: A PostgreSQL Django connection.
        session_id: The thread's asm session.
        ns: The checkpoint namespace (``data[key]["ns"]``).
        checkpoint_id: The checkpoint (the events' ``correlation_id``);
            None: the thread's latest in ``ns`` (the greatest id).
        key: The key of ``data`` and ``metadata`` holding the saver's fields.
        checkpoint_type: The event type of checkpoints.
        write_type: The event type of pending writes.

    Returns:
        ``(is the checkpoint, data[key], metadata[key])`` per event, in
        sequence order; empty when there is no such checkpoint.
    """
    with _statement_cursor(connection) as cursor:
        cursor.execute(
            _READ_CHECKPOINT_EVENTS,
            {
                "session_id": session_id,
                "ns": ns,
                "checkpoint_id": checkpoint_id,
                "key": key,
                "checkpoint_type": checkpoint_type,
                "write_type": write_type,
            },
        )
        rows = cursor.fetchall()
    # Django's connections load jsonb as text (its JSONField decodes it).
    return [(bool(first), _json(data), _json(metadata)) for first, data, metadata in rows]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


@contextmanager
def _statement_cursor(connection: BaseDatabaseWrapper) -> Iterator[Any]:
    """A server-binding driver cursor on the Django connection, for the adapters' statements.

    Parameters travel apart from the statement (nothing to quote: large JSON
    payloads are sent as they are) in the protocol's unnamed statement,
    which transaction-pooling proxies pass through. The statement is
    prepared (planned once per connection) only when the project lets
    psycopg prepare (``DATABASES[...]["OPTIONS"]["prepare_threshold"]``, as
    for the store's single append, see :mod:`agent_sessions.sequences`).
    Bypasses Django's cursor wrapper and ``connection.queries``; errors are
    wrapped as Django wraps them.
    """
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


def _adk_event_params(
    event: core.Event,
    *,
    app_name: str,
    user_id: str,
    state_delta: Mapping[str, Any],
    now: datetime,
) -> tuple[dict[str, Any], PipelineOutcome | None]:
    params, outcome = encode_event(event)
    return {
        **params,
        "updated_at": params["timestamp"],
        "state_delta": dump_json(dict(state_delta)),
        "app_name": app_name,
        "user_id": user_id,
        "now": to_utc_naive(now),
    }, outcome
