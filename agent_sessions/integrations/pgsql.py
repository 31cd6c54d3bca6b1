"""The adapters' PostgreSQL fast paths: the vendor-specific SQL of the integrations.

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

The LangGraph saver's statements are in :mod:`.langgraph_pgsql`, its other
half.

:func:`aappend_one` (the store's single append) and :func:`aappend_adk_event`
run the same statements on a private async connection
(:mod:`agent_sessions.integrations.pgasync`), awaited without a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import connections
from django.db.backends.utils import CursorWrapper

from agent_sessions import core, signals
from agent_sessions.fields import to_utc_naive
from agent_sessions.integrations.pgasync import execute_one
from agent_sessions.pipeline import PipelineOutcome
from agent_sessions.sequences import (
    APPEND_ONE_POSTGRES,
    INSERT_EVENT_FROM_COUNTER,
    NOTIFY_IF_WATCHED,
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
    "aselect_one",
    "is_postgres",
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
