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

from typing import Any

from agent_sessions.integrations import PayloadLog, missing_extra

# The framework first: without the extra, this is the error users see.
try:
    from agents.items import TResponseInputItem
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("openai-agents", exc) from exc

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.db import db_for_write
from agent_sessions.integrations.pgasync import aclose_connections

__all__ = ["DjangoAgentsSession", "event_type_for_item"]

#: Where the SDK item sits inside the event's ``data``; also what marks an event as an item.
ITEM_KEY = "item"
#: Written into each event's ``metadata`` so that other readers can tell where it came from.
SOURCE = "openai-agents"

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


class DjangoAgentsSession:
    """An OpenAI Agents SDK ``Session`` whose items are events of one asm session.

    Implements the SDK's ``Session`` protocol (``session_id``,
    ``session_settings``, ``get_items``, ``add_items``, ``pop_item``,
    ``clear_session``); pass it to ``Runner.run(agent, input, session=...)``.
    Each call is one transaction run in a worker thread (see
    :mod:`agent_sessions.aio`), except ``add_items`` of one item on
    PostgreSQL: one statement awaited on a private async connection, closed
    by :meth:`aclose` or when the event loop shuts down. Instances are
    cheap; several processes may use the same ``session_id`` at once.

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
        fast_path: On PostgreSQL, run single-item appends as one statement on
            a private async connection instead of a worker thread (see
            :mod:`agent_sessions.integrations.pgasync`). Turn off behind a
            proxy that cannot take prepared statements.

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
        fast_path: bool = True,
    ) -> None:
        self._log = PayloadLog(
            session_id,
            key=ITEM_KEY,
            source=SOURCE,
            agent_id=agent_id,
            using=using,
            status=status,
            metadata=metadata,
            fast_path=fast_path,
        )
        self.session_id = self._log.session_id
        self.using = using
        self.session_settings = session_settings or SessionSettings()

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
            # One item on PostgreSQL: one statement awaited on a private async
            # connection, no worker thread (see PayloadLog.aappend).
            await self._log.aappend(items, [event_type_for_item(item) for item in items])

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

    async def aclose(self) -> None:
        """Close the private PostgreSQL connections of the running event loop.

        Optional: they are closed anyway when the loop shuts down (e.g. at
        the end of ``asyncio.run()``), and the next call reopens what it
        needs. Shared by every adapter on this loop and database alias.
        """
        await aclose_connections(db_for_write(self.using, m.Event))

    # ------------------------------------------------------------------ sync work

    def get_items_sync(self, limit: int | None = None) -> list[TResponseInputItem]:
        """Synchronous :meth:`get_items` (same arguments and result)."""
        return self._log.read(limit)

    def add_items_sync(self, items: list[TResponseInputItem]) -> None:
        """Synchronous :meth:`add_items`."""
        self._log.append(items, [event_type_for_item(item) for item in items])

    def pop_item_sync(self) -> TResponseInputItem | None:
        """Synchronous :meth:`pop_item`."""
        item: TResponseInputItem | None = self._log.pop()
        return item

    def clear_session_sync(self) -> None:
        """Synchronous :meth:`clear_session`."""
        self._log.clear()
