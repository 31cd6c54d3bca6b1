"""Google ADK ``BaseSessionService`` over the ``asm_*`` tables.

Quick start::

    from google.adk.runners import Runner
    from agent_sessions.integrations.adk import DjangoSessionService

    runner = Runner(agent=agent, app_name="my_app", session_service=DjangoSessionService())

Mapping: ADK keeps session ids per (app, user); an ADK session is the asm
session :func:`asm_session_id` (``adk:<app>:<user>:<session id>``, each part
percent-escaped so that no two identities share an id), with ``agent_id`` =
app name, ``metadata["adk_user_id"]`` and ``metadata["adk_session_id"]`` =
what ADK callers see, and ``context`` = its session-scoped state;
``updated_at`` is ADK's ``last_update_time``. Sessions written by earlier
versions (asm id = the ADK id) keep being read and appended to. Each ADK
event is an asm event (sequence-numbered, so concurrent appends from several
processes all land, in order) whose id is derived from the ADK event id, so
a re-delivered event is stored once, with the whole event in
``data["adk_event"]``. Each invocation with model usage is an asm run
(:mod:`agent_sessions.integrations.runs`).
App-scoped (``app:``) and user-scoped (``user:``) state live in one asm
session row each (:func:`~.adk_mapping.app_state_id`,
:func:`~.adk_mapping.user_state_id`, ``metadata["adk_kind"]`` saying which),
updated in the same transaction as the event that changes them. The ids and
shapes are in :mod:`.adk_mapping`; this module reads and writes them.

Needs ``pip install django-agent-sessions[adk]``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

from django.db import IntegrityError, connections
from django.db.models import QuerySet

from agent_sessions.integrations import missing_extra

# The framework first: without the extra, this is the error users see.
try:
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import SessionNotFoundError
    from google.adk.events.event import Event as AdkEvent
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session as AdkSession
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("adk", exc) from exc

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.db import db_for_read, db_for_write, translate_errors
from agent_sessions.integrations.adk_mapping import (
    EVENT_KEY,
    KIND_APP_STATE,
    KIND_SESSION,
    KIND_USER_STATE,
    PROVIDER,
    SOURCE,
    app_state_id,
    asm_session_id,
    event_type_for_adk_event,
    json_safe,
    merged_state,
    normalised_id,
    run_update,
    split_state,
    stored_event,
    user_state_id,
)
from agent_sessions.integrations.payload_log import write_transaction
from agent_sessions.integrations.pgasync import aclose_connections
from agent_sessions.integrations.pgsql import (
    ADK_DUPLICATE,
    ADK_NOT_FOUND,
    ADK_STORED,
    aappend_adk_event,
    append_adk_event,
    aselect_one,
    is_postgres,
    read_payloads,
)
from agent_sessions.integrations.runs import record_run
from agent_sessions.store import DjangoSessionStore
from agent_sessions.validation import check_id, utcnow

__all__ = [
    "EVENT_KEY",
    "PROVIDER",
    "SOURCE",
    "DjangoSessionService",
    "asm_session_id",
    "event_type_for_adk_event",
]

#: How many sessions list_sessions loads per round trip.
LIST_CHUNK_SIZE = 500
#: How many (app, user, session id) → asm id resolutions a service remembers.
_RESOLVED_CACHE_SIZE = 10_000


class _Duplicate(Exception):
    """The event is already stored: roll back the append's other writes."""


class DjangoSessionService(BaseSessionService):
    """A Google ADK session service that keeps sessions, events and state in the asm tables.

    Every method is one transaction run in a worker thread (see
    :mod:`agent_sessions.aio`). Unlike ADK's ``DatabaseSessionService``,
    appends are never rejected as stale: concurrent appends to one session
    (threads or processes) are all stored, numbered in commit order.

    On PostgreSQL, ``append_event`` of an event without app- or user-scoped
    state is one statement awaited on a private async connection instead
    (no worker thread); those connections are closed by :meth:`aclose` or
    when the event loop shuts down.

    Args:
        using: Database alias; None follows the routers.
        fast_path: Allow that private connection; turn off behind a proxy
            that cannot take prepared statements.
    """

    def __init__(self, *, using: str | None = None, fast_path: bool = True) -> None:
        super().__init__()
        self.using = using
        self.fast_path = fast_path
        self._store = DjangoSessionStore(using=using)
        # (app, user, session id) → asm session id of sessions known to exist.
        self._resolved: dict[tuple[str, str, str], str] = {}

    # ------------------------------------------------------------------ the ADK API

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> AdkSession:
        """Create a session; ``app:`` and ``user:`` keys of ``state`` go to the shared scopes.

        Raises:
            AlreadyExistsError: a session with ``session_id`` exists.
        """
        return await run_in_worker(
            self._create_session, app_name, user_id, dict(state or {}), session_id
        )

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> AdkSession | None:
        """Return the session with its events (filtered by ``config``), or None."""
        return await run_in_worker(
            self._get_session, app_name, user_id, normalised_id(session_id), config
        )

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """Return the app's (or the user's) sessions without events, oldest update first."""
        return await run_in_worker(self._list_sessions, app_name, user_id)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session with its events (no error when it does not exist)."""
        await run_in_worker(self._delete_session, app_name, user_id, normalised_id(session_id))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """Return the user-scoped state (keys without the ``user:`` prefix)."""
        alias = db_for_read(self.using, m.Session, consistent=True)
        return await run_in_worker(self._state_row, alias, user_state_id(app_name, user_id))

    async def append_event(self, session: AdkSession, event: AdkEvent) -> AdkEvent:
        """Store the event and apply its state delta, atomically; partial events are not stored.

        Raises:
            SessionNotFoundError: the session has no row.
        """
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        if not await self._aappend_event(session, event):
            # Already stored (a re-delivery): neither the state delta nor the
            # event is applied again, as ADK's own services do.
            return event
        # What get_session will read back: the timestamp at the column's
        # microsecond precision, so that the two sessions compare equal.
        session.last_update_time = datetime.fromtimestamp(event.timestamp, UTC).timestamp()
        return self._commit_event_to_session(session, event)

    def asm_session_id(self, app_name: str, user_id: str, session_id: str) -> str | None:
        """The ``asm_sessions.id`` holding this ADK session, or None when it does not exist.

        New sessions are :func:`asm_session_id`; sessions created by earlier
        versions of this adapter kept the ADK id itself.
        """
        alias = db_for_write(self.using, m.Session)
        return self._resolve(alias, app_name, user_id, normalised_id(session_id))

    async def aclose(self) -> None:
        """Close the private PostgreSQL connections of the running event loop.

        Optional: they are closed anyway when the loop shuts down (e.g. at
        the end of ``asyncio.run()``), and the next call reopens what it
        needs. Shared by every adapter on this loop and database alias.
        """
        await aclose_connections(db_for_write(self.using, m.Session))

    # ------------------------------------------------------------------ sync work

    def _state_row(self, alias: str, row_id: str) -> dict[str, Any]:
        with translate_errors("get_state"):
            context = (
                m.Session.objects.using(alias).filter(id=row_id).values_list("context", flat=True)
            )
            return dict(context.first() or {})

    def _update_shared_state(
        self,
        alias: str,
        session: AdkSession,
        app_delta: dict[str, Any],
        user_delta: dict[str, Any],
    ) -> None:
        """Apply the app- and user-scoped deltas (app first: the lock order appends share)."""
        if app_delta:
            self._update_state_row(
                alias,
                app_state_id(session.app_name),
                session.app_name,
                KIND_APP_STATE,
                app_delta,
            )
        if user_delta:
            self._update_state_row(
                alias,
                user_state_id(session.app_name, session.user_id),
                session.app_name,
                KIND_USER_STATE,
                user_delta,
            )

    def _update_state_row(
        self, alias: str, row_id: str, app_name: str, kind: str, delta: dict[str, Any]
    ) -> dict[str, Any]:
        # The row is created first if missing (INSERT … ON CONFLICT DO NOTHING
        # waits for a concurrent creator instead of failing), then locked:
        # two appends changing the same shared state must not both read the
        # old value, and locking a row that does not exist yet locks nothing.
        new_row = m.Session.from_domain(
            core.Session.new(
                app_name,
                id=row_id,
                metadata={"framework": SOURCE, "adk_kind": kind},
                tags=[m.INTERNAL_TAG],
            )
        )
        new_row.context = {}
        m.Session.objects.using(alias).bulk_create([new_row], ignore_conflicts=True)
        row = m.Session.objects.using(alias).select_for_update().get(id=row_id)
        now = datetime.now(UTC)
        # Rows created by earlier versions get the tag that keeps them from retention.
        if m.INTERNAL_TAG not in (row.tags or []):
            row.tags = [*(row.tags or []), m.INTERNAL_TAG]
        row.context = {**(row.context or {}), **delta}
        row.updated_at = now
        core.Session.validate(row.to_domain())
        row.save(using=alias)
        return dict(row.context)

    def _create_session(
        self, app_name: str, user_id: str, state: dict[str, Any], session_id: str | None
    ) -> AdkSession:
        # A blank or whitespace-only id asks for a generated one, as in ADK.
        adk_id = normalised_id(session_id) or str(uuid.uuid4())
        check_id(adk_id, "session_id")
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        app_delta, user_delta, session_state = (json_safe(part) for part in split_state(state))
        alias = db_for_write(self.using, m.Session)
        storage_id = asm_session_id(app_name, user_id, adk_id)
        new = core.Session.new(
            app_name,
            id=storage_id,
            context=session_state,
            metadata={
                "framework": SOURCE,
                "adk_kind": KIND_SESSION,
                "adk_user_id": user_id,
                "adk_session_id": adk_id,
            },
        )
        new.validate()

        def work() -> tuple[dict[str, Any], dict[str, Any]]:
            if self._resolve(alias, app_name, user_id, adk_id, use_cache=False) is not None:
                raise AlreadyExistsError(f"Session with id {adk_id} already exists.")
            m.Session.from_domain(new).save(using=alias, force_insert=True)
            app = (
                self._update_state_row(
                    alias, app_state_id(app_name), app_name, KIND_APP_STATE, app_delta
                )
                if app_delta
                else self._state_row(alias, app_state_id(app_name))
            )
            user = (
                self._update_state_row(
                    alias, user_state_id(app_name, user_id), app_name, KIND_USER_STATE, user_delta
                )
                if user_delta
                else self._state_row(alias, user_state_id(app_name, user_id))
            )
            return app, user

        app, user = write_transaction(alias, "create_session", work)
        self._remember(app_name, user_id, adk_id, storage_id)
        return AdkSession(
            id=adk_id,
            app_name=app_name,
            user_id=user_id,
            state=merged_state(app, user, session_state),
            last_update_time=new.updated_at.timestamp(),
        )

    def _forget(self, session: AdkSession) -> None:
        self._resolved.pop((session.app_name, session.user_id, normalised_id(session.id)), None)

    def _remember(self, app_name: str, user_id: str, adk_id: str, storage_id: str) -> None:
        if len(self._resolved) >= _RESOLVED_CACHE_SIZE:
            self._resolved.clear()
        self._resolved[(app_name, user_id, adk_id)] = storage_id

    def _resolve(
        self, alias: str, app_name: str, user_id: str, adk_id: str, *, use_cache: bool = True
    ) -> str | None:
        """The asm id of the ADK session (app, user, id), or None when it does not exist.

        Reads the write database: an append right after a create (or another
        process's create) must find the row even with a read replica.
        """
        key = (app_name, user_id, adk_id)
        if use_cache and key in self._resolved:
            return self._resolved[key]
        storage_id = asm_session_id(app_name, user_id, adk_id)
        with translate_errors("get_session"):
            # By primary key only, the owner checked here: a filter on agent_id
            # could make the planner walk every session of the app instead.
            rows = m.Session.objects.using(alias).filter(id__in=[storage_id, adk_id])
            found = {
                sid
                for sid, agent_id, metadata in rows.values_list("id", "agent_id", "metadata")
                if agent_id == app_name
                and (metadata or {}).get("adk_kind") == KIND_SESSION
                and (metadata or {}).get("adk_user_id") == user_id
            }
        # The current mapping first; then a row of the earlier one (asm id = ADK id).
        resolved = next((sid for sid in (storage_id, adk_id) if sid in found), None)
        if resolved is not None:
            self._remember(app_name, user_id, adk_id, resolved)
        return resolved

    def _get_session(
        self, app_name: str, user_id: str, session_id: str, config: GetSessionConfig | None
    ) -> AdkSession | None:
        # The write database: the Runner reads back the turn it just stored
        # (a lagging replica would raise SessionNotFoundError or drop events).
        alias = db_for_read(self.using, m.Event, consistent=True)
        storage_id = self._resolve(alias, app_name, user_id, session_id, use_cache=False)
        if storage_id is None:
            return None
        with translate_errors("get_session"):
            row = m.Session.objects.using(alias).filter(id=storage_id).first()
            if row is None:
                return None
            after = None
            if config and config.after_timestamp is not None:
                after = datetime.fromtimestamp(config.after_timestamp, UTC)
            recent = config.num_recent_events if config else None
            payloads = self._event_payloads(alias, storage_id, after, recent)
            app = self._state_row(alias, app_state_id(app_name))
            user = self._state_row(alias, user_state_id(app_name, user_id))
        return AdkSession(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=merged_state(app, user, row.context or {}),
            events=[AdkEvent.model_validate(payload) for payload in payloads],
            last_update_time=row.updated_at.timestamp(),
        )

    def _event_payloads(
        self, alias: str, session_id: str, after: datetime | None, recent: int | None
    ) -> list[dict[str, Any]]:
        """The stored ADK events (serialised) of a session, oldest first."""
        if recent == 0:
            return []
        if is_postgres(alias):
            with connections[alias].cursor() as cursor:
                return read_payloads(cursor, session_id, EVENT_KEY, limit=recent, since=after)
        events = m.Event.objects.using(alias).filter(session_id=session_id, data__has_key=EVENT_KEY)
        if after is not None:
            events = events.filter(timestamp__gte=after)
        # has_key leaves out rows whose data is NULL: every value is a JSON object.
        payloads = cast("QuerySet[m.Event, dict[str, Any]]", events.values_list("data", flat=True))
        if recent is not None:
            newest = payloads.order_by("-sequence_number")[:recent]
            return [data[EVENT_KEY] for data in newest][::-1]
        return [data[EVENT_KEY] for data in payloads.order_by("sequence_number")]

    def _list_sessions(self, app_name: str, user_id: str | None) -> ListSessionsResponse:
        alias = db_for_read(self.using, m.Session, consistent=True)
        with translate_errors("list_sessions"):
            rows = m.Session.objects.using(alias).filter(
                agent_id=app_name, metadata__adk_kind=KIND_SESSION
            )
            if user_id is not None:
                rows = rows.filter(metadata__adk_user_id=user_id)
            app = self._state_row(alias, app_state_id(app_name))
            user_states: dict[str, dict[str, Any]] = {}
            sessions = []
            # A server-side cursor on PostgreSQL: memory stays flat however many sessions.
            ordered = rows.order_by("updated_at", "id").only(
                "id", "metadata", "context", "updated_at"
            )
            for row in ordered.iterator(chunk_size=LIST_CHUNK_SIZE):
                owner = row.metadata["adk_user_id"]
                # Rows of the earlier mapping have no adk_session_id: their id is the ADK id.
                adk_id = row.metadata.get("adk_session_id", row.id)
                if owner not in user_states:
                    user_states[owner] = self._state_row(alias, user_state_id(app_name, owner))
                sessions.append(
                    AdkSession(
                        id=adk_id,
                        app_name=app_name,
                        user_id=owner,
                        state=merged_state(app, user_states[owner], row.context or {}),
                        last_update_time=row.updated_at.timestamp(),
                    )
                )
        return ListSessionsResponse(sessions=sessions)

    def _delete_session(self, app_name: str, user_id: str, session_id: str) -> None:
        # Decided on the database the delete goes to: a lagging replica may
        # not have the session yet, and the delete would silently do nothing.
        alias = db_for_write(self.using, m.Session)
        storage_id = self._resolve(alias, app_name, user_id, session_id, use_cache=False)
        self._resolved.pop((app_name, user_id, session_id), None)
        if storage_id is not None:
            self._store.delete_session(storage_id)

    async def _aappend_event(self, session: AdkSession, event: AdkEvent) -> bool:
        """Store the event; False when it was already stored (nothing changed).

        On PostgreSQL an event whose state delta is session-scoped only and
        that carries no run update (the common case) is one statement (see
        :meth:`_append_event_postgres`), awaited on a private async
        connection (:mod:`agent_sessions.integrations.pgasync`). Everything
        else needs a transaction: a worker thread.

        Raises:
            SessionNotFoundError: the session does not exist.
        """
        alias = db_for_write(self.using, m.Session)
        if not (self.fast_path and is_postgres(alias)):
            return await run_in_worker(self._append_event, session, event)
        storage_id = await self._aresolve(alias, session)
        stored, app_delta, user_delta, session_delta = stored_event(storage_id, event)
        if app_delta or user_delta or run_update(storage_id, event):
            return await run_in_worker(self._append_event, session, event)
        with translate_errors("append_event"):
            try:
                outcome = await aappend_adk_event(
                    alias,
                    stored,
                    app_name=session.app_name,
                    user_id=session.user_id,
                    state_delta=session_delta,
                    now=utcnow(),
                )
            except IntegrityError:
                # A concurrent append of the same event won: the transaction path
                # finds it stored.
                return await run_in_worker(self._append_event, session, event)
        if outcome == ADK_NOT_FOUND:
            self._resolved.pop((session.app_name, session.user_id, normalised_id(session.id)), None)
            raise SessionNotFoundError(f"Session {session.id} not found.")
        return outcome == ADK_STORED

    async def _aresolve(self, alias: str, session: AdkSession) -> str:
        """The asm id of ``session`` (cached; else one query on the private connection)."""
        adk_id = normalised_id(session.id)
        key = (session.app_name, session.user_id, adk_id)
        cached = self._resolved.get(key)
        if cached is not None:
            return cached
        storage_id = asm_session_id(*key)
        row = await aselect_one(
            alias,
            _RESOLVE_SQL,
            {
                "ids": [storage_id, adk_id],
                "preferred": storage_id,
                "app_name": session.app_name,
                "user_id": session.user_id,
            },
        )
        if row is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        self._remember(*key, row[0])
        return str(row[0])

    def _append_event(self, session: AdkSession, event: AdkEvent) -> bool:
        """Store the event, its state deltas and its run update in one transaction.

        Returns:
            False when the event was already stored (then nothing was written).
        """
        alias = db_for_write(self.using, m.Session)
        storage_id = self._resolve(
            alias, session.app_name, session.user_id, normalised_id(session.id)
        )
        if storage_id is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        stored, app_delta, user_delta, session_delta = stored_event(storage_id, event)
        update = run_update(storage_id, event)

        def work() -> None:
            if is_postgres(alias):
                with connections[alias].cursor() as cursor:
                    outcome = append_adk_event(
                        cursor,
                        stored,
                        app_name=session.app_name,
                        user_id=session.user_id,
                        state_delta=session_delta,
                        now=utcnow(),
                    )
                if outcome == ADK_NOT_FOUND:
                    raise SessionNotFoundError(f"Session {session.id} not found.")
                if outcome == ADK_DUPLICATE:
                    raise _Duplicate
            else:
                sessions = m.Session.objects.using(alias).filter(
                    id=storage_id, agent_id=session.app_name, metadata__adk_user_id=session.user_id
                )
                # The UPDATE locks the row until commit, so concurrent appends to
                # this session apply their state deltas one after the other.
                if not sessions.update(updated_at=stored.timestamp):
                    raise SessionNotFoundError(f"Session {session.id} not found.")
                if m.Event.objects.using(alias).filter(id=stored.id).exists():
                    raise _Duplicate
                if session_delta:
                    context = sessions.values_list("context", flat=True).first() or {}
                    sessions.update(context={**context, **session_delta})
                self._store.append_event(stored)
            # Shared state after the session row and the counter: the lock order
            # every append follows (session row, counter, app state, user state).
            self._update_shared_state(alias, session, app_delta, user_delta)
            if update is not None:
                record_run(update, using=alias)

        try:
            write_transaction(alias, "append_event", work)
        except SessionNotFoundError:
            self._resolved.pop((session.app_name, session.user_id, normalised_id(session.id)), None)
            raise
        except _Duplicate:
            return False
        return True


# The asm id of an ADK session: the current mapping's row first, else an earlier one's.
# Found by primary key; the owner check is kept out of reach of any index (see pgsql).
_RESOLVE_SQL = """
SELECT id FROM asm_sessions
WHERE id = ANY(%(ids)s)
  AND (agent_id, metadata ->> 'adk_kind', metadata ->> 'adk_user_id')
      IS NOT DISTINCT FROM (%(app_name)s::varchar, 'session'::text, %(user_id)s::text)
ORDER BY id = %(preferred)s DESC
LIMIT 1
"""
