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

from agent_sessions.integrations import missing_extra

# The framework first: without the extra, this is the error users see.
try:
    from agents.items import TResponseInputItem
    from agents.memory.session_settings import (
        SessionSettings,
        coerce_session_settings,
        resolve_session_limit,
    )
    from agents.run_context import RunContextWrapper
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("openai-agents", exc) from exc

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.db import db_for_write
from agent_sessions.integrations.payload_log import PayloadLog
from agent_sessions.integrations.pgasync import aclose_connections
from agent_sessions.integrations.runs import (
    RunRecord,
    record_run,
    record_runs_enabled,
    usage_dict,
)
from agent_sessions.validation import new_id

__all__ = ["DjangoAgentsSession", "event_type_for_item"]

#: Where the SDK item sits inside the event's ``data``; also what marks an event as an item.
ITEM_KEY = "item"
#: Written into each event's ``metadata`` so that other readers can tell where it came from.
SOURCE = "openai-agents"
#: ``asm_runs.provider`` of the runs this adapter records (unless told otherwise).
PROVIDER = "openai"
# Where the asm run id of an SDK run is kept, on its run context object.
_RUN_ID_ATTRIBUTE = "_agent_sessions_run_id"

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

    The four methods accept the SDK's run context (``wrapper``, a
    ``RunContextWrapper``), which ``Runner`` passes to sessions that take it:
    :meth:`using_for` picks the database from it (per-tenant routing, or an
    ownership check that raises), and the run's token usage is recorded from
    it (see :mod:`agent_sessions.integrations.runs`).

    Args:
        session_id: The asm session id (and the SDK session id).
        agent_id: ``agent_id`` of the asm session when this adapter creates it.
        using: Database alias; None follows the routers.
        session_settings: The SDK's settings, a ``SessionSettings`` or a dict
            of its fields (``limit`` is the default for :meth:`get_items`).
        status: Status of the asm session when this adapter creates it
            (``pending``, like :meth:`agent_sessions.core.Session.new`, so
            that retention applies to it).
        metadata: Metadata of the asm session when this adapter creates it.
        fast_path: On PostgreSQL, run single-item appends as one statement on
            a private async connection instead of a worker thread (see
            :mod:`agent_sessions.integrations.pgasync`). Turn off behind a
            proxy that cannot take prepared statements.
        model: The model name recorded on the runs (``provider_metadata["model"]``,
            what cost summaries price by); the SDK's run context does not say.
        provider: The provider recorded on the runs.

    Raises:
        ValidationError: ``session_id`` or ``agent_id`` is not a valid id.
        TypeError: ``session_settings`` is a dict with a key the SDK does not
            know (as the SDK's own sessions do).
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        *,
        agent_id: str = "openai-agents",
        using: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        status: core.SessionStatus | str = core.SessionStatus.PENDING,
        metadata: dict[str, Any] | None = None,
        fast_path: bool = True,
        model: str | None = None,
        provider: str = PROVIDER,
    ) -> None:
        self._log_options: dict[str, Any] = {
            "key": ITEM_KEY,
            "source": SOURCE,
            "agent_id": agent_id,
            "status": status,
            "metadata": metadata,
            "fast_path": fast_path,
        }
        self._logs: dict[str | None, PayloadLog] = {}
        self.using = using
        self.session_id = self._log_for(using, session_id).session_id
        self.session_settings = (
            SessionSettings()
            if session_settings is None
            else coerce_session_settings(session_settings)
        )
        self.model = model
        self.provider = provider

    def using_for(self, wrapper: RunContextWrapper[Any] | None) -> str | None:
        """The database alias for a call made with the run context ``wrapper``.

        The default is the ``using`` given to the constructor. Override it to
        route by tenant, or to refuse a run that does not own the session::

            class TenantSession(DjangoAgentsSession):
                def using_for(self, wrapper):
                    if wrapper is None:  # called outside Runner (your own code)
                        return self.using
                    tenant = wrapper.context.tenant
                    if not self.session_id.startswith(f"{tenant.slug}:"):
                        raise PermissionError("not this tenant's conversation")
                    return tenant.database_alias

        Args:
            wrapper: The SDK's ``RunContextWrapper`` (its ``context`` is what
                you passed to ``Runner.run(..., context=...)``), or None when
                the method was called directly.

        Returns:
            A database alias, or None to follow the routers.
        """
        return self.using

    def _log_for(self, using: str | None, session_id: str | None = None) -> PayloadLog:
        log = self._logs.get(using)
        if log is None:
            # Validates the id (the first call, from __init__, passes it).
            log = self._logs[using] = PayloadLog(
                session_id or self.session_id, using=using, **self._log_options
            )
        return log

    # ------------------------------------------------------------------ protocol

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """Return the conversation items, oldest first.

        Args:
            limit: Only the latest ``limit`` items (still oldest first); None
                uses ``session_settings.limit`` (None: all). 0 returns ``[]``.
            wrapper: The SDK's run context (see :meth:`using_for`).

        Returns:
            The items as the SDK gave them to :meth:`add_items`.
        """
        log = self._log_for(self.using_for(wrapper))
        return await run_in_worker(log.read, resolve_session_limit(limit, self.session_settings))

    async def add_items(
        self, items: list[TResponseInputItem], *, wrapper: RunContextWrapper[Any] | None = None
    ) -> None:
        """Append the items, in order, as events of the session (one transaction).

        With a run context, the run it belongs to is recorded too (an asm
        run with the usage so far, see :mod:`agent_sessions.integrations.runs`).

        Args:
            items: The SDK's items.
            wrapper: The SDK's run context (see :meth:`using_for`).

        Raises:
            ValidationError: an item holds a value the database cannot store
                (e.g. a NUL character); nothing is written.
        """
        if not items:
            return
        log = self._log_for(self.using_for(wrapper))
        # One item on PostgreSQL: one statement awaited on a private async
        # connection, no worker thread (see PayloadLog.aappend).
        await log.aappend(items, [event_type_for_item(item) for item in items])
        if wrapper is not None and record_runs_enabled():
            await run_in_worker(self._record_run, log.using, wrapper, items)

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the latest item, or None when there is none.

        Atomic: two concurrent callers (threads or processes) never get the
        same item. The sequence counter is not lowered.

        Args:
            wrapper: The SDK's run context (see :meth:`using_for`).
        """
        log = self._log_for(self.using_for(wrapper))
        item: TResponseInputItem | None = await run_in_worker(log.pop)
        return item

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Delete every item of the session.

        The asm session row and its sequence counter stay, so items added
        afterwards get higher numbers than any removed one.

        Args:
            wrapper: The SDK's run context (see :meth:`using_for`).
        """
        await run_in_worker(self._log_for(self.using_for(wrapper)).clear)

    async def aclose(self) -> None:
        """Close the private PostgreSQL connections of the running event loop.

        Optional: they are closed anyway when the loop shuts down (e.g. at
        the end of ``asyncio.run()``), and the next call reopens what it
        needs. Shared by every adapter on this loop and database alias.
        """
        for using in self._logs:
            await aclose_connections(db_for_write(using, m.Event))

    # ------------------------------------------------------------------ sync work

    def get_items_sync(self, limit: int | None = None) -> list[TResponseInputItem]:
        """Synchronous :meth:`get_items` (same arguments and result), on ``using``."""
        return self._log_for(self.using).read(resolve_session_limit(limit, self.session_settings))

    def add_items_sync(self, items: list[TResponseInputItem]) -> None:
        """Synchronous :meth:`add_items`, on ``using``."""
        self._log_for(self.using).append(items, [event_type_for_item(item) for item in items])

    def pop_item_sync(self) -> TResponseInputItem | None:
        """Synchronous :meth:`pop_item`, on ``using``."""
        item: TResponseInputItem | None = self._log_for(self.using).pop()
        return item

    def clear_session_sync(self) -> None:
        """Synchronous :meth:`clear_session`, on ``using``."""
        self._log_for(self.using).clear()

    def _record_run(
        self, using: str | None, wrapper: RunContextWrapper[Any], items: list[Any]
    ) -> None:
        """Create or update the asm run of the SDK run whose context is ``wrapper``.

        The SDK gives a session no run id; the run context object lives as
        long as the run, so a run id is minted on first sight and kept on it.
        Usage is the context's running total, so it replaces the stored one.
        """
        run_id = getattr(wrapper, _RUN_ID_ATTRIBUTE, None)
        if run_id is None:
            run_id = new_id("run_")
            setattr(wrapper, _RUN_ID_ATTRIBUTE, run_id)
        usage = wrapper.usage
        record_run(
            RunRecord(
                session_id=self.session_id,
                run_id=run_id,
                provider=self.provider,
                model=self.model,
                status=_run_status(items),
                token_usage=usage_dict(usage.input_tokens, usage.output_tokens, usage.total_tokens),
                additive=False,
                turns=usage.requests,
                framework=SOURCE,
            ),
            using=using,
        )


def _run_status(items: list[Any]) -> core.RunStatus:
    """``completed`` once the run saved an assistant message last (its final output).

    The SDK saves each turn's items as the run goes; a turn that ends in tool
    calls or their outputs is followed by another model call.
    """
    last = items[-1] if items else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        return core.RunStatus.COMPLETED
    return core.RunStatus.RUNNING
