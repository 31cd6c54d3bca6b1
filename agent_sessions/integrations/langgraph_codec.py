"""How the LangGraph checkpointer's records become asm events, and back.

The one place that knows the shapes the checkpointer
(:class:`~agent_sessions.integrations.langgraph.DjangoCheckpointSaver`) writes;
no database access here:

- a checkpoint is a ``workspace_snapshot_taken`` event and a pending write a
  ``workspace_diff_computed`` event, both with ``correlation_id`` = the
  checkpoint id, the readable fields (namespace, ids, step, task, channel)
  under ``data["langgraph"]`` and the payload serialised by LangGraph's
  serializer under ``metadata["langgraph"]`` (:func:`typed`: base64, of the
  zlib-compressed bytes when that is smaller);
- a message of the ``messages`` channel is an ordinary message event, keyed by
  the message id, with ``data = {"content", "role", "message"}``;
- event ids are derived from what they store (:func:`event_id`), so storing
  the same thing twice finds the stored event.

Needs ``pip install django-agent-sessions[langgraph]``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from agent_sessions.integrations import missing_extra

try:
    from langchain_core.messages import BaseMessage, message_to_dict
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        writes_sort_key,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("langgraph", exc) from exc

from agent_sessions import core

__all__ = [
    "CHECKPOINT_TYPE",
    "KEY",
    "MESSAGES_CHANNEL",
    "SOURCE",
    "WRITE_TYPE",
    "checkpoint_event",
    "checkpoint_tuple",
    "copied_event_id",
    "event_id",
    "message_event_id",
    "message_events",
    "payload",
    "run_id_of",
    "typed",
    "untyped",
    "write_events",
]

#: ``data`` key of checkpoint and pending-write events; ``metadata["source"]`` of every event.
KEY = SOURCE = "langgraph"
CHECKPOINT_TYPE = core.EventType.WORKSPACE_SNAPSHOT_TAKEN
WRITE_TYPE = core.EventType.WORKSPACE_DIFF_COMPUTED
#: The channel whose messages become ordinary message events.
MESSAGES_CHANNEL = "messages"

_SENT_TYPES = frozenset({"human", "system", "developer"})
_TOOL_TYPES = frozenset({"tool", "function"})
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def event_id(*parts: str) -> str:
    """A deterministic event id: storing the same thing twice finds the stored event."""
    return "evt_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


#: Serialised payloads at least this long (bytes) are stored zlib-compressed when that is smaller.
COMPRESS_FROM = 512
#: The third item of a stored payload whose bytes are zlib-compressed.
ZLIB = "zlib"


def typed(serde: SerializerProtocol, value: Any) -> list[str]:
    """A value as stored: ``[type, base64]``, or ``[type, base64, "zlib"]``.

    JSON holds bytes only as text, and base64 text defeats PostgreSQL's own
    compression of large values (TOAST), which ``PostgresSaver``'s ``bytea``
    blobs get. So large payloads (a conversation's whole message list, in
    every checkpoint) are compressed first: less for the server to parse,
    compress, store and log, and for the client to encode and decode.
    """
    kind, serialised = serde.dumps_typed(value)
    if len(serialised) >= COMPRESS_FROM:
        # Level 1: nearly the ratio of the default at a fraction of its time.
        compressed = zlib.compress(serialised, 1)
        if len(compressed) < len(serialised):
            return [kind, base64.b64encode(compressed).decode("ascii"), ZLIB]
    return [kind, base64.b64encode(serialised).decode("ascii")]


def untyped(serde: SerializerProtocol, stored: list[str]) -> Any:
    """A value stored by :func:`typed`, deserialised."""
    serialised = base64.b64decode(stored[1])
    if len(stored) > 2 and stored[2] == ZLIB:
        serialised = zlib.decompress(serialised)
    return serde.loads_typed((stored[0], serialised))


def payload(data: dict[str, Any], metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A checkpoint's or write's stored fields: the readable ones (``data["langgraph"]``)
    and the serialised ones (``metadata["langgraph"]``)."""
    return {**data, **(metadata or {})}


def checkpoint_event(
    serde: SerializerProtocol,
    thread_id: str,
    ns: str,
    checkpoint: Checkpoint,
    parent: str | None,
    metadata: CheckpointMetadata,
    run_id: str,
) -> core.Event:
    """The event storing a checkpoint (its channel values included) and its metadata."""
    versions = checkpoint.get("channel_versions", {})
    values = checkpoint.get("channel_values", {})
    # Only channels that have a version have a value, as LangGraph's own savers load them.
    saved = {**checkpoint, "channel_values": {k: v for k, v in values.items() if k in versions}}
    return core.Event.new(
        CHECKPOINT_TYPE,
        thread_id,
        id=event_id(thread_id, ns, checkpoint["id"]),
        correlation_id=checkpoint["id"],
        run_id=run_id,
        data={
            KEY: {
                "kind": "checkpoint",
                "ns": ns,
                "checkpoint_id": checkpoint["id"],
                "parent": parent,
                "source": metadata.get("source"),
                "step": metadata.get("step"),
            }
        },
        metadata={
            "source": SOURCE,
            KEY: {"checkpoint": typed(serde, saved), "metadata": typed(serde, metadata)},
        },
    )


def write_events(
    serde: SerializerProtocol,
    thread_id: str,
    ns: str,
    checkpoint_id: str,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
) -> list[core.Event]:
    """The events storing a task's pending writes (indexes as LangGraph's savers number them)."""
    return [
        core.Event.new(
            WRITE_TYPE,
            thread_id,
            id=event_id(thread_id, ns, checkpoint_id, task_id, str(index)),
            correlation_id=checkpoint_id,
            data={
                KEY: {
                    "kind": "write",
                    "ns": ns,
                    "checkpoint_id": checkpoint_id,
                    "task_id": task_id,
                    "task_path": task_path,
                    "idx": index,
                    "channel": channel,
                }
            },
            metadata={"source": SOURCE, KEY: {"value": typed(serde, value)}},
        )
        for channel, value, index in (
            (channel, value, WRITES_IDX_MAP.get(channel, position))
            for position, (channel, value) in enumerate(writes)
        )
    ]


def checkpoint_tuple(
    serde: SerializerProtocol,
    thread_id: str,
    stored: dict[str, Any],
    writes: Iterable[dict[str, Any]],
) -> CheckpointTuple:
    """A CheckpointTuple from a checkpoint's :func:`payload` and its writes' payloads."""
    ns, checkpoint_id, parent = stored["ns"], stored["checkpoint_id"], stored["parent"]
    ordered = sorted(writes, key=lambda w: writes_sort_key(w["task_path"], w["task_id"], w["idx"]))
    return CheckpointTuple(
        config={
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint_id,
            }
        },
        checkpoint=untyped(serde, stored["checkpoint"]),
        metadata=untyped(serde, stored["metadata"]),
        parent_config=(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent}}
            if parent
            else None
        ),
        pending_writes=[(w["task_id"], w["channel"], untyped(serde, w["value"])) for w in ordered],
    )


def _message_text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(
        part if isinstance(part, str) else str(part.get("text", ""))
        for part in content
        if isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text")
    )


def _message_event_type(message: BaseMessage) -> core.EventType:
    if message.type in _SENT_TYPES:
        return core.EventType.MESSAGE_SENT
    if message.type in _TOOL_TYPES:
        return core.EventType.TOOL_CALL_COMPLETED
    return core.EventType.MESSAGE_RECEIVED


def message_event_id(thread_id: str, message: BaseMessage, position: int) -> str:
    """The id of a message's event: once per message id (its position when it has none)."""
    return _message_event_id(thread_id, message.id or f"#{position}")


# Every put hashes the ids of the whole message list again: remember them.
@functools.lru_cache(maxsize=65_536)
def _message_event_id(thread_id: str, message_key: str) -> str:
    return event_id(thread_id, "message", message_key)


def message_events(thread_id: str, messages: Any, known: set[str]) -> list[core.Event]:
    """Events for the messages of a ``messages`` channel value whose ids are not in ``known``."""
    if not isinstance(messages, list):
        return []
    events = []
    for position, message in enumerate(messages):
        if not isinstance(message, BaseMessage):
            continue
        message_id = message_event_id(thread_id, message, position)
        if message_id in known:
            continue
        events.append(
            core.Event.new(
                _message_event_type(message),
                thread_id,
                id=message_id,
                data={
                    "content": _message_text(message),
                    "role": _ROLES.get(message.type, message.type),
                    "message": message_to_dict(message),
                },
                metadata={"source": SOURCE},
            )
        )
    return events


def copied_event_id(target: str, event_type: str, data: dict[str, Any], old_id: str) -> str:
    """The id an event gets in the target thread of a copy: the one the saver would give it."""
    stored = data.get(KEY)
    if isinstance(stored, dict) and stored.get("kind") == "checkpoint":
        return event_id(target, stored["ns"], stored["checkpoint_id"])
    if isinstance(stored, dict) and stored.get("kind") == "write":
        return event_id(
            target, stored["ns"], stored["checkpoint_id"], stored["task_id"], str(stored["idx"])
        )
    message_id = ((data.get("message") or {}).get("data") or {}).get("id")
    return event_id(target, "message", message_id) if message_id else event_id(target, old_id)


def run_id_of(metadata: CheckpointMetadata) -> str | None:
    """LangGraph's ``run_id`` of a checkpoint's metadata, if it has one."""
    run_id = metadata.get("run_id") if isinstance(metadata, dict) else None
    return str(run_id) if run_id else None
