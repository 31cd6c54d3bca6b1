"""OpenAI Agents SDK ``Session`` over the ``asm_*`` tables.

Quick start::

    from agents import Agent, Runner
    from agent_sessions.integrations.openai_agents import DjangoAgentsSession

    session = DjangoAgentsSession("conversation_123")
    result = await Runner.run(agent, "Hello", session=session)

Every conversation item becomes one event of the asm session ``session_id``
(created on first use), in sequence order, with the whole item in
``data["item"]``: messages as ``message_sent`` (user, system, developer) or
``message_received`` (assistant and other model output), tool calls as
``tool_call_started``, their outputs as ``tool_call_completed``, MCP approval
requests and answers as ``tool_approval_*``.

Needs ``pip install django-agent-sessions[openai-agents]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from agent_sessions.integrations import missing_extra

# The framework first: without the extra, this is the error users see.
try:
    from agents.items import TResponseInputItem
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("openai-agents", exc) from exc

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.db import db_for_read, db_for_write, translate_errors
from agent_sessions.integrations import ensure_session, touch_session
from agent_sessions.sequences import take_sqlite_write_lock
from agent_sessions.store import DjangoSessionStore
from agent_sessions.validation import check_id

__all__ = ["DjangoAgentsSession", "event_type_for_item"]

_T = TypeVar("_T")

#: Where the SDK item sits inside the event's ``data``; also what marks an event as an item.
ITEM_KEY = "item"
#: Written into each event's ``metadata`` so that other readers can tell where it came from.
SOURCE = "openai-agents"
#: Keep ``asm_sessions.updated_at`` (what retention ages by) at most this stale, in seconds.
TOUCH_INTERVAL_SECONDS = 60.0

_USER_ROLES = frozenset({"user", "system", "developer"})


def event_type_for_item(item: Any) -> core.EventType:
    """The asm event type that stores an SDK conversation item.

    Args:
        item: A ``TResponseInputItem`` (a dict).

    Returns:
        ``message_sent`` for user/system/developer messages, ``tool_call_started``
        for ``*_call`` items, ``tool_call_completed`` for ``*_call_output`` items,
        ``tool_approval_requested``/``granted``/``denied`` for MCP approvals, and
        ``message_received`` for assistant messages and any other model output.
    """
    kind = str(item.get("type") or "message") if isinstance(item, dict) else "message"
    if kind == "message":
        role = item.get("role") if isinstance(item, dict) else None
        return (
            core.EventType.MESSAGE_SENT if role in _USER_ROLES else core.EventType.MESSAGE_RECEIVED
        )
    if kind.endswith("_call_output"):
        return core.EventType.TOOL_CALL_COMPLETED
    if kind.endswith("_call"):
        return core.EventType.TOOL_CALL_STARTED
    if kind == "mcp_approval_request":
        return core.EventType.TOOL_APPROVAL_REQUESTED
    if kind == "mcp_approval_response":
        granted = isinstance(item, dict) and bool(item.get("approve"))
        return (
            core.EventType.TOOL_APPROVAL_GRANTED if granted else core.EventType.TOOL_APPROVAL_DENIED
        )
    return core.EventType.MESSAGE_RECEIVED


def _write(alias: str, operation: str, work: Callable[[], _T]) -> _T:
    # One transaction that holds SQLite's write lock from its first statement,
    # so a read-then-delete never fails half-way with "database is locked".
    with translate_errors(operation), transaction.atomic(using=alias):
        connection: BaseDatabaseWrapper = connections[alias]
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                take_sqlite_write_lock(cursor)
        return work()


class DjangoAgentsSession:
    """An OpenAI Agents SDK ``Session`` whose items are events of one asm session.

    Implements the SDK's ``Session`` protocol (``session_id``,
    ``session_settings``, ``get_items``, ``add_items``, ``pop_item``,
    ``clear_session``); pass it to ``Runner.run(agent, input, session=...)``.
    Each call is one transaction run in a worker thread (see
    :mod:`agent_sessions.aio`). Instances are cheap; several processes may use
    the same ``session_id`` at once.

    Args:
        session_id: The asm session id (and the SDK session id).
        agent_id: ``agent_id`` of the asm session when this adapter creates it.
        using: Database alias; None follows the routers.
        session_settings: The SDK's settings (``limit`` is the default for
            :meth:`get_items`).
        status: Status of the asm session when this adapter creates it
            (``pending``, like :meth:`agent_sessions.core.Session.new`, so
            that retention applies to it).
        metadata: Metadata of the asm session when this adapter creates it.

    Raises:
        ValidationError: ``session_id`` or ``agent_id`` is not a valid id.
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        *,
        agent_id: str = "openai-agents",
        using: str | None = None,
        session_settings: SessionSettings | None = None,
        status: core.SessionStatus | str = core.SessionStatus.PENDING,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.session_id = check_id(session_id, "session_id")
        self.agent_id = check_id(agent_id, "agent_id")
        self.using = using
        self.session_settings = session_settings or SessionSettings()
        self._new_session = core.Session.new(
            agent_id,
            id=self.session_id,
            status=status,
            metadata={"framework": SOURCE, **(metadata or {})},
        )
        self._store = DjangoSessionStore(using=using)
        self._touched_at: float | None = None

    # ------------------------------------------------------------------ protocol

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """Return the conversation items, oldest first.

        Args:
            limit: Only the latest ``limit`` items (still oldest first); None
                uses ``session_settings.limit`` (None: all). 0 returns ``[]``.

        Returns:
            The items as the SDK gave them to :meth:`add_items`.
        """
        return await run_in_worker(
            self.get_items_sync, resolve_session_limit(limit, self.session_settings)
        )

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append the items, in order, as events of the session (one transaction).

        Raises:
            ValidationError: an item holds a value the database cannot store
                (e.g. a NUL character); nothing is written.
        """
        if items:
            await run_in_worker(self.add_items_sync, items)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the latest item, or None when there is none.

        Atomic: two concurrent callers (threads or processes) never get the
        same item. The sequence counter is not lowered.
        """
        return await run_in_worker(self.pop_item_sync)

    async def clear_session(self) -> None:
        """Delete every item of the session.

        The asm session row and its sequence counter stay, so items added
        afterwards get higher numbers than any removed one.
        """
        await run_in_worker(self.clear_session_sync)

    # ------------------------------------------------------------------ sync work

    def _items(self, alias: str) -> Any:
        return m.Event.objects.using(alias).filter(
            session_id=self.session_id, data__has_key=ITEM_KEY
        )

    def get_items_sync(self, limit: int | None = None) -> list[TResponseInputItem]:
        """Synchronous :meth:`get_items` (same arguments and result)."""
        if limit == 0:
            return []
        alias = db_for_read(self.using, m.Event)
        with translate_errors("get_items"):
            if limit is None or limit < 0:
                rows = list(self._items(alias).order_by("sequence_number").values_list("data"))
            else:
                rows = list(
                    self._items(alias).order_by("-sequence_number").values_list("data")[:limit]
                )
                rows.reverse()
        return [data[ITEM_KEY] for (data,) in rows]

    def add_items_sync(self, items: list[TResponseInputItem]) -> None:
        """Synchronous :meth:`add_items`."""
        if not items:
            return
        events = [
            core.Event.new(
                event_type_for_item(item),
                self.session_id,
                data={ITEM_KEY: item},
                metadata={"source": SOURCE},
            )
            for item in items
        ]
        self._keep_session_fresh()
        self._store.append_events(events)

    def pop_item_sync(self) -> TResponseInputItem | None:
        """Synchronous :meth:`pop_item`."""
        alias = db_for_write(self.using, m.Event)

        def work() -> TResponseInputItem | None:
            # Locking the counter row queues pops (and appends, which bump it)
            # of this session behind each other; the delete count below still
            # guards the case of events written without a counter.
            list(
                m.SessionSequence.objects.using(alias)
                .select_for_update()
                .filter(session_id=self.session_id)
                .values_list("session_id")
            )
            while True:
                latest = (
                    self._items(alias)
                    .order_by("-sequence_number")
                    .values_list("id", "data")
                    .first()
                )
                if latest is None:
                    return None
                event_id, data = latest
                if m.Event.objects.using(alias).filter(id=event_id).delete()[0]:
                    item: TResponseInputItem = data[ITEM_KEY]
                    return item

        return _write(alias, "pop_item", work)

    def clear_session_sync(self) -> None:
        """Synchronous :meth:`clear_session`."""
        alias = db_for_write(self.using, m.Event)
        _write(alias, "clear_session", lambda: self._items(alias).delete())

    def _keep_session_fresh(self) -> None:
        # Creating the row once per instance, then refreshing updated_at at
        # most once a minute, keeps retention's clock right without paying an
        # extra statement on every append.
        now = time.monotonic()
        if self._touched_at is not None and now - self._touched_at < TOUCH_INTERVAL_SECONDS:
            return
        if self._touched_at is None:
            ensure_session(self._new_session, using=self.using)
        touch_session(self.session_id, using=self.using)
        self._touched_at = now
