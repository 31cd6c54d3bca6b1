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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.backends.utils import CursorWrapper

from agent_sessions import core
from agent_sessions.fields import to_utc_naive
from agent_sessions.sequences import (
    INSERT_EVENT_FROM_COUNTER,
    NOTIFY_IF_WATCHED,
    dump_json,
    event_params,
)

__all__ = ["append_adk_event", "is_postgres", "read_payloads"]

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

# One ADK append. ``target`` updates (and so locks, until the statement
# commits) the ADK session row, which queues concurrent appends to the
# session: each merges its state delta into the state the previous one left.
# Only when the session exists does ``counter`` bump the sequence counter and
# ``inserted`` store the event under the number it returned.
_APPEND_ADK_EVENT = f"""
WITH target AS (
    UPDATE asm_sessions
    SET updated_at = %(updated_at)s,
        context = coalesce(context, '{{}}'::jsonb) || %(state_delta)s::jsonb
    WHERE id = %(session_id)s AND agent_id = %(app_name)s
      AND metadata ->> 'adk_user_id' = %(user_id)s
    RETURNING id
), counter AS (
    INSERT INTO asm_session_sequences AS seq (session_id, last_sequence, updated_at)
    SELECT id, 1, %(now)s FROM target
    ON CONFLICT (session_id) DO UPDATE
        SET last_sequence = seq.last_sequence + 1, updated_at = EXCLUDED.updated_at
    RETURNING last_sequence
), inserted AS (
    {INSERT_EVENT_FROM_COUNTER}
    RETURNING session_id
), notified AS (
    -- The store's protocol: notify only when a reader holds the session's watch lock.
    SELECT {NOTIFY_IF_WATCHED.format(sid="session_id", source="inserted")}
)
SELECT (SELECT count(*) FROM target), (SELECT count(*) FROM notified)
"""


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
) -> bool:
    """Store one validated ADK event and apply its session-scoped state delta, in one statement.

    The ADK session row gets ``updated_at = event.timestamp`` and its
    ``context`` shallow-merged with ``state_delta`` (as ``{**context,
    **state_delta}`` does in the portable path).

    Args:
        cursor: A cursor of a PostgreSQL Django connection.
        event: The asm event to store (its ``sequence_number`` is ignored).
        app_name: The ADK app (the asm session's ``agent_id``).
        user_id: The ADK user (``metadata["adk_user_id"]`` of the asm session).
        state_delta: Session-scoped state changes (JSON-serialisable).
        now: When the counter was bumped (aware).

    Returns:
        False when there is no such ADK session (then nothing was written).
    """
    params = event_params(event)
    cursor.execute(
        _APPEND_ADK_EVENT,
        {
            **params,
            "updated_at": params["timestamp"],
            "state_delta": dump_json(dict(state_delta)),
            "app_name": app_name,
            "user_id": user_id,
            "now": to_utc_naive(now),
        },
    )
    row = cursor.fetchone()
    return bool(row and row[0])
