"""A LangGraph checkpointer over the ``asm_*`` tables (LangChain 1.x agents' memory).

Quick start::

    from langchain.agents import create_agent
    from agent_sessions.integrations.langgraph import DjangoCheckpointSaver

    agent = create_agent(model, tools, checkpointer=DjangoCheckpointSaver())
    agent.invoke({"messages": [...]}, {"configurable": {"thread_id": "conversation_123"}})

What is stored where (no table of its own, so retention, ``asm_maintenance``,
the admin, the query API and an Elixir application all see it):

- a thread is the asm session with the thread id (``agent_id`` ``"langgraph"``
  unless told otherwise, ``metadata["framework"] = "langgraph"``), created on
  first use; :meth:`~DjangoCheckpointSaver.delete_thread` deletes it;
- each message of the graph's ``messages`` channel is an ordinary event, once
  (keyed by the message id): ``message_sent`` for human/system messages,
  ``message_received`` for AI messages, ``tool_call_completed`` for tool
  results, with ``data = {"content": <text>, "role": ..., "message":
  <LangChain's message_to_dict>}`` — readable by any ASM reader, and by
  :class:`~agent_sessions.integrations.langchain.DjangoChatMessageHistory`;
- each checkpoint is a ``workspace_snapshot_taken`` event (a snapshot of the
  graph's state) and each pending write a ``workspace_diff_computed`` event,
  both with ``correlation_id`` = the checkpoint id, the readable fields
  (namespace, ids, step, task, channel) under ``data["langgraph"]`` and the
  serialised payload (LangGraph's own serializer, base64) under
  ``metadata["langgraph"]``, out of full-text search. Those two types are
  never redacted (their payloads are opaque);
- each graph run whose AI messages report ``usage_metadata`` is an asm run
  (id = LangGraph's ``run_id`` when the config carries one) with provider,
  model and token usage (see :mod:`agent_sessions.integrations.runs`).

Retention applies as to any session: pruning by ``max_events_per_session``
removes the oldest events first, checkpoints included (LangGraph then resumes
from the latest one kept).

Needs ``pip install django-agent-sessions[langgraph]``.
"""

from __future__ import annotations

import base64
import builtins
import functools
import hashlib
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from agent_sessions.integrations import missing_extra

# The framework first: without the extra, this is the error users see.
try:
    from langchain_core.messages import BaseMessage, message_to_dict
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
        get_checkpoint_metadata,
        writes_sort_key,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("langgraph", exc) from exc

from django.db import connections
from django.db.models import Q

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.db import db_for_read, db_for_write, translate_errors
from agent_sessions.integrations.payload_log import ensure_session, touch_session, write_transaction
from agent_sessions.integrations.runs import (
    RunRecord,
    derived_run_id,
    message_usage,
    record_run,
    record_runs_enabled,
)
from agent_sessions.store import DjangoSessionStore
from agent_sessions.validation import check_id

__all__ = ["DjangoCheckpointSaver"]

#: ``data`` key of checkpoint and pending-write events; ``metadata["source"]`` of every event.
KEY = SOURCE = "langgraph"
CHECKPOINT_TYPE = core.EventType.WORKSPACE_SNAPSHOT_TAKEN
WRITE_TYPE = core.EventType.WORKSPACE_DIFF_COMPUTED
#: The channel whose messages become ordinary message events.
MESSAGES_CHANNEL = "messages"
#: Refresh ``asm_sessions.updated_at`` (what retention ages by) at most this often, in seconds.
TOUCH_INTERVAL_SECONDS = 60.0
#: Checkpoints read per query by :meth:`DjangoCheckpointSaver.list`.
LIST_CHUNK_SIZE = 100

_SENT_TYPES = frozenset({"human", "system", "developer"})
_TOOL_TYPES = frozenset({"tool", "function"})
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S")


def _release_connections() -> None:
    """Close this thread's Django connections as a request's end would (``CONN_MAX_AGE``).

    LangGraph's synchronous ``invoke`` calls the saver from the threads of a
    short-lived executor; Django would leave their connections open until the
    garbage collector finds them. The main thread and open transactions are
    left alone.
    """
    if threading.current_thread() is threading.main_thread():
        return
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _releasing(
    method: Callable[Concatenate[_S, _P], _R],
) -> Callable[Concatenate[_S, _P], _R]:
    """Run the method, then :func:`_release_connections`."""

    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        finally:
            _release_connections()

    functools.update_wrapper(wrapper, method)
    return wrapper


def _event_id(*parts: str) -> str:
    """A deterministic event id: storing the same thing twice finds the stored event."""
    return "evt_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _typed(serde: SerializerProtocol, value: Any) -> list[str]:
    kind, payload = serde.dumps_typed(value)
    return [kind, base64.b64encode(payload).decode("ascii")]


def _untyped(serde: SerializerProtocol, stored: list[str]) -> Any:
    return serde.loads_typed((stored[0], base64.b64decode(stored[1])))


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


class DjangoCheckpointSaver(BaseCheckpointSaver[str]):
    """A LangGraph ``BaseCheckpointSaver`` whose threads are asm sessions.

    Sync methods run in the caller's thread, each in one transaction; the
    async ones run the same work in a worker thread (see
    :mod:`agent_sessions.aio`). Several processes may use the same thread.
    Implements ``get_tuple``, ``list``, ``put``, ``put_writes``,
    ``delete_thread``, ``copy_thread``, ``prune`` and ``delete_for_runs``, and
    their async twins.

    Args:
        using: Database alias; None follows the routers (reads that must see
            the latest writes go to the write database).
        agent_id: ``agent_id`` of the asm sessions this saver creates.
        serde: LangGraph's serializer (default: its ``JsonPlusSerializer``).
        provider: ``asm_runs.provider`` when a message does not name one.
    """

    def __init__(
        self,
        *,
        using: str | None = None,
        agent_id: str = "langgraph",
        serde: SerializerProtocol | None = None,
        provider: str = "unknown",
    ) -> None:
        super().__init__(serde=serde)
        self.using = using
        self.agent_id = check_id(agent_id, "agent_id")
        self.provider = provider
        self._store = DjangoSessionStore(using=using)
        # Thread → when its session row was last created/touched (monotonic seconds).
        self._touched: dict[str, float] = {}
        # Message event ids known to be stored (a cache; the ids decide in the end).
        self._stored_messages: set[str] = set()
        # Checkpoint id → the asm run id of the graph run that made it.
        self._runs: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers

    def _write_alias(self) -> str:
        return db_for_write(self.using, m.Event)

    def _read_alias(self) -> str:
        # The write database: a graph step reads back the checkpoint it just stored.
        return db_for_read(self.using, m.Event, consistent=True)

    def _keep_session_fresh(self, thread_id: str) -> None:
        now = time.monotonic()
        last = self._touched.get(thread_id)
        if last is not None and now - last < TOUCH_INTERVAL_SECONDS:
            return
        # Created on first use, and again when it was deleted meanwhile (by
        # another process's delete_thread, say: touching then finds no row).
        if last is None or not touch_session(thread_id, using=self.using):
            ensure_session(
                core.Session.new(self.agent_id, id=thread_id, metadata={"framework": SOURCE}),
                using=self.using,
            )
            touch_session(thread_id, using=self.using)
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[thread_id] = now

    def _events(self, alias: str) -> Any:
        return m.Event.objects.using(alias).filter(metadata__source=SOURCE)

    def _tuple(
        self, thread_id: str, data: dict[str, Any], writes: Iterable[dict[str, Any]]
    ) -> CheckpointTuple:
        """A CheckpointTuple from a checkpoint event's payload and its writes' payloads."""
        ns, checkpoint_id, parent = data["ns"], data["checkpoint_id"], data["parent"]
        ordered = sorted(
            writes, key=lambda w: writes_sort_key(w["task_path"], w["task_id"], w["idx"])
        )
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": checkpoint_id,
                }
            },
            checkpoint=_untyped(self.serde, data["checkpoint"]),
            metadata=_untyped(self.serde, data["metadata"]),
            parent_config=(
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "checkpoint_id": parent,
                    }
                }
                if parent
                else None
            ),
            pending_writes=[
                (w["task_id"], w["channel"], _untyped(self.serde, w["value"])) for w in ordered
            ],
        )

    def _writes_of(
        self, alias: str, thread_ids_and_checkpoints: builtins.list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
        """The pending writes of each (thread, namespace, checkpoint id)."""
        found: dict[tuple[str, str, str], list[dict[str, Any]]] = {
            key: [] for key in thread_ids_and_checkpoints
        }
        if not found:
            return found
        # Two IN lists (usually one thread) plan far faster than an OR per pair;
        # pairs that are not asked for are dropped below.
        rows = self._events(alias).filter(
            session_id__in={thread_id for thread_id, _ns, _id in found},
            correlation_id__in={checkpoint_id for _thread, _ns, checkpoint_id in found},
            type=WRITE_TYPE.value,
        )
        for session_id, data, metadata in rows.values_list("session_id", "data", "metadata"):
            write = _payload(data, metadata)
            key = (session_id, write["ns"], write["checkpoint_id"])
            if key in found:
                found[key].append(write)
        return found

    # ------------------------------------------------------------------ reads

    @_releasing
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint of ``config`` (its ``checkpoint_id``, else the thread's latest
        in the namespace) with its pending writes, or None."""
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        alias = self._read_alias()
        with translate_errors("get_tuple"):
            if not checkpoint_id:
                checkpoint_id = (
                    self._events(alias)
                    .filter(
                        session_id=thread_id, type=CHECKPOINT_TYPE.value, data__langgraph__ns=ns
                    )
                    .order_by("-correlation_id")
                    .values_list("correlation_id", flat=True)
                    .first()
                )
                if checkpoint_id is None:
                    return None
            # The checkpoint and its pending writes share the correlation id: one query.
            rows = (
                self._events(alias)
                .filter(
                    session_id=thread_id,
                    correlation_id=checkpoint_id,
                    type__in=[CHECKPOINT_TYPE.value, WRITE_TYPE.value],
                    data__langgraph__ns=ns,
                )
                .order_by("sequence_number")
                .values_list("type", "data", "metadata")
            )
            payload = None
            writes = []
            for event_type, data, metadata in rows:
                if event_type == CHECKPOINT_TYPE.value:
                    payload = _payload(data, metadata)
                else:
                    writes.append(_payload(data, metadata))
            if payload is None:
                return None
        return self._tuple(thread_id, payload, writes)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """The checkpoints matching the arguments, newest checkpoint id first.

        Args:
            config: ``thread_id`` (None: every thread), optionally
                ``checkpoint_ns`` and ``checkpoint_id``.
            filter: Metadata that must match (equality per key).
            before: Only checkpoints whose id is below this config's.
            limit: At most this many.
        """
        if limit is not None and limit <= 0:
            return
        alias = self._read_alias()
        checkpoints = self._events(alias).filter(type=CHECKPOINT_TYPE.value)
        if config is not None:
            configurable = config["configurable"]
            checkpoints = checkpoints.filter(session_id=str(configurable["thread_id"]))
            if configurable.get("checkpoint_ns") is not None:
                checkpoints = checkpoints.filter(data__langgraph__ns=configurable["checkpoint_ns"])
            if checkpoint_id := get_checkpoint_id(config):
                checkpoints = checkpoints.filter(correlation_id=checkpoint_id)
        if before is not None and (before_id := get_checkpoint_id(before)):
            checkpoints = checkpoints.filter(correlation_id__lt=before_id)
        ordered = checkpoints.order_by("-correlation_id", "session_id", "-sequence_number")
        remaining = limit
        last: tuple[str, str] | None = None
        while True:
            page = ordered
            if last is not None:
                page = page.filter(
                    Q(correlation_id__lt=last[0])
                    | Q(correlation_id=last[0], session_id__gt=last[1])
                )
            with translate_errors("list"):
                rows = list(page.values_list("session_id", "data", "metadata")[:LIST_CHUNK_SIZE])
                matching = []
                for session_id, data, metadata in rows:
                    payload = _payload(data, metadata)
                    if filter:
                        metadata = _untyped(self.serde, payload["metadata"])
                        if any(metadata.get(k) != v for k, v in filter.items()):
                            continue
                    matching.append((session_id, payload))
                    if remaining is not None and len(matching) >= remaining:
                        break
                writes = self._writes_of(
                    alias, [(sid, p["ns"], p["checkpoint_id"]) for sid, p in matching]
                )
            _release_connections()
            for session_id, payload in matching:
                yield self._tuple(
                    session_id,
                    payload,
                    writes[(session_id, payload["ns"], payload["checkpoint_id"])],
                )
            if remaining is not None:
                remaining -= len(matching)
                if remaining <= 0:
                    return
            if len(rows) < LIST_CHUNK_SIZE:
                return
            last = (rows[-1][1][KEY]["checkpoint_id"], rows[-1][0])

    # ------------------------------------------------------------------ writes

    @_releasing
    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint (and the new messages of its ``messages`` channel) atomically.

        Returns:
            The config of the stored checkpoint.

        Raises:
            ValidationError: a value the database cannot store; nothing is written.
        """
        configurable = config["configurable"]
        thread_id = check_id(str(configurable["thread_id"]), "thread_id")
        ns = configurable.get("checkpoint_ns", "")
        parent = configurable.get("checkpoint_id")
        stored_metadata = get_checkpoint_metadata(config, metadata)
        run_id = self._run_of(thread_id, ns, checkpoint["id"], parent, stored_metadata)
        versions = checkpoint.get("channel_versions", {})
        values = checkpoint.get("channel_values", {})
        # Only channels that have a version have a value, as LangGraph's own savers load them.
        saved = {**checkpoint, "channel_values": {k: v for k, v in values.items() if k in versions}}
        checkpoint_event = core.Event.new(
            CHECKPOINT_TYPE,
            thread_id,
            id=_event_id(thread_id, ns, checkpoint["id"]),
            correlation_id=checkpoint["id"],
            run_id=run_id,
            data={
                KEY: {
                    "kind": "checkpoint",
                    "ns": ns,
                    "checkpoint_id": checkpoint["id"],
                    "parent": parent,
                    "source": stored_metadata.get("source"),
                    "step": stored_metadata.get("step"),
                }
            },
            metadata={
                "source": SOURCE,
                KEY: {
                    "checkpoint": _typed(self.serde, saved),
                    "metadata": _typed(self.serde, stored_metadata),
                },
            },
        )
        messages = values.get(MESSAGES_CHANNEL) if MESSAGES_CHANNEL in new_versions else None
        message_events = self._message_events(thread_id, messages)
        alias = self._write_alias()
        self._keep_session_fresh(thread_id)

        def work() -> builtins.list[core.Event]:
            # Re-putting a checkpoint id replaces it (as LangGraph's savers do).
            self._events(alias).filter(id=checkpoint_event.id).delete()
            return self._store.append_events([*message_events, checkpoint_event])

        # Which messages are new decides what usage counts; asked only when one reports usage.
        with_usage = [
            e.id for e in message_events if e.data["message"]["data"].get("usage_metadata")
        ]
        new_ids = self._new_ids(alias, with_usage) if with_usage else set()
        # The common case, a new checkpoint id, is one append (one statement, or one
        # batch with the new messages). Re-putting a stored checkpoint id replaces
        # it, as LangGraph's savers do: that rare case deletes and appends again.
        if message_events:
            stored = self._store.append_events([*message_events, checkpoint_event])[-1]
        else:
            stored = self._store.append_event(checkpoint_event)
        if (stored.data, stored.metadata.get(KEY)) != (
            checkpoint_event.data,
            checkpoint_event.metadata[KEY],
        ):
            write_transaction(alias, "put", work)
        if message_events:
            self._stored_messages.update(e.id for e in message_events)
            if new_ids:
                self._record_usage(thread_id, run_id, messages, message_events, new_ids)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def _run_of(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        parent: str | None,
        metadata: CheckpointMetadata,
    ) -> str:
        """The asm run id of the graph run that made this checkpoint.

        LangGraph's ``run_id`` when the metadata has one; otherwise each
        invocation starts with an ``input`` checkpoint, whose id names the
        run, and every later checkpoint inherits its parent's run.
        """
        run_id = _run_id_of(metadata)
        if run_id is None and metadata.get("source") != "input" and parent:
            run_id = self._runs.get(parent)
            if run_id is None:
                with translate_errors("put"):
                    run_id = (
                        self._events(self._read_alias())
                        .filter(
                            session_id=thread_id, type=CHECKPOINT_TYPE.value, correlation_id=parent
                        )
                        .values_list("run_id", flat=True)
                        .first()
                    )
        if run_id is None:
            run_id = derived_run_id(thread_id, ns, checkpoint_id)
        if len(self._runs) > 10_000:
            self._runs.clear()
        self._runs[checkpoint_id] = run_id
        return run_id

    def _message_events(self, thread_id: str, messages: Any) -> builtins.list[core.Event]:
        """Events for the messages of the ``messages`` channel not stored yet (by this process)."""
        if not isinstance(messages, list):
            return []
        events = []
        for position, message in enumerate(messages):
            if not isinstance(message, BaseMessage):
                continue
            event_id = _event_id(thread_id, "message", message.id or f"#{position}")
            if event_id in self._stored_messages:
                continue
            events.append(
                core.Event.new(
                    _message_event_type(message),
                    thread_id,
                    id=event_id,
                    data={
                        "content": _message_text(message),
                        "role": _ROLES.get(message.type, message.type),
                        "message": message_to_dict(message),
                    },
                    metadata={"source": SOURCE},
                )
            )
        return events

    def _new_ids(self, alias: str, ids: builtins.list[str]) -> set[str]:
        with translate_errors("put"):
            stored = set(
                m.Event.objects.using(alias).filter(id__in=ids).values_list("id", flat=True)
            )
        return set(ids) - stored

    def _record_usage(
        self,
        thread_id: str,
        run_id: str,
        messages: Any,
        events: builtins.list[core.Event],
        new_ids: set[str],
    ) -> None:
        """Add the usage of newly stored AI messages to the graph run's asm run."""
        if not record_runs_enabled():
            return
        by_id = {e.id: e for e in events}
        new_messages = [
            message
            for position, message in enumerate(messages)
            if isinstance(message, BaseMessage)
            and (event_id := _event_id(thread_id, "message", message.id or f"#{position}"))
            in new_ids
            and event_id in by_id
        ]
        found = message_usage(new_messages)
        if not found.turns:
            return
        finished = message_usage(messages[-1:]).finished
        record_run(
            RunRecord(
                session_id=thread_id,
                run_id=run_id,
                provider=found.provider or self.provider,
                status=core.RunStatus.COMPLETED if finished else core.RunStatus.RUNNING,
                model=found.model,
                token_usage=found.token_usage,
                turns=found.turns,
                framework=SOURCE,
            ),
            using=self.using,
        )

    @_releasing
    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store the pending writes of a task for the checkpoint of ``config``.

        A write already stored (same task and index) is kept, except the
        special channels (errors, interrupts, …), which are replaced, as in
        LangGraph's own savers.
        """
        configurable = config["configurable"]
        thread_id = check_id(str(configurable["thread_id"]), "thread_id")
        ns = configurable.get("checkpoint_ns", "")
        checkpoint_id = str(configurable["checkpoint_id"])
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        events = [
            core.Event.new(
                WRITE_TYPE,
                thread_id,
                id=_event_id(thread_id, ns, checkpoint_id, task_id, str(index)),
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
                metadata={"source": SOURCE, KEY: {"value": _typed(self.serde, value)}},
            )
            for channel, value, index in (
                (channel, value, WRITES_IDX_MAP.get(channel, position))
                for position, (channel, value) in enumerate(writes)
            )
        ]
        if not events:
            return
        alias = self._write_alias()
        self._keep_session_fresh(thread_id)

        def work() -> None:
            if replace:
                self._events(alias).filter(id__in=[e.id for e in events]).delete()
            self._store.append_events(events)

        write_transaction(alias, "put_writes", work)

    @_releasing
    def delete_thread(self, thread_id: str) -> None:
        """Delete the thread: its asm session with all its events and runs."""
        self._store.delete_session(str(thread_id))
        self._touched.pop(str(thread_id), None)

    @_releasing
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy the thread's checkpoints, pending writes and messages to another thread."""
        source, target = str(source_thread_id), check_id(str(target_thread_id), "thread_id")
        alias = self._write_alias()
        with translate_errors("copy_thread"):
            rows = list(
                self._events(alias)
                .filter(session_id=source)
                .order_by("sequence_number")
                .values_list("id", "type", "data", "metadata", "correlation_id", "run_id")
            )
        if not rows:
            return
        self._keep_session_fresh(target)
        copies = [
            core.Event.new(
                event_type,
                target,
                id=_copied_event_id(target, event_type, data, event_id),
                data=data,
                correlation_id=correlation_id,
                run_id=run_id,
                metadata=metadata,
            )
            for event_id, event_type, data, metadata, correlation_id, run_id in rows
        ]
        write_transaction(alias, "copy_thread", lambda: self._store.append_events(copies))

    @_releasing
    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Drop checkpoints of the threads: all but the latest per namespace, or all.

        The message events stay (they are the conversation, not checkpoints).

        Args:
            thread_ids: The threads.
            strategy: ``"keep_latest"`` or ``"delete"``.

        Raises:
            ValueError: an unknown strategy.
        """
        if strategy not in {"keep_latest", "delete"}:
            raise ValueError(f"unknown prune strategy {strategy!r}")
        alias = self._write_alias()
        for thread_id in thread_ids:

            def work(thread_id: str = str(thread_id)) -> None:
                payloads = self._events(alias).filter(
                    session_id=thread_id, type__in=[CHECKPOINT_TYPE.value, WRITE_TYPE.value]
                )
                keep: set[str] = set()
                if strategy == "keep_latest":
                    latest: dict[str, str] = {}
                    checkpoints = payloads.filter(type=CHECKPOINT_TYPE.value)
                    for data in checkpoints.values_list("data", flat=True):
                        ns, checkpoint_id = data[KEY]["ns"], data[KEY]["checkpoint_id"]
                        latest[ns] = max(latest.get(ns, checkpoint_id), checkpoint_id)
                    keep = set(latest.values())
                payloads.exclude(correlation_id__in=keep).delete()

            write_transaction(alias, "prune", work)

    @_releasing
    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their pending writes) that the given runs created."""
        if not run_ids:
            return
        alias = self._write_alias()

        def work() -> None:
            checkpoints = self._events(alias).filter(
                type=CHECKPOINT_TYPE.value, run_id__in=[str(r) for r in run_ids]
            )
            doomed = list(checkpoints.values_list("session_id", "correlation_id"))
            for thread_id, checkpoint_id in doomed:
                self._events(alias).filter(
                    session_id=thread_id,
                    correlation_id=checkpoint_id,
                    type__in=[CHECKPOINT_TYPE.value, WRITE_TYPE.value],
                ).delete()

        write_transaction(alias, "delete_for_runs", work)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Versions as LangGraph's own savers make them: ``<counter>.<random>``, increasing."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(str(current).split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # ------------------------------------------------------------------ async twins

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """See :meth:`get_tuple`."""
        return await run_in_worker(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """See :meth:`list` (read in a worker thread, one chunk at a time)."""
        iterator = self.list(config, filter=filter, before=before, limit=limit)
        while True:
            item = await run_in_worker(next, iterator, None)
            if item is None:
                return
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """See :meth:`put`."""
        return await run_in_worker(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """See :meth:`put_writes`."""
        await run_in_worker(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """See :meth:`delete_thread`."""
        await run_in_worker(self.delete_thread, thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """See :meth:`copy_thread`."""
        await run_in_worker(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """See :meth:`prune`."""
        await run_in_worker(self.prune, thread_ids, strategy=strategy)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """See :meth:`delete_for_runs`."""
        await run_in_worker(self.delete_for_runs, run_ids)


def _payload(data: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's or write's stored fields: the readable ones (``data``) and the
    serialised ones (``metadata``)."""
    return {**data[KEY], **metadata.get(KEY, {})}


def _copied_event_id(target: str, event_type: str, data: dict[str, Any], old_id: str) -> str:
    """The id an event gets in the target thread of a copy: the one this saver would give it."""
    payload = data.get(KEY)
    if isinstance(payload, dict) and payload.get("kind") == "checkpoint":
        return _event_id(target, payload["ns"], payload["checkpoint_id"])
    if isinstance(payload, dict) and payload.get("kind") == "write":
        return _event_id(
            target, payload["ns"], payload["checkpoint_id"], payload["task_id"], str(payload["idx"])
        )
    message_id = ((data.get("message") or {}).get("data") or {}).get("id")
    return _event_id(target, "message", message_id) if message_id else _event_id(target, old_id)


def _run_id_of(metadata: CheckpointMetadata) -> str | None:
    run_id = metadata.get("run_id") if isinstance(metadata, dict) else None
    return str(run_id) if run_id else None
