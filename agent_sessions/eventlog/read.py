"""Reading the event log: one session's filtered, ordered events, and the long-poll step.

:func:`events_query` turns :meth:`~agent_sessions.ports.SessionStore.get_events`'s
filters into one SQL statement on the ``(session_id, sequence_number)`` index;
:func:`query_events` runs it and :func:`poll_events` is one step of a
long-poll, which the store repeats while the process's listener
(:mod:`agent_sessions.listener`) waits between steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from agent_sessions import core
from agent_sessions.db import run_read
from agent_sessions.errors import ValidationError
from agent_sessions.eventlog.append import fetch_events
from agent_sessions.eventlog.codec import EVENT_SELECT, db_time
from agent_sessions.validation import check_choice, check_datetime, check_id, check_int

__all__ = ["TimeParam", "events_query", "poll_events", "query_events", "wait_mark"]


def events_query(
    session_id: str,
    *,
    run_id: str | None,
    type: str | Sequence[str] | None,
    since: datetime | None,
    after: int | None,
    before: int | None,
    limit: int | None,
) -> tuple[str, list[Any]]:
    """The SQL and parameters of a ``get_events`` call (arguments validated here).

    Raises:
        ValidationError: an unknown event type or an invalid argument.
    """
    clauses = ["session_id = %s"]
    params: list[Any] = [check_id(session_id, "session_id")]
    if run_id is not None:
        clauses.append("run_id = %s")
        params.append(check_id(run_id, "run_id"))
    if type is not None:
        # Anything but a list of types is one (possibly invalid) type.
        types = list(type) if isinstance(type, (list, tuple, set, frozenset)) else [type]
        if not types:
            raise ValidationError(
                "validation_error", "type must name at least one event type", field="type"
            )
        values = [
            check_choice(t, core.EventType, "type", code="invalid_event_type").value for t in types
        ]
        clauses.append(f"type IN ({', '.join(['%s'] * len(values))})")
        params.extend(values)
    if since is not None:
        clauses.append('"timestamp" > %s')
        params.append(TimeParam(check_datetime(since, "since")))
    if after is not None:
        clauses.append("sequence_number > %s")
        params.append(check_int(after, "after", minimum=None))
    if before is not None:
        clauses.append("sequence_number < %s")
        params.append(check_int(before, "before", minimum=None))
    sql = f"{EVENT_SELECT} WHERE {' AND '.join(clauses)} ORDER BY sequence_number"
    if limit is not None:
        sql += " LIMIT %s"
        params.append(check_int(limit, "limit", minimum=0))
    return sql, params


def query_events(alias: str, sql: str, params: list[Any]) -> list[core.Event]:
    """Run an :func:`events_query` on ``alias`` (one read through the read path)."""

    def read(connection: BaseDatabaseWrapper) -> list[core.Event]:
        values = [p.for_db(connection) if isinstance(p, TimeParam) else p for p in params]
        with connection.cursor() as cursor:
            return fetch_events(cursor, sql, values)

    return run_read(alias, "get_events", read)


def poll_events(
    alias: str, sql: str, params: list[Any], only_after: int | None
) -> tuple[list[core.Event], int]:
    """One long-poll step: the matching events, and the number to wait beyond.

    ``only_after`` is the query's ``after`` (0 for None) when that is its
    only filter (see :func:`wait_mark`), and None otherwise: then the
    session's highest stored number is read, so that the wait is for events
    not seen yet rather than for ones the filters left out.
    """
    events = query_events(alias, sql, params)
    if events or only_after is not None:
        return events, only_after or 0

    def read(connection: BaseDatabaseWrapper) -> Any:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT max(sequence_number) FROM asm_events WHERE session_id = %s",
                [params[0]],
            )
            return cursor.fetchone()

    row = run_read(alias, "get_events", read)
    return events, int(row[0]) if row and row[0] is not None else 0


def wait_mark(
    after: int | None,
    run_id: str | None,
    type: object,
    since: datetime | None,
    before: int | None,
    limit: int | None,
) -> int | None:
    """What a long-poll waits beyond at first: ``after`` when it is the only filter, else None."""
    if run_id is None and type is None and since is None and before is None and limit != 0:
        return after or 0
    return None


class TimeParam:
    """A datetime parameter whose database form depends on the connection's vendor."""

    __slots__ = ("value",)

    def __init__(self, value: datetime) -> None:
        self.value = value

    def for_db(self, connection: BaseDatabaseWrapper) -> Any:
        return db_time(connection, self.value)
