"""LangChain chat message history over the ``asm_*`` tables.

Quick start::

    from langchain_core.runnables.history import RunnableWithMessageHistory
    from agent_sessions.integrations.langchain import DjangoChatMessageHistory

    chain_with_history = RunnableWithMessageHistory(
        chain, lambda session_id: DjangoChatMessageHistory(session_id)
    )

Each message is one event of the asm session (created on first use), in
sequence order, with LangChain's serialised form (``message_to_dict``) in
``data["message"]``, so type, content, id and additional kwargs round-trip:
human and system messages as ``message_sent``, AI messages as
``message_received``, tool and function results as ``tool_call_completed``.

Needs ``pip install django-agent-sessions[langchain]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_sessions.integrations import missing_extra

# The framework first: without the extra, this is the error users see.
try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("langchain", exc) from exc

from agent_sessions import core
from agent_sessions.aio import run_in_worker
from agent_sessions.integrations.payload_log import PayloadLog
from agent_sessions.integrations.runs import (
    RunRecord,
    message_usage,
    record_run,
    record_runs_enabled,
)
from agent_sessions.validation import new_id

__all__ = ["DjangoChatMessageHistory", "event_type_for_message"]

#: Where the serialised message sits inside the event's ``data``.
MESSAGE_KEY = "message"
#: Written into each event's ``metadata["source"]``.
SOURCE = "langchain"

_SENT_TYPES = frozenset({"human", "system", "developer"})
_TOOL_TYPES = frozenset({"tool", "function"})


def event_type_for_message(message: BaseMessage) -> core.EventType:
    """The asm event type that stores a LangChain message.

    Returns:
        ``message_sent`` for human and system messages, ``tool_call_completed``
        for tool and function results, ``message_received`` otherwise (AI
        messages and their chunks, chat messages).
    """
    if message.type in _SENT_TYPES:
        return core.EventType.MESSAGE_SENT
    if message.type in _TOOL_TYPES:
        return core.EventType.TOOL_CALL_COMPLETED
    return core.EventType.MESSAGE_RECEIVED


class DjangoChatMessageHistory(BaseChatMessageHistory):
    """A LangChain ``BaseChatMessageHistory`` whose messages are events of one asm session.

    The sync methods run in the caller's thread; the async ones
    (``aget_messages``, ``aadd_messages``, ``aclear``) run the same work in a
    worker thread (see :mod:`agent_sessions.aio`). Each call is one
    transaction.

    Args:
        session_id: The asm session id.
        agent_id: ``agent_id`` of the asm session when this history creates it.
        using: Database alias; None follows the routers.
        status: Status of the asm session when this history creates it.
        metadata: Metadata of the asm session when this history creates it.
        provider: ``asm_runs.provider`` when a message does not name its provider.

    Raises:
        ValidationError: ``session_id`` or ``agent_id`` is not a valid id.
    """

    def __init__(
        self,
        session_id: str,
        *,
        agent_id: str = "langchain",
        using: str | None = None,
        status: core.SessionStatus | str = core.SessionStatus.PENDING,
        metadata: dict[str, Any] | None = None,
        provider: str = "unknown",
    ) -> None:
        self.provider = provider
        self._log = PayloadLog(
            session_id,
            key=MESSAGE_KEY,
            source=SOURCE,
            agent_id=agent_id,
            using=using,
            status=status,
            metadata=metadata,
        )
        self.session_id = self._log.session_id

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The messages, oldest first."""
        return messages_from_dict(self._log.read())

    async def aget_messages(self) -> list[BaseMessage]:
        """The messages, oldest first (read in a worker thread)."""
        return messages_from_dict(await run_in_worker(self._log.read))

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the messages in order (one transaction).

        When AI messages among them report ``usage_metadata``, the call is
        recorded as one asm run (``RunnableWithMessageHistory`` adds a
        turn's input and output in one call) with their provider, model and
        token usage (see :mod:`agent_sessions.integrations.runs`).

        Raises:
            ValidationError: a message holds a value the database cannot store;
                nothing is written.
        """
        self._log.append(
            [message_to_dict(message) for message in messages],
            [event_type_for_message(message) for message in messages],
        )
        found = message_usage(messages)
        if found.turns and record_runs_enabled():
            record_run(
                RunRecord(
                    session_id=self.session_id,
                    run_id=new_id("run_"),
                    provider=found.provider or self.provider,
                    status=core.RunStatus.COMPLETED if found.finished else core.RunStatus.RUNNING,
                    model=found.model,
                    token_usage=found.token_usage,
                    turns=found.turns,
                    framework=SOURCE,
                ),
                using=self._log.using,
            )

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Async :meth:`add_messages`."""
        await run_in_worker(self.add_messages, messages)

    def clear(self) -> None:
        """Delete the messages; the asm session row and its sequence counter stay."""
        self._log.clear()

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await run_in_worker(self.clear)
