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
objects straight from the cursor rows. How events get into ``asm_events``
and back lives in :mod:`agent_sessions.eventlog`.

``DjangoArtifactRegistry`` (:mod:`agent_sessions.artifacts`) and
``delete_sessions_cascade`` (:mod:`agent_sessions.cascade`) are re-exported
here, where they have always been importable.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from agent_sessions import core, signals
from agent_sessions import models as m
from agent_sessions.aio import SessionStoreAsyncMixin, run_in_worker
from agent_sessions.artifacts import DjangoArtifactRegistry
from agent_sessions.cascade import delete_sessions_cascade
from agent_sessions.db import (
    SQLITE_LOCK_RETRY_SECONDS,
    check_alias,
    db_for_read,
    db_for_write,
    run_read,
    run_write,
)
from agent_sessions.errors import AgentSessionsError, NotFoundError, ValidationError
from agent_sessions.eventlog.append import append_prepared
from agent_sessions.eventlog.codec import checked_events, prepared_event
from agent_sessions.eventlog.read import events_query, poll_events, query_events, wait_mark
from agent_sessions.listener import get_listener
from agent_sessions.telemetry import Attributes, long_poll_timer, run_attributes, traced
from agent_sessions.validation import check_choice, check_id, check_int, check_json, check_varchar

__all__ = [
    "SQLITE_LOCK_RETRY_SECONDS",
    "DjangoArtifactRegistry",
    "DjangoSessionStore",
    "delete_sessions_cascade",
]

_T = TypeVar("_T")


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

    The methods' contract is documented once, on the Protocol. What this
    implementation adds: :meth:`get_active_run` and long-polls read from the
    write database (a run saved or an event appended just before is seen even
    when routers send reads to a replica); a long-poll waits on the process's
    shared :mod:`~agent_sessions.listener`, on PostgreSQL woken by NOTIFY as
    soon as the append commits and on any database by a check every
    ``WAIT_POLL_INTERVAL_SECONDS`` (for writers that send no NOTIFY).

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
        session = _checked(session, core.Session, "session")
        alias = db_for_write(self.using, m.Session)
        run_write(alias, "save_session", lambda _c: _upsert(alias, m.Session.from_domain(session)))

    @traced("get_session", _by_session_id)
    def get_session(self, session_id: str) -> core.Session:
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
        delete_sessions_cascade([session_id], using=db_for_write(self.using, m.Session))

    # ----------------------------------------------------------------- runs

    @traced("save_run", _run_described)
    def save_run(self, run: core.Run) -> None:
        run = _checked(run, core.Run, "run")
        alias = db_for_write(self.using, m.Run)
        run_write(alias, "save_run", lambda _c: _upsert(alias, m.Run.from_domain(run)))

    @traced("get_run", _by_run_id)
    def get_run(self, run_id: str) -> core.Run:
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
        return self.append_event_with_sequence(event)

    @traced("append_event", _event_described, append=True)
    def append_event_with_sequence(self, event: core.Event) -> core.Event:
        try:
            prepared = [prepared_event(event)]
            alias = self._write_alias()
            return run_write(
                alias,
                "append_event",
                lambda c: append_prepared(c, prepared)[0],
                # Atomic by itself in autocommit: one statement on PostgreSQL, its
                # own BEGIN IMMEDIATE … COMMIT on SQLite (see eventlog/sql.py).
                single_statement=True,
            )
        except AgentSessionsError as exc:
            signals.write_rejected(exc, getattr(event, "session_id", None))
            raise

    @traced("append_events", _events_described, append=True)
    def append_events(self, events: Sequence[core.Event]) -> list[core.Event]:
        try:
            prepared = checked_events(events)
            if not prepared:
                return []
            return run_write(
                self._write_alias(), "append_events", lambda c: append_prepared(c, prepared)
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
        prepared = checked_events(events)
        alias = self._write_alias()

        def work(connection: BaseDatabaseWrapper) -> None:
            _upsert(alias, m.Session.from_domain(session))
            _upsert(alias, m.Run.from_domain(run))
            append_prepared(connection, prepared)

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
        sql, params = events_query(
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
            return query_events(self._read_alias(), sql, params)
        # Appends land on the write database; reading there avoids replica lag.
        alias = self._write_alias()
        deadline = time.monotonic() + timeout / 1000
        listener = get_listener(alias)
        only_after = wait_mark(after, run_id, type, since, before, limit)
        with long_poll_timer() as waited:
            while True:
                events, mark = poll_events(alias, sql, params, only_after)
                if not events:
                    remaining = deadline - time.monotonic()
                    if remaining > 0 and listener.wait(params[0], after=mark, timeout=remaining):
                        continue
                    events = query_events(alias, sql, params)
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
        sql, params = events_query(session_id, **query)
        alias = self._write_alias()
        deadline = time.monotonic() + timeout / 1000
        listener = get_listener(alias)
        only_after = wait_mark(after, run_id, type, since, before, limit)
        with long_poll_timer() as waited:
            while True:
                events, mark = await run_in_worker(poll_events, alias, sql, params, only_after)
                if not events:
                    remaining = deadline - time.monotonic()
                    if remaining > 0 and await listener.wait_async(
                        params[0], after=mark, timeout=remaining
                    ):
                        continue
                    events = await run_in_worker(query_events, alias, sql, params)
                waited(bool(events))
                return events

    @traced("get_latest_sequence", _by_session_id)
    def get_latest_sequence(self, session_id: str) -> int:
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
