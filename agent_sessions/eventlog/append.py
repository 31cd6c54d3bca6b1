"""The append algorithm: gap-free per-session numbers, idempotent by event id.

:func:`append_prepared` stores validated events
(:func:`~agent_sessions.eventlog.codec.prepared_event`) inside the caller's
transaction — the store runs it through the one write path
(:func:`agent_sessions.db.run_write`), which retries on the
:class:`~agent_sessions.db.RetryTransaction` subclasses raised here:

- events whose id is already stored return the stored event and consume no
  number; so do repeats of an id within a batch;
- each session's block of numbers comes from one counter upsert
  (:func:`~agent_sessions.eventlog.sql.reserve_blocks`); a counter found missing
  or behind the stored events is caught up and the append runs again;
- on PostgreSQL a single event is one statement
  (:func:`~agent_sessions.eventlog.sql.append_one_postgres`), a batch one
  ``COPY``; readers watching the sessions are notified in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from agent_sessions import core, signals
from agent_sessions.db import RetryTransaction
from agent_sessions.eventlog.codec import (
    EVENT_COLUMNS,
    EVENT_SELECT,
    db_time,
    encode_event,
    event_from_row,
    event_row,
)
from agent_sessions.eventlog.sql import (
    STORED_EVENTS_POSTGRES,
    AppendFunctionMissing,
    append_one_postgres,
    append_one_sqlite,
    catch_up_counters,
    copy_events_postgres,
    insert_events_sqlite,
    notify_sessions,
    reserve_blocks,
)
from agent_sessions.pipeline import PipelineOutcome
from agent_sessions.validation import utcnow

__all__ = ["append_prepared", "fetch_events", "stored_events_by_id"]

_FETCH_CHUNK = 2000


class _EventIdRace(RetryTransaction):
    """Another transaction stored the same new event id first; retry to read its row."""


class _AppendFunctionGone(RetryTransaction):
    """The append function was dropped (migration 0006 reversed); run the append again."""


class _CounterBehind(RetryTransaction):
    """A sequence number handed out is taken: the sessions' counters are missing or behind.

    ASM's orphan clean-up deletes counters of sessions without a row even
    when events exist; the counter is caught up with the stored events and
    the append runs again, continuing at ``max(sequence_number) + 1``
    (CONTRACT §11).
    """

    def __init__(self, session_ids: Iterable[str]) -> None:
        super().__init__("sequence number taken")
        self.session_ids = sorted(set(session_ids))

    def before_retry(self, connection: BaseDatabaseWrapper) -> None:
        with connection.cursor() as cursor:
            catch_up_counters(connection, cursor, self.session_ids)


def _is_sequence_conflict(exc: IntegrityError) -> bool:
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    if diag is not None:
        name = getattr(diag, "constraint_name", None)
        return bool(name == "asm_events_session_id_sequence_number_index")
    return "asm_events.session_id, asm_events.sequence_number" in str(exc)


def _is_event_id_conflict(exc: IntegrityError) -> bool:
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    if diag is not None:
        return getattr(diag, "constraint_name", None) == "asm_events_pkey"
    return "asm_events.id" in str(exc)


def fetch_events(cursor: CursorWrapper, sql: str, params: Sequence[Any]) -> list[core.Event]:
    cursor.execute(sql, params)
    events: list[core.Event] = []
    # Chunks keep only one slice of raw rows alive next to the Event objects.
    while rows := cursor.fetchmany(_FETCH_CHUNK):
        events.extend(map(event_from_row, rows))
    return events


def stored_events_by_id(
    connection: BaseDatabaseWrapper, cursor: CursorWrapper, ids: list[str]
) -> dict[str, core.Event]:
    queries: list[tuple[str, list[Any]]]
    if connection.vendor == "postgresql":
        # One array parameter: far cheaper to send and plan than a long IN list.
        queries = [(STORED_EVENTS_POSTGRES, [ids])]
    else:
        # Bounded IN lists keep SQLite under its bound-parameter limit.
        chunks = [ids[start : start + 500] for start in range(0, len(ids), 500)]
        queries = [
            (f"{EVENT_SELECT} WHERE id IN ({', '.join(['%s'] * len(chunk))})", chunk)
            for chunk in chunks
        ]
    found: dict[str, core.Event] = {}
    for sql, params in queries:
        for event in fetch_events(cursor, sql, params):
            found[event.id] = event
    return found


def append_prepared(connection: BaseDatabaseWrapper, events: list[core.Event]) -> list[core.Event]:
    """Store validated events inside the current transaction; results in input order.

    On PostgreSQL a batch is first written optimistically, without looking
    up which ids are stored already (a thousand primary-key probes cost about
    a tenth of the batch): inside a savepoint, so that when ``COPY`` meets a
    stored id the savepoint is rolled back (counters included) and the batch
    is written again without the stored ids. SQLite looks them up first.
    """
    if not events:
        return []
    if len(events) == 1:
        return [_append_one(connection, events[0])]
    encoded: dict[str, tuple[list[Any], PipelineOutcome | None]] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            try:
                with transaction.atomic(using=connection.alias):
                    return _write_batch(connection, cursor, events, {}, encoded)
            except _EventIdRace:
                pass  # a stored id: written again below, without it
        unique_ids = list(dict.fromkeys(event.id for event in events))
        stored = stored_events_by_id(connection, cursor, unique_ids)
        return _write_batch(connection, cursor, events, stored, encoded)


def _write_batch(
    connection: BaseDatabaseWrapper,
    cursor: CursorWrapper,
    events: list[core.Event],
    stored: dict[str, core.Event],
    encoded: dict[str, tuple[list[Any], PipelineOutcome | None]],
) -> list[core.Event]:
    """Write the events whose ids are not in ``stored`` (each id once); results in input order.

    ``encoded`` keeps each event's row and pipeline outcome across attempts:
    the pipeline runs once per event even when the batch is written twice.
    """
    new_events: list[core.Event] = []
    seen: set[str] = set(stored)
    for event in events:
        if event.id not in seen:
            seen.add(event.id)
            new_events.append(event)
    if not new_events:
        return [stored[event.id] for event in events]
    counts: dict[str, int] = {}
    for event in new_events:
        counts[event.session_id] = counts.get(event.session_id, 0) + 1
    now = db_time(connection, utcnow())
    last = reserve_blocks(connection, cursor, counts, now)
    next_number = {sid: last[sid] - count + 1 for sid, count in counts.items()}

    def rows() -> Iterator[list[Any]]:
        for event in new_events:
            number = next_number[event.session_id]
            next_number[event.session_id] += 1
            event.sequence_number = number
            if event.id in encoded:
                row = encoded[event.id][0]
                row[_SEQUENCE_INDEX] = number
            else:
                encoded[event.id] = event_row(connection, event, number)
                row = encoded[event.id][0]
            stored[event.id] = event
            yield row

    try:
        if connection.vendor == "postgresql":
            # Rows are encoded as COPY sends them, so PostgreSQL is
            # already inserting while later rows are being encoded.
            copy_events_postgres(connection, cursor, rows())
        else:
            insert_events_sqlite(cursor, list(rows()))
    except IntegrityError as exc:
        if _is_event_id_conflict(exc):
            raise _EventIdRace from exc
        if _is_sequence_conflict(exc):
            raise _CounterBehind(counts) from exc
        raise
    notify_sessions(connection, cursor, counts)
    signals.events_stored(connection.alias, [(event, encoded[event.id][1]) for event in new_events])
    return [stored[event.id] for event in events]


_SEQUENCE_INDEX = EVENT_COLUMNS.index("sequence_number")


def _already_stored(
    connection: BaseDatabaseWrapper, cursor: CursorWrapper, event_id: str
) -> core.Event:
    """The stored event a duplicate single append returns, unchanged (read again on a race)."""
    stored = stored_events_by_id(connection, cursor, [event_id]).get(event_id)
    if stored is None:
        raise _EventIdRace("the stored event was deleted meanwhile")
    return stored


def _append_one(connection: BaseDatabaseWrapper, event: core.Event) -> core.Event:
    """A single event: one statement on PostgreSQL, two in their own transaction on SQLite."""
    outcome: PipelineOutcome | None
    try:
        if connection.vendor == "postgresql":
            # The hot path: parameters built directly (validated timestamps are already UTC).
            params, outcome = encode_event(event)
            params["now"] = datetime.now(UTC).replace(tzinfo=None)
            number = append_one_postgres(connection, params)
        else:
            row, outcome = event_row(connection, event, 0)
            now = db_time(connection, utcnow())
            number = append_one_sqlite(connection, row, event.id, event.session_id, now)
    except AppendFunctionMissing as exc:
        raise _AppendFunctionGone from exc
    except IntegrityError as exc:
        if _is_event_id_conflict(exc):
            raise _EventIdRace from exc
        if _is_sequence_conflict(exc):
            raise _CounterBehind([event.session_id]) from exc
        raise
    if number is None:
        with connection.cursor() as cursor:
            return _already_stored(connection, cursor, event.id)
    event.sequence_number = number
    signals.events_stored(connection.alias, [(event, outcome)])
    return event
