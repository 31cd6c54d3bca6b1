"""Google ADK ``BaseSessionService`` over the ``asm_*`` tables.

Quick start::

    from google.adk.runners import Runner
    from agent_sessions.integrations.adk import DjangoSessionService

    runner = Runner(agent=agent, app_name="my_app", session_service=DjangoSessionService())

Mapping: an ADK session is an asm session with the same id, ``agent_id`` =
app name, ``metadata["adk_user_id"]`` = user id and ``context`` = its
session-scoped state; ``updated_at`` is ADK's ``last_update_time``. Each ADK
event is an asm event (sequence-numbered, so concurrent appends from several
processes all land, in order) with the whole event in ``data["adk_event"]``.
App-scoped (``app:``) and user-scoped (``user:``) state live in one asm
session row each (``adk-app-state:<app>``, ``adk-user-state:<app>:<user>``,
``metadata["adk_kind"]`` saying which), updated in the same transaction as
the event that changes them.

Needs ``pip install django-agent-sessions[adk]``.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any, cast

from django.db import connections, transaction
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
    from google.adk.sessions.state import State
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("adk", exc) from exc

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.db import db_for_read, db_for_write, translate_errors
from agent_sessions.integrations.payload_log import write_transaction
from agent_sessions.integrations.pgasync import aclose_connections
from agent_sessions.integrations.pgsql import (
    aappend_adk_event,
    append_adk_event,
    is_postgres,
    read_payloads,
)
from agent_sessions.store import DjangoSessionStore
from agent_sessions.validation import check_id, new_id, utcnow

__all__ = ["DjangoSessionService", "event_type_for_adk_event"]

#: Where the serialised ADK event sits inside the asm event's ``data``.
EVENT_KEY = "adk_event"
SOURCE = "adk"
_KIND_SESSION, _KIND_APP_STATE, _KIND_USER_STATE = "session", "app_state", "user_state"
#: How many sessions list_sessions loads per round trip.
LIST_CHUNK_SIZE = 500


def event_type_for_adk_event(event: AdkEvent) -> core.EventType:
    """The asm event type that stores an ADK event.

    Returns:
        ``tool_call_completed`` for function responses, ``tool_call_started``
        for function calls, ``message_sent`` for user content,
        ``message_received`` otherwise.
    """
    if event.get_function_responses():
        return core.EventType.TOOL_CALL_COMPLETED
    if event.get_function_calls():
        return core.EventType.TOOL_CALL_STARTED
    if event.content is not None and event.content.role == "user":
        return core.EventType.MESSAGE_SENT
    return core.EventType.MESSAGE_RECEIVED


def _split_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split a state (delta) into app, user and session parts; ``temp:`` keys are dropped."""
    app, user, session = {}, {}, {}
    for key, value in state.items():
        if key.startswith(State.APP_PREFIX):
            app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            session[key] = value
    return app, user, session


def _merged_state(
    app: dict[str, Any], user: dict[str, Any], session: dict[str, Any]
) -> dict[str, Any]:
    merged = copy.deepcopy(session)
    merged.update({State.APP_PREFIX + k: v for k, v in app.items()})
    merged.update({State.USER_PREFIX + k: v for k, v in user.items()})
    return merged


def _app_state_id(app_name: str) -> str:
    return f"adk-app-state:{app_name}"


def _user_state_id(app_name: str, user_id: str) -> str:
    return f"adk-user-state:{app_name}:{user_id}"


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
        return await run_in_worker(self._get_session, app_name, user_id, session_id, config)

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """Return the app's (or the user's) sessions without events, oldest update first."""
        return await run_in_worker(self._list_sessions, app_name, user_id)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session with its events (no error when it does not exist)."""
        await run_in_worker(self._delete_session, app_name, user_id, session_id)

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """Return the user-scoped state (keys without the ``user:`` prefix)."""
        alias = db_for_read(self.using, m.Session, consistent=True)
        return await run_in_worker(self._state_row, alias, _user_state_id(app_name, user_id))

    async def append_event(self, session: AdkSession, event: AdkEvent) -> AdkEvent:
        """Store the event and apply its state delta, atomically; partial events are not stored.

        Raises:
            SessionNotFoundError: the session has no row.
        """
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        await self._aappend_event(session, event)
        session.last_update_time = event.timestamp
        return self._commit_event_to_session(session, event)

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
                _app_state_id(session.app_name),
                session.app_name,
                _KIND_APP_STATE,
                app_delta,
            )
        if user_delta:
            self._update_state_row(
                alias,
                _user_state_id(session.app_name, session.user_id),
                session.app_name,
                _KIND_USER_STATE,
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
            core.Session.new(app_name, id=row_id, metadata={"framework": SOURCE, "adk_kind": kind})
        )
        new_row.context = {}
        m.Session.objects.using(alias).bulk_create([new_row], ignore_conflicts=True)
        row = m.Session.objects.using(alias).select_for_update().get(id=row_id)
        now = datetime.now(UTC)
        row.context = {**(row.context or {}), **delta}
        row.updated_at = now
        core.Session.validate(row.to_domain())
        row.save(using=alias)
        return dict(row.context)

    def _create_session(
        self, app_name: str, user_id: str, state: dict[str, Any], session_id: str | None
    ) -> AdkSession:
        session_id = check_id(session_id.strip(), "session_id") if session_id else new_id("ses_")
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        app_delta, user_delta, session_state = _split_state(state)
        alias = db_for_write(self.using, m.Session)
        new = core.Session.new(
            app_name,
            id=session_id,
            context=session_state,
            metadata={"framework": SOURCE, "adk_kind": _KIND_SESSION, "adk_user_id": user_id},
        )
        new.validate()

        def work() -> tuple[dict[str, Any], dict[str, Any]]:
            if m.Session.objects.using(alias).filter(id=session_id).exists():
                raise AlreadyExistsError(f"Session with id {session_id} already exists.")
            m.Session.from_domain(new).save(using=alias, force_insert=True)
            app = (
                self._update_state_row(
                    alias, _app_state_id(app_name), app_name, _KIND_APP_STATE, app_delta
                )
                if app_delta
                else self._state_row(alias, _app_state_id(app_name))
            )
            user = (
                self._update_state_row(
                    alias, _user_state_id(app_name, user_id), app_name, _KIND_USER_STATE, user_delta
                )
                if user_delta
                else self._state_row(alias, _user_state_id(app_name, user_id))
            )
            return app, user

        app, user = write_transaction(alias, "create_session", work)
        return AdkSession(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=_merged_state(app, user, session_state),
            last_update_time=new.updated_at.timestamp(),
        )

    def _session_row(self, alias: str, app_name: str, user_id: str, session_id: str) -> Any:
        row = m.Session.objects.using(alias).filter(id=session_id, agent_id=app_name).first()
        if row is None or (row.metadata or {}).get("adk_user_id") != user_id:
            return None
        return row

    def _get_session(
        self, app_name: str, user_id: str, session_id: str, config: GetSessionConfig | None
    ) -> AdkSession | None:
        # The write database: the Runner reads back the turn it just stored
        # (a lagging replica would raise SessionNotFoundError or drop events).
        alias = db_for_read(self.using, m.Event, consistent=True)
        with translate_errors("get_session"):
            row = self._session_row(alias, app_name, user_id, session_id)
            if row is None:
                return None
            after = None
            if config and config.after_timestamp is not None:
                after = datetime.fromtimestamp(config.after_timestamp, UTC)
            recent = config.num_recent_events if config else None
            payloads = self._event_payloads(alias, session_id, after, recent)
            app = self._state_row(alias, _app_state_id(app_name))
            user = self._state_row(alias, _user_state_id(app_name, user_id))
        return AdkSession(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=_merged_state(app, user, row.context or {}),
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
        alias = db_for_read(self.using, m.Session)
        with translate_errors("list_sessions"):
            rows = m.Session.objects.using(alias).filter(
                agent_id=app_name, metadata__adk_kind=_KIND_SESSION
            )
            if user_id is not None:
                rows = rows.filter(metadata__adk_user_id=user_id)
            app = self._state_row(alias, _app_state_id(app_name))
            user_states: dict[str, dict[str, Any]] = {}
            sessions = []
            # A server-side cursor on PostgreSQL: memory stays flat however many sessions.
            ordered = rows.order_by("updated_at", "id").only(
                "id", "metadata", "context", "updated_at"
            )
            for row in ordered.iterator(chunk_size=LIST_CHUNK_SIZE):
                owner = row.metadata["adk_user_id"]
                if owner not in user_states:
                    user_states[owner] = self._state_row(alias, _user_state_id(app_name, owner))
                sessions.append(
                    AdkSession(
                        id=row.id,
                        app_name=app_name,
                        user_id=owner,
                        state=_merged_state(app, user_states[owner], row.context or {}),
                        last_update_time=row.updated_at.timestamp(),
                    )
                )
        return ListSessionsResponse(sessions=sessions)

    def _delete_session(self, app_name: str, user_id: str, session_id: str) -> None:
        # Decided on the database the delete goes to: a lagging replica may
        # not have the session yet, and the delete would silently do nothing.
        alias = db_for_write(self.using, m.Session)
        with translate_errors("delete_session"):
            if self._session_row(alias, app_name, user_id, session_id) is None:
                return
        self._store.delete_session(session_id)

    async def _aappend_event(self, session: AdkSession, event: AdkEvent) -> None:
        """:meth:`_append_event`, awaited; on PostgreSQL without a worker thread when it can.

        An event whose state delta is session-scoped only (the common case)
        is one statement (see :meth:`_append_event_postgres`), awaited on a
        private async connection (:mod:`agent_sessions.integrations.pgasync`).
        App- or user-scoped deltas need a transaction: a worker thread.
        """
        alias = db_for_write(self.using, m.Session)
        if not (self.fast_path and is_postgres(alias)):
            await run_in_worker(self._append_event, session, event)
            return
        stored, app_delta, user_delta, session_delta = self._stored_event(session, event)
        if app_delta or user_delta:
            await run_in_worker(self._append_event, session, event)
            return
        with translate_errors("append_event"):
            found = await aappend_adk_event(
                alias,
                stored,
                app_name=session.app_name,
                user_id=session.user_id,
                state_delta=session_delta,
                now=utcnow(),
            )
        if not found:
            raise SessionNotFoundError(f"Session {session.id} not found.")

    def _stored_event(
        self, session: AdkSession, event: AdkEvent
    ) -> tuple[core.Event, dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The validated asm event storing ``event``, and its app, user and session deltas."""
        app_delta, user_delta, session_delta = _split_state(
            dict(event.actions.state_delta or {}) if event.actions else {}
        )
        stored = core.Event.new(
            event_type_for_adk_event(event),
            session.id,
            timestamp=datetime.fromtimestamp(event.timestamp, UTC),
            data={EVENT_KEY: event.model_dump(mode="json", exclude_none=True)},
            metadata={"source": SOURCE, "author": event.author},
        )  # validated (and normalised) by its constructor
        return stored, app_delta, user_delta, session_delta

    def _append_event(self, session: AdkSession, event: AdkEvent) -> None:
        alias = db_for_write(self.using, m.Session)
        stored, app_delta, user_delta, session_delta = self._stored_event(session, event)
        if is_postgres(alias):
            self._append_event_postgres(
                alias, session, stored, app_delta, user_delta, session_delta
            )
            return

        def work() -> None:
            sessions = m.Session.objects.using(alias).filter(
                id=session.id, agent_id=session.app_name, metadata__adk_user_id=session.user_id
            )
            # The UPDATE locks the row until commit, so concurrent appends to
            # this session apply their state deltas one after the other.
            if not sessions.update(updated_at=stored.timestamp):
                raise SessionNotFoundError(f"Session {session.id} not found.")
            if session_delta:
                context = sessions.values_list("context", flat=True).first() or {}
                sessions.update(context={**context, **session_delta})
            self._update_shared_state(alias, session, app_delta, user_delta)
            self._store.append_event(stored)

        write_transaction(alias, "append_event", work)

    def _append_event_postgres(
        self,
        alias: str,
        session: AdkSession,
        stored: core.Event,
        app_delta: dict[str, Any],
        user_delta: dict[str, Any],
        session_delta: dict[str, Any],
    ) -> None:
        """:meth:`_append_event` on PostgreSQL: one statement unless shared state changes.

        The event, the counter and the session row (``updated_at`` and the
        session-scoped delta) are one statement (see
        :func:`~agent_sessions.integrations.pgsql.append_adk_event`), which in
        autocommit is a transaction of its own. App- and user-scoped deltas
        live in other rows; only then does the append open a transaction,
        updating them after that statement so that locks are always taken in
        the order session row, counter, app state, user state.
        """
        connection = connections[alias]

        def work() -> None:
            with connection.cursor() as cursor:
                found = append_adk_event(
                    cursor,
                    stored,
                    app_name=session.app_name,
                    user_id=session.user_id,
                    state_delta=session_delta,
                    now=utcnow(),
                )
            if not found:
                raise SessionNotFoundError(f"Session {session.id} not found.")
            self._update_shared_state(alias, session, app_delta, user_delta)

        with translate_errors("append_event"):
            if app_delta or user_delta:
                with transaction.atomic(using=alias):
                    work()
            else:
                # One statement: atomic on its own in autocommit, and part of
                # the caller's transaction inside one.
                work()
