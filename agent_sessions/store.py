"""The SessionStore on the Django ORM's database connections.

:class:`DjangoSessionStore` keeps sessions, runs and each session's ordered
event log in the ``asm_*`` tables, with gap-free per-session sequence numbers
under any concurrency; :class:`DjangoArtifactRegistry` indexes artifacts kept
elsewhere. Both follow the database routers unless given a ``using`` alias::

    store = DjangoSessionStore()
    session = Session.new("agent-1")
    store.save_session(session)
    stored = store.append_event(Event.new("message_sent", session.id, data={"text": "hi"}))
    stored.sequence_number  # 1

Appends are lean: events are validated once, then written with raw SQL
through Django's connection (one statement per single append on PostgreSQL,
``COPY`` for batches), and reads build :class:`~agent_sessions.core.Event`
objects straight from the cursor rows. The vendor-specific SQL lives in
:mod:`agent_sessions.sequences`.

``DjangoArtifactRegistry`` (:mod:`agent_sessions.artifacts`) and
``delete_sessions_cascade`` (:mod:`agent_sessions.cascade`) are re-exported
here, where they have always been importable.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db import IntegrityError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from agent_sessions import core, signals
from agent_sessions import models as m
from agent_sessions.aio import SessionStoreAsyncMixin, run_in_worker
from agent_sessions.artifacts import DjangoArtifactRegistry
from agent_sessions.cascade import delete_sessions_cascade
from agent_sessions.db import (
    SQLITE_LOCK_RETRY_SECONDS,
    RetryTransaction,
    check_alias,
    db_for_read,
    db_for_write,
    run_read,
    run_write,
)
from agent_sessions.errors import AgentSessionsError, NotFoundError, ValidationError
from agent_sessions.fields import to_utc_naive
from agent_sessions.listener import get_listener
from agent_sessions.pipeline import PipelineOutcome
from agent_sessions.sequences import (
    EVENT_COLUMNS,
    STORED_EVENTS_POSTGRES,
    AppendFunctionMissing,
    append_one_postgres,
    catch_up_counters,
    copy_events_postgres,
    encode_event,
    insert_events_sqlite,
    notify_sessions,
    reserve_blocks,
)
from agent_sessions.telemetry import Attributes, long_poll_timer, run_attributes, traced
from agent_sessions.validation import (
    check_choice,
    check_datetime,
    check_id,
    check_int,
    check_json,
    check_varchar,
    utcnow,
)

__all__ = [
    "SQLITE_LOCK_RETRY_SECONDS",
    "DjangoArtifactRegistry",
    "DjangoSessionStore",
    "delete_sessions_cascade",
]

_T = TypeVar("_T")


_EVENT_SELECT = "SELECT {} FROM asm_events".format(", ".join(f'"{c}"' for c in EVENT_COLUMNS))
_EVENT_TYPES = {t.value: t for t in core.EventType}
_EVENT_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(core.Event))
_FETCH_CHUNK = 2000
_loads = json.loads


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


# --------------------------------------------------------------------------- plumbing


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


def _db_time(connection: BaseDatabaseWrapper, value: datetime) -> Any:
    """An aware datetime as a ``timestamp`` parameter: naive UTC, text on SQLite."""
    naive = to_utc_naive(value)
    if connection.vendor == "postgresql":
        return naive
    # The fixed-width text UTCDateTimeField writes, so comparisons stay chronological.
    return naive.isoformat(" ", timespec="microseconds")


def _aware(value: Any) -> datetime:
    if type(value) is str:
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


def _json_object(value: Any) -> Any:
    if value is None:
        return {}
    return _loads(value) if type(value) is str else value


def _event_from_row(row: Sequence[Any]) -> core.Event:
    """Build an Event from a stored row without validating it again (it was validated on write).

    Rows written by other applications get the same read conversions as the
    ORM's: NULL JSON maps read as ``{}``, timestamps come back aware UTC.
    """
    event = _blank_event()
    (
        event.id,
        type_,
        timestamp,
        event.session_id,
        event.run_id,
        event.sequence_number,
        data,
        metadata,
        event.schema_version,
        event.provider,
        event.correlation_id,
    ) = row
    # A type this version does not know (written by a newer ASM) is passed
    # through as its string rather than making the whole log unreadable.
    event.type = _EVENT_TYPES.get(type_, type_)
    event.timestamp = _aware(timestamp)
    event.data = _json_object(data)
    event.metadata = _json_object(metadata)
    return event


def _blank_event() -> core.Event:
    # Skips __init__ and with it validation: the row was validated when written.
    return object.__new__(core.Event)


def _prepared_event(event: core.Event) -> core.Event:
    """A validated copy of ``event`` without its caller-supplied sequence number."""
    if not isinstance(event, core.Event):
        raise ValidationError(
            "validation_error", f"expected an Event, not {type(event).__name__}", field="event"
        )
    # A shallow copy, then validate() on it: it replaces every field by a checked,
    # normalised value (JSON deep-copied), so the caller's object stays untouched.
    # Cheaper than dataclasses.replace(), which re-reads the field list each call.
    copy = _blank_event()
    for name in _EVENT_FIELD_NAMES:
        setattr(copy, name, getattr(event, name))
    copy.sequence_number = None
    copy.validate()
    return copy


def _check_events(events: Sequence[core.Event]) -> list[core.Event]:
    if isinstance(events, str | bytes) or not isinstance(events, Sequence | tuple | list):
        raise ValidationError(
            "validation_error", "events must be a sequence of Event objects", field="events"
        )
    return [_prepared_event(event) for event in events]


def _event_row(
    connection: BaseDatabaseWrapper, event: core.Event, number: int
) -> tuple[list[Any], PipelineOutcome | None]:
    """The event's row in :data:`EVENT_COLUMNS` order, built by the event codec (pipeline run)."""
    params, outcome = encode_event(event)
    params["sequence_number"] = number
    if connection.vendor != "postgresql":
        params["timestamp"] = _db_time(connection, event.timestamp)
    return [params[name] for name in EVENT_COLUMNS], outcome


def _fetch_events(cursor: CursorWrapper, sql: str, params: Sequence[Any]) -> list[core.Event]:
    cursor.execute(sql, params)
    events: list[core.Event] = []
    # Chunks keep only one slice of raw rows alive next to the Event objects.
    while rows := cursor.fetchmany(_FETCH_CHUNK):
        events.extend(map(_event_from_row, rows))
    return events


def _stored_events_by_id(
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
            (f"{_EVENT_SELECT} WHERE id IN ({', '.join(['%s'] * len(chunk))})", chunk)
            for chunk in chunks
        ]
    found: dict[str, core.Event] = {}
    for sql, params in queries:
        for event in _fetch_events(cursor, sql, params):
            found[event.id] = event
    return found


def _append_prepared(connection: BaseDatabaseWrapper, events: list[core.Event]) -> list[core.Event]:
    """Store validated events inside the current transaction; results in input order."""
    if not events:
        return []
    if connection.vendor == "postgresql" and len(events) == 1:
        return [_append_one_postgres(connection, events[0])]
    with connection.cursor() as cursor:
        unique_ids = list(dict.fromkeys(event.id for event in events))
        stored = _stored_events_by_id(connection, cursor, unique_ids)
        new_events: list[core.Event] = []
        seen: set[str] = set(stored)
        for event in events:
            if event.id not in seen:
                seen.add(event.id)
                new_events.append(event)
        if new_events:
            counts: dict[str, int] = {}
            for event in new_events:
                counts[event.session_id] = counts.get(event.session_id, 0) + 1
            now = _db_time(connection, utcnow())
            last = reserve_blocks(connection, cursor, counts, now)
            next_number = {sid: last[sid] - count + 1 for sid, count in counts.items()}
            rows = []
            outcomes: list[PipelineOutcome | None] = []
            for event in new_events:
                event.sequence_number = next_number[event.session_id]
                next_number[event.session_id] += 1
                row, outcome = _event_row(connection, event, event.sequence_number)
                rows.append(row)
                outcomes.append(outcome)
                stored[event.id] = event
            try:
                if connection.vendor == "postgresql":
                    copy_events_postgres(connection, cursor, rows)
                else:
                    insert_events_sqlite(cursor, rows)
            except IntegrityError as exc:
                if _is_event_id_conflict(exc):
                    raise _EventIdRace from exc
                if _is_sequence_conflict(exc):
                    raise _CounterBehind(counts) from exc
                raise
            notify_sessions(connection, cursor, counts)
            signals.events_stored(connection.alias, zip(new_events, outcomes, strict=True))
    return [stored[event.id] for event in events]


def _append_one_postgres(connection: BaseDatabaseWrapper, event: core.Event) -> core.Event:
    # The hot path: parameters built directly (validated timestamps are already UTC).
    params, outcome = encode_event(event)
    params["now"] = datetime.now(UTC).replace(tzinfo=None)
    try:
        number = append_one_postgres(connection, params)
    except AppendFunctionMissing as exc:
        raise _AppendFunctionGone from exc
    except IntegrityError as exc:
        if _is_event_id_conflict(exc):
            raise _EventIdRace from exc
        if _is_sequence_conflict(exc):
            raise _CounterBehind([event.session_id]) from exc
        raise
    if number is None:
        # Already stored: return that event, unchanged.
        with connection.cursor() as cursor:
            stored = _stored_events_by_id(connection, cursor, [event.id]).get(event.id)
        if stored is None:
            raise _EventIdRace("the stored event was deleted meanwhile")
        return stored
    event.sequence_number = number
    signals.events_stored(connection.alias, [(event, outcome)])
    return event


# --------------------------------------------------------------------------- span attributes
# What each store call's span records (agent_sessions.telemetry); only
# called while a span records, so their cost is nothing otherwise.


def _db_system(store: DjangoSessionStore) -> dict[str, Any]:
    return {"db.system.name": connections[store._write_alias()].vendor}


def _by_session_id(store: DjangoSessionStore, session_id: object, *a: Any, **k: Any) -> Attributes:
    return {**_db_system(store), "gen_ai.conversation.id": _text(session_id)}


def _by_agent_id(
    store: DjangoSessionStore, *a: Any, agent_id: object = None, **k: Any
) -> Attributes:
    return {**_db_system(store), "gen_ai.agent.id": _text(agent_id)}


def _by_run_id(store: DjangoSessionStore, run_id: object, *a: Any, **k: Any) -> Attributes:
    return {**_db_system(store), "agent_sessions.run.id": _text(run_id)}


def _session_described(store: DjangoSessionStore, session: core.Session) -> Attributes:
    return {
        **_db_system(store),
        "gen_ai.conversation.id": _text(session.id),
        "gen_ai.agent.id": _text(session.agent_id),
    }


def _run_described(store: DjangoSessionStore, run: core.Run) -> Attributes:
    return {**_db_system(store), **run_attributes(run)}


def _event_described(store: DjangoSessionStore, event: core.Event) -> Attributes:
    return {
        **_db_system(store),
        "gen_ai.conversation.id": _text(event.session_id),
        "agent_sessions.event.type": _text(event.type),
        "agent_sessions.run.id": _text(event.run_id),
        "gen_ai.provider.name": _text(event.provider),
    }


def _events_described(store: DjangoSessionStore, events: Sequence[core.Event]) -> Attributes:
    return {
        **_db_system(store),
        "gen_ai.conversation.id": _common_session_id(events),
        "agent_sessions.event.count": len(events),
    }


def _flush_described(
    store: DjangoSessionStore,
    *,
    session: core.Session,
    run: core.Run,
    events: Sequence[core.Event],
    **k: Any,
) -> Attributes:
    return {
        **_db_system(store),
        **run_attributes(run),
        "gen_ai.agent.id": _text(session.agent_id),
        "agent_sessions.event.count": len(events),
    }


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str) else None


# --------------------------------------------------------------------------- the store


class DjangoSessionStore(SessionStoreAsyncMixin):
    """The :class:`~agent_sessions.ports.SessionStore` on a Django database.

    Args:
        using: Database alias to use; None follows the database routers
            (writes go to ``db_for_write``, reads to ``db_for_read``, except
            read-after-write reads such as :meth:`get_active_run` and
            long-polls, which use the write database).
        consistent: With the routers (``using=None``), send every read to the
            write database too, so it sees this process's latest writes even
            when reads are routed to a lagging replica. Off by default: a
            replica takes the read load. For one block of code instead, see
            :func:`agent_sessions.routing.read_from_primary`; reads inside an
            ``atomic()`` block on the write database always stay on it.

    Every public method raises only ``agent_sessions`` errors: invalid input
    → :class:`~agent_sessions.errors.ValidationError` before anything is
    written; database failure → :class:`~agent_sessions.errors.StorageError`
    (cause in ``details``); missing tables →
    :class:`~agent_sessions.errors.MigrationRequiredError`.
    """

    def __init__(self, using: str | None = None, *, consistent: bool = False) -> None:
        self.using = check_alias(using)
        self.consistent = consistent

    def _write_alias(self) -> str:
        return db_for_write(self.using, m.Event)

    def _read_alias(self, model: type = m.Event) -> str:
        return db_for_read(self.using, model, consistent=self.consistent)

    # ----------------------------------------------------------------- sessions

    @traced("save_session", _session_described)
    def save_session(self, session: core.Session) -> None:
        """Insert the session, or replace every column but ``id`` of the stored one.

        Raises:
            ValidationError: the session holds an invalid value.
            StorageError: the database failed.
        """
        session = _checked(session, core.Session, "session")
        alias = db_for_write(self.using, m.Session)
        run_write(alias, "save_session", lambda _c: _upsert(alias, m.Session.from_domain(session)))

    @traced("get_session", _by_session_id)
    def get_session(self, session_id: str) -> core.Session:
        """Return the stored session, soft-deleted or not.

        Raises:
            NotFoundError: ``session_not_found`` when no row has this id.
        """
        session_id = check_id(session_id, "session_id")
        alias = self._read_alias(m.Session)
        row = run_read(
            alias,
            "get_session",
            lambda _c: m.Session.objects.using(alias).filter(id=session_id).first(),
        )
        if row is None:
            raise NotFoundError(
                "session_not_found",
                f"Session {session_id!r} not found.",
                {"session_id": session_id},
            )
        return row.to_domain()

    @traced("list_sessions", _by_agent_id)
    def list_sessions(
        self,
        *,
        status: str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[core.Session]:
        """Return sessions (soft-deleted included), newest ``created_at`` first, then by id.

        Args:
            status: Only sessions with this status.
            agent_id: Only sessions of this agent.
            limit: At most this many (≥ 0).
            offset: Skip this many first (≥ 0).

        Raises:
            ValidationError: ``invalid_status`` for an unknown status, or a bad limit/offset.
        """
        queryset = m.Session.objects.using(self._read_alias(m.Session))
        if status is not None:
            queryset = queryset.filter(
                status=check_choice(status, core.SessionStatus, "status", code="invalid_status")
            )
        if agent_id is not None:
            queryset = queryset.filter(agent_id=check_varchar(agent_id, "agent_id"))
        queryset = _page(queryset.order_by("-created_at", "id"), limit=limit, offset=offset)
        return run_read(
            queryset.db, "list_sessions", lambda _c: [row.to_domain() for row in queryset.all()]
        )

    @traced("delete_session", _by_session_id)
    def delete_session(self, session_id: str) -> None:
        """Delete the session with its runs, events, sequence counter and artifacts.

        One transaction; deleting a missing session is not an error. See
        :func:`delete_sessions_cascade` for many at once.
        """
        delete_sessions_cascade([session_id], using=db_for_write(self.using, m.Session))

    # ----------------------------------------------------------------- runs

    @traced("save_run", _run_described)
    def save_run(self, run: core.Run) -> None:
        """Insert the run, or replace every column but ``id`` of the stored one.

        Raises:
            ValidationError: the run holds an invalid value.
            StorageError: the database failed.
        """
        run = _checked(run, core.Run, "run")
        alias = db_for_write(self.using, m.Run)
        run_write(alias, "save_run", lambda _c: _upsert(alias, m.Run.from_domain(run)))

    @traced("get_run", _by_run_id)
    def get_run(self, run_id: str) -> core.Run:
        """Return the stored run.

        Raises:
            NotFoundError: ``run_not_found`` when no row has this id.
        """
        run_id = check_id(run_id, "run_id")
        alias = self._read_alias(m.Run)
        row = run_read(
            alias, "get_run", lambda _c: m.Run.objects.using(alias).filter(id=run_id).first()
        )
        if row is None:
            raise NotFoundError("run_not_found", f"Run {run_id!r} not found.", {"run_id": run_id})
        return row.to_domain()

    @traced("list_runs", _by_session_id)
    def list_runs(
        self, session_id: str, *, status: str | None = None, limit: int | None = None
    ) -> list[core.Run]:
        """Return the session's runs, oldest ``started_at`` first (then by id).

        Raises:
            ValidationError: ``invalid_status`` for an unknown status, or a bad limit.
        """
        session_id = check_id(session_id, "session_id")
        queryset = m.Run.objects.using(self._read_alias(m.Run)).filter(session_id=session_id)
        if status is not None:
            queryset = queryset.filter(
                status=check_choice(status, core.RunStatus, "status", code="invalid_status")
            )
        queryset = _page(queryset.order_by("started_at", "id"), limit=limit, offset=None)
        return run_read(
            queryset.db, "list_runs", lambda _c: [row.to_domain() for row in queryset.all()]
        )

    @traced("get_active_run", _by_session_id)
    def get_active_run(self, session_id: str) -> core.Run | None:
        """Return the session's ``running`` run (the latest started if several), or None.

        Reads from the write database, so a run saved just before is seen even
        when routers send reads to a replica.
        """
        session_id = check_id(session_id, "session_id")
        alias = db_for_write(self.using, m.Run)
        row = run_read(
            alias,
            "get_active_run",
            lambda _c: (
                m.Run.objects.using(alias)
                .filter(session_id=session_id, status=core.RunStatus.RUNNING.value)
                .order_by("-started_at", "-id")
                .first()
            ),
        )
        return None if row is None else row.to_domain()

    # ----------------------------------------------------------------- events

    def append_event(self, event: core.Event) -> core.Event:
        """Store the event with the next sequence number (as :meth:`append_event_with_sequence`)."""
        return self.append_event_with_sequence(event)

    @traced("append_event", _event_described, append=True)
    def append_event_with_sequence(self, event: core.Event) -> core.Event:
        """Store the event with the session's next sequence number and return the stored event.

        The caller's object is not modified; a caller-supplied
        ``sequence_number`` is ignored. Appending an id that is already stored
        returns the stored event unchanged and consumes no number; so does a
        rejected append.

        Raises:
            ValidationError: the event holds an invalid value (nothing written).
            StorageError: the database failed (nothing written, no number used).
        """
        try:
            prepared = [_prepared_event(event)]
            alias = self._write_alias()
            return run_write(
                alias,
                "append_event",
                lambda c: _append_prepared(c, prepared)[0],
                # On PostgreSQL a single append is one statement (see sequences.py).
                single_statement=connections[alias].vendor == "postgresql",
            )
        except AgentSessionsError as exc:
            signals.write_rejected(exc, getattr(event, "session_id", None))
            raise

    @traced("append_events", _events_described, append=True)
    def append_events(self, events: Sequence[core.Event]) -> list[core.Event]:
        """Store several events in one transaction and return the stored events in input order.

        Numbers are contiguous per session within the batch. Events already
        stored, and repeats of an id within the batch, return the stored event
        and consume no number. Any invalid event → nothing is written.

        Raises:
            ValidationError: an event holds an invalid value (nothing written).
            StorageError: the database failed (nothing written, no number used).
        """
        try:
            prepared = _check_events(events)
            if not prepared:
                return []
            return run_write(
                self._write_alias(), "append_events", lambda c: _append_prepared(c, prepared)
            )
        except AgentSessionsError as exc:
            signals.write_rejected(exc, _common_session_id(events))
            raise

    @traced("flush", _flush_described, append=True)
    def flush(
        self,
        *,
        session: core.Session,
        run: core.Run,
        events: Sequence[core.Event],
        provider_metadata: dict[str, Any] | None = None,
    ) -> None:
        """Save the session and the run and append the events, all in one transaction.

        ``provider_metadata``, when given, is merged into the run's
        ``provider_metadata`` (its keys win) and saved with the run.
        Everything is validated before anything is written.

        Raises:
            ValidationError: any part is invalid (nothing written).
            StorageError: the database failed (nothing written).
        """
        try:
            self._flush(session, run, events, provider_metadata)
        except AgentSessionsError as exc:
            signals.write_rejected(exc, getattr(session, "id", None))
            raise

    def _flush(
        self,
        session: core.Session,
        run: core.Run,
        events: Sequence[core.Event],
        provider_metadata: dict[str, Any] | None,
    ) -> None:
        session = _checked(session, core.Session, "session")
        run = _checked(run, core.Run, "run")
        if provider_metadata is not None:
            extra = check_json(provider_metadata, "provider_metadata", require_object=True)
            run = dataclasses.replace(run, provider_metadata={**run.provider_metadata, **extra})
        prepared = _check_events(events)
        alias = self._write_alias()

        def work(connection: BaseDatabaseWrapper) -> None:
            _upsert(alias, m.Session.from_domain(session))
            _upsert(alias, m.Run.from_domain(run))
            _append_prepared(connection, prepared)

        run_write(alias, "flush", work)

    @traced("get_events", _by_session_id)
    def get_events(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        type: str | Sequence[str] | None = None,
        since: datetime | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        wait_timeout_ms: int | None = None,
    ) -> list[core.Event]:
        """Return the session's events in ascending sequence order.

        Args:
            session_id: The session whose log to read.
            run_id: Only events of this run.
            type: One event type or a sequence of types (any of).
            since: Only events with ``timestamp > since`` (aware datetime).
            after: Only events with ``sequence_number > after``.
            before: Only events with ``sequence_number < before``.
            limit: At most this many, counted after ordering (≥ 0).
            wait_timeout_ms: Long-poll: when nothing matches, wait up to this
                many milliseconds for a matching event to be committed. The
                wait is on the process's shared
                :mod:`~agent_sessions.listener`: on PostgreSQL woken by
                NOTIFY as soon as the append commits, and on any database
                by a check every ``WAIT_POLL_INTERVAL_SECONDS`` (events of
                writers that send no NOTIFY).

        Returns:
            The matching events, possibly ``[]``.

        Raises:
            ValidationError: an unknown event type or an invalid argument.
        """
        sql, params = self._events_query(
            session_id,
            run_id=run_id,
            type=type,
            since=since,
            after=after,
            before=before,
            limit=limit,
        )
        timeout = check_int(wait_timeout_ms, "wait_timeout_ms", minimum=0, required=False)
        if not timeout:
            return self._query_events(self._read_alias(), sql, params)
        # Appends land on the write database; reading there avoids replica lag.
        alias = self._write_alias()
        deadline = time.monotonic() + timeout / 1000
        listener = get_listener(alias)
        only_after = _wait_mark(after, run_id, type, since, before, limit)
        with long_poll_timer() as waited:
            while True:
                events, mark = self._poll_events(alias, sql, params, only_after)
                if not events:
                    remaining = deadline - time.monotonic()
                    if remaining > 0 and listener.wait(params[0], after=mark, timeout=remaining):
                        continue
                    events = self._query_events(alias, sql, params)
                waited(bool(events))
                return events

    @traced("get_events", _by_session_id)
    async def aget_events(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        type: str | Sequence[str] | None = None,
        since: datetime | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        wait_timeout_ms: int | None = None,
    ) -> list[core.Event]:
        """Async twin of :meth:`get_events`: same arguments, result and errors.

        Each query runs in a worker thread; a long-poll waits on the shared
        :mod:`~agent_sessions.listener` in between, holding neither a thread
        nor a database connection, and cancelling it leaves nothing behind.
        """
        query: dict[str, Any] = {
            "run_id": run_id,
            "type": type,
            "since": since,
            "after": after,
            "before": before,
            "limit": limit,
        }
        timeout = check_int(wait_timeout_ms, "wait_timeout_ms", minimum=0, required=False)
        if not timeout:
            return await run_in_worker(self.get_events, session_id, **query)
        sql, params = self._events_query(session_id, **query)
        alias = self._write_alias()
        deadline = time.monotonic() + timeout / 1000
        listener = get_listener(alias)
        only_after = _wait_mark(after, run_id, type, since, before, limit)
        with long_poll_timer() as waited:
            while True:
                events, mark = await run_in_worker(
                    self._poll_events, alias, sql, params, only_after
                )
                if not events:
                    remaining = deadline - time.monotonic()
                    if remaining > 0 and await listener.wait_async(
                        params[0], after=mark, timeout=remaining
                    ):
                        continue
                    events = await run_in_worker(self._query_events, alias, sql, params)
                waited(bool(events))
                return events

    @traced("get_latest_sequence", _by_session_id)
    def get_latest_sequence(self, session_id: str) -> int:
        """Return the session's counter: the last number handed out, 0 when none."""
        session_id = check_id(session_id, "session_id")
        alias = db_for_write(self.using, m.SessionSequence)

        def read(connection: BaseDatabaseWrapper) -> Any:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT last_sequence FROM asm_session_sequences WHERE session_id = %s",
                    [session_id],
                )
                return cursor.fetchone()

        row = run_read(alias, "get_latest_sequence", read)
        return int(row[0]) if row and row[0] is not None else 0

    # ----------------------------------------------------------------- event reads

    def _events_query(
        self,
        session_id: str,
        *,
        run_id: str | None,
        type: str | Sequence[str] | None,
        since: datetime | None,
        after: int | None,
        before: int | None,
        limit: int | None,
    ) -> tuple[str, list[Any]]:
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
                check_choice(t, core.EventType, "type", code="invalid_event_type").value
                for t in types
            ]
            clauses.append(f"type IN ({', '.join(['%s'] * len(values))})")
            params.extend(values)
        if since is not None:
            clauses.append('"timestamp" > %s')
            params.append(_TimeParam(check_datetime(since, "since")))
        if after is not None:
            clauses.append("sequence_number > %s")
            params.append(check_int(after, "after", minimum=None))
        if before is not None:
            clauses.append("sequence_number < %s")
            params.append(check_int(before, "before", minimum=None))
        sql = f"{_EVENT_SELECT} WHERE {' AND '.join(clauses)} ORDER BY sequence_number"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(check_int(limit, "limit", minimum=0))
        return sql, params

    def _query_events(self, alias: str, sql: str, params: list[Any]) -> list[core.Event]:
        def read(connection: BaseDatabaseWrapper) -> list[core.Event]:
            values = [p.for_db(connection) if isinstance(p, _TimeParam) else p for p in params]
            with connection.cursor() as cursor:
                return _fetch_events(cursor, sql, values)

        return run_read(alias, "get_events", read)

    def _poll_events(
        self, alias: str, sql: str, params: list[Any], only_after: int | None
    ) -> tuple[list[core.Event], int]:
        """One long-poll step: the matching events, and the number to wait beyond.

        ``only_after`` is the query's ``after`` (0 for None) when that is its
        only filter, and None otherwise: then the session's highest stored
        number is read, so that the wait is for events not seen yet rather
        than for ones the filters left out.
        """
        events = self._query_events(alias, sql, params)
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


def _wait_mark(
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


class _TimeParam:
    """A datetime parameter whose database form depends on the connection's vendor."""

    __slots__ = ("value",)

    def __init__(self, value: datetime) -> None:
        self.value = value

    def for_db(self, connection: BaseDatabaseWrapper) -> Any:
        return _db_time(connection, self.value)


def _common_session_id(events: object) -> str | None:
    """The session all ``events`` belong to, or None (mixed, empty or not events)."""
    try:
        ids = {event.session_id for event in events}  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return None
    return ids.pop() if len(ids) == 1 else None


def _checked(value: Any, cls: type[_T], field: str) -> _T:
    if not isinstance(value, cls):
        raise ValidationError(
            "validation_error",
            f"{field} must be a {cls.__name__}, not {type(value).__name__}",
            field=field,
        )
    value.validate()  # type: ignore[attr-defined]
    return value


def _upsert(alias: str, row: m.Session | m.Run) -> None:
    """Insert ``row`` or replace every column but the primary key (one statement)."""
    manager: Any = type(row)._default_manager
    fields = [f.name for f in row._meta.concrete_fields if not f.primary_key]
    manager.using(alias).bulk_create(
        [row], update_conflicts=True, unique_fields=["id"], update_fields=fields
    )


def _page(queryset: Any, *, limit: int | None, offset: int | None) -> Any:
    start = check_int(offset, "offset", minimum=0, required=False) or 0
    if limit is None:
        return queryset[start:] if start else queryset
    return queryset[start : start + check_int(limit, "limit", minimum=0)]
