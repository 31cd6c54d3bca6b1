"""The LangGraph saver's PostgreSQL statements (the rest of the adapters' are in :mod:`.pgsql`).

- :func:`append_session_events` stores several events of one session in *one*
  statement (a ``put``: the new messages and the checkpoint), with the
  guarantees of the store's batch append: a call of
  ``asm_append_session_events`` (migration 0007, its statements planned once
  per server connection), or the same work as a CTE where the function is
  missing.
- :func:`read_checkpoint_events` reads a checkpoint (the given one, or the
  thread's latest) with its pending writes in one statement (a ``get_tuple``).
- :func:`read_checkpoint_page` reads a page of checkpoints with their pending
  writes in one statement (a page of ``list``).

All three run on the Django connection through a driver cursor that binds
parameters server-side (large JSON payloads are sent as they are, nothing
to quote). On a direct connection to the server they are prepared, so they
are not even parsed again; through a transaction-pooling proxy, which
client-side prepared statements do not survive, they run as the protocol's
unnamed statement (see :mod:`agent_sessions.eventlog.routed`). Like the store's single append, they
bypass Django's cursor wrapper and ``connection.queries``; errors are
wrapped as Django wraps them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from agent_sessions import core, signals
from agent_sessions.eventlog import routed
from agent_sessions.pipeline import PipelineOutcome
from agent_sessions.sequences import (
    EVENT_COLUMNS,
    NOTIFY_IF_WATCHED,
    AppendFunctionMissing,
    encode_event,
)

__all__ = ["append_session_events", "read_checkpoint_events", "read_checkpoint_page"]

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

# One page of checkpoints (newest id first), each with its pending writes as one
# JSON array: a page of ``list`` in one statement. Only the filters asked for
# are in the statement (``_PAGE_FILTERS``), so each combination gets plans that
# use its indexes; the writes of a checkpoint are those of its thread, id and
# namespace.
_CHECKPOINT_PAGE = """
SELECT c.session_id, c.data -> %(key)s, c.metadata -> %(key)s, (
    SELECT json_agg(json_build_array(w.data -> %(key)s, w.metadata -> %(key)s))
    FROM asm_events w
    WHERE w.session_id = c.session_id AND w.correlation_id = c.correlation_id
      AND w.type = %(write_type)s AND w.data -> %(key)s ->> 'ns' = c.data -> %(key)s ->> 'ns'
)
FROM asm_events c
WHERE c.type = %(checkpoint_type)s AND c.data ? %(key)s{filters}
ORDER BY c.correlation_id DESC, c.session_id, c.sequence_number DESC
LIMIT %(size)s
"""
_PAGE_FILTERS = {
    "thread_id": "c.session_id = %(thread_id)s",
    "ns": "c.data -> %(key)s ->> 'ns' = %(ns)s",
    "checkpoint_id": "c.correlation_id = %(checkpoint_id)s",
    "before_id": "c.correlation_id < %(before_id)s",
    "after_id": (
        "(c.correlation_id < %(after_id)s"
        " OR (c.correlation_id = %(after_id)s AND c.session_id > %(after_session)s))"
    ),
}

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
            up, or its prepared statement vanished (nothing was written);
            call again (then with the CTE, or unprepared).
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
    rows = _execute(
        connection, _CALL_APPEND_SESSION_EVENTS, params, without_function=_APPEND_SESSION_EVENTS
    )
    numbers = {str(row[0]): int(row[1]) for row in rows}
    stored = [event for event in events if event.id in numbers]
    for event in stored:
        event.sequence_number = numbers[event.id]
    signals.events_stored(connection.alias, [(event, outcomes[event.id]) for event in stored])
    return numbers


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
    params = {
        "session_id": session_id,
        "ns": ns,
        "checkpoint_id": checkpoint_id,
        "key": key,
        "checkpoint_type": checkpoint_type,
        "write_type": write_type,
    }
    rows = _read(connection, _READ_CHECKPOINT_EVENTS, params)
    # Django's connections load jsonb as text (its JSONField decodes it).
    return [(bool(first), _json(data), _json(metadata)) for first, data, metadata in rows]


def read_checkpoint_page(
    connection: BaseDatabaseWrapper,
    *,
    filters: dict[str, str | None],
    size: int,
    key: str,
    checkpoint_type: str,
    write_type: str,
) -> list[tuple[str, Any, Any, list[tuple[Any, Any]]]]:
    """One page of LangGraph checkpoints with their pending writes, in one statement.

    Args:
        connection: A PostgreSQL Django connection.
        filters: ``thread_id``, ``ns``, ``checkpoint_id``, ``before_id`` (ids
            below it) and ``after_id`` with ``after_session`` (the previous
            page's last row); None or absent: not filtered.
        size: At most this many checkpoints.
        key: The key of ``data`` and ``metadata`` holding the saver's fields.
        checkpoint_type: The event type of checkpoints.
        write_type: The event type of pending writes.

    Returns:
        ``(thread id, data[key], metadata[key], [(data[key], metadata[key])
        of each pending write])`` per checkpoint, newest checkpoint id first.
    """
    asked = {name: value for name, value in filters.items() if value is not None}
    conditions = "".join(f" AND {_PAGE_FILTERS[name]}" for name in _PAGE_FILTERS if name in asked)
    params = {
        **asked,
        "size": size,
        "key": key,
        "checkpoint_type": checkpoint_type,
        "write_type": write_type,
    }
    rows = _read(connection, _CHECKPOINT_PAGE.format(filters=conditions), params)
    return [
        (session_id, _json(data), _json(metadata), [tuple(w) for w in _json(writes) or []])
        for session_id, data, metadata, writes in rows
    ]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _read(connection: BaseDatabaseWrapper, sql: str, params: dict[str, Any]) -> list[Any]:
    """Run one of the saver's reads: prepared outside a transaction where the route allows.

    Inside the caller's transaction it runs unprepared (a vanished prepared
    statement would abort the transaction); when the prepared statement
    vanished (nothing was done), it runs again, unprepared.
    """
    try:
        return _execute(connection, sql, params, may_prepare=not connection.in_atomic_block)
    except AppendFunctionMissing:
        return _execute(connection, sql, params)


def _execute(
    connection: BaseDatabaseWrapper,
    sql: str,
    params: dict[str, Any],
    *,
    without_function: str | None = None,
    may_prepare: bool = True,
) -> list[Any]:
    """Run one of the saver's statements as routed (:mod:`agent_sessions.eventlog.routed`).

    ``without_function`` runs instead where ``asm_append_session_events`` is
    missing. ``may_prepare=False`` runs it unprepared whatever the route (a
    read inside the caller's transaction, which a vanished prepared
    statement would abort with no savepoint to return to).

    Raises:
        AppendFunctionMissing: the function went away since it was looked
            up, or the statement prepared for it is gone from the server
            connection (nothing was done); run it again, routed anew.
    """
    return routed.execute(
        connection,
        _APPEND_SESSION_EVENTS_FUNCTION,
        sql,
        params,
        without_function=without_function,
        may_prepare=may_prepare,
    )
