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

This module decides what each call stores and returns; the event shapes are
in :mod:`.langgraph_codec`, the reads and writes (one statement per ``put``
and per ``get_tuple`` on PostgreSQL) in :mod:`.langgraph_storage`.

Needs ``pip install django-agent-sessions[langgraph]``.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from agent_sessions.integrations import missing_extra

# The framework first: without the extra, this is the error users see.
try:
    from langchain_core.messages import BaseMessage
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
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("langgraph", exc) from exc

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.db import db_for_read, db_for_write, translate_errors
from agent_sessions.integrations.langgraph_codec import (
    CHECKPOINT_TYPE,
    KEY,
    MESSAGES_CHANNEL,
    SOURCE,
    WRITE_TYPE,
    checkpoint_event,
    checkpoint_tuple,
    copied_event_id,
    message_event_id,
    message_events,
    run_id_of,
    untyped,
    write_events,
)
from agent_sessions.integrations.langgraph_storage import (
    append_new,
    checkpoint_page,
    read_checkpoint,
    release_connections,
    releasing,
    saver_events,
    saver_records,
    stored_checkpoint,
)
from agent_sessions.integrations.payload_log import create_or_touch_session, write_transaction
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

#: Refresh ``asm_sessions.updated_at`` (what retention ages by) at most this often, in seconds.
TOUCH_INTERVAL_SECONDS = 60.0
#: Checkpoints read per query by :meth:`DjangoCheckpointSaver.list`.
LIST_CHUNK_SIZE = 100


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
        # One statement: a stored thread (a saver of another process, or a new
        # saver resuming it) gets only its updated_at; a missing one (first use,
        # or another process's delete_thread) is created.
        create_or_touch_session(
            core.Session.new(self.agent_id, id=thread_id, metadata={"framework": SOURCE}),
            using=self.using,
        )
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[thread_id] = now

    # ------------------------------------------------------------------ reads

    @releasing
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint of ``config`` (its ``checkpoint_id``, else the thread's latest
        in the namespace) with its pending writes, or None."""
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        stored, writes = read_checkpoint(
            self._read_alias(),
            thread_id,
            configurable.get("checkpoint_ns", ""),
            get_checkpoint_id(config),
        )
        if stored is None:
            return None
        return checkpoint_tuple(self.serde, thread_id, stored, writes)

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
        configurable = config["configurable"] if config is not None else {}
        thread_id = configurable.get("thread_id")
        remaining = limit
        last: tuple[str, str] | None = None
        while True:
            page = checkpoint_page(
                alias,
                thread_id=None if thread_id is None else str(thread_id),
                ns=configurable.get("checkpoint_ns"),
                checkpoint_id=get_checkpoint_id(config) if config is not None else None,
                before_id=get_checkpoint_id(before) if before is not None else None,
                after=last,
                size=LIST_CHUNK_SIZE,
            )
            matching = []
            for session_id, stored, writes in page:
                if filter:
                    metadata = untyped(self.serde, stored["metadata"])
                    if any(metadata.get(k) != v for k, v in filter.items()):
                        continue
                matching.append((session_id, stored, writes))
                if remaining is not None and len(matching) >= remaining:
                    break
            release_connections()
            for session_id, stored, writes in matching:
                yield checkpoint_tuple(self.serde, session_id, stored, writes)
            if remaining is not None:
                remaining -= len(matching)
                if remaining <= 0:
                    return
            if len(page) < LIST_CHUNK_SIZE:
                return
            last = (page[-1][1]["checkpoint_id"], page[-1][0])

    # ------------------------------------------------------------------ writes

    @releasing
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
        snapshot = checkpoint_event(
            self.serde, thread_id, ns, checkpoint, parent, stored_metadata, run_id
        )
        values = checkpoint.get("channel_values", {})
        messages = values.get(MESSAGES_CHANNEL) if MESSAGES_CHANNEL in new_versions else None
        new_messages = message_events(thread_id, messages, self._stored_messages)
        # Which messages are new decides what usage counts.
        with_usage = [e.id for e in new_messages if e.data["message"]["data"].get("usage_metadata")]
        alias = self._write_alias()
        self._keep_session_fresh(thread_id)
        # The common case, a new checkpoint id, is one statement on PostgreSQL
        # (one batch elsewhere) with the new messages.
        expected = (snapshot.data, snapshot.metadata[KEY])
        events = [*new_messages, snapshot]
        new_ids = append_new(
            alias, self._store, thread_id, events, watched=[*with_usage, snapshot.id]
        )
        if snapshot.id not in new_ids and stored_checkpoint(alias, snapshot.id) != expected:
            # Re-putting a stored checkpoint id replaces it, as LangGraph's savers do.
            def replace() -> None:
                saver_events(alias).filter(id=snapshot.id).delete()
                self._store.append_event(snapshot)

            write_transaction(alias, "put", replace)
        if new_messages:
            self._stored_messages.update(e.id for e in new_messages)
            if len(self._stored_messages) > 100_000:
                self._stored_messages.clear()
            if with_usage and new_ids.intersection(with_usage):
                self._record_usage(thread_id, run_id, messages, new_ids)
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
        run_id = run_id_of(metadata)
        if run_id is None and metadata.get("source") != "input" and parent:
            run_id = self._runs.get(parent)
            if run_id is None:
                with translate_errors("put"):
                    run_id = (
                        saver_records(self._read_alias())
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

    def _record_usage(self, thread_id: str, run_id: str, messages: Any, new_ids: set[str]) -> None:
        """Add the usage of newly stored AI messages to the graph run's asm run."""
        if not record_runs_enabled():
            return
        new_messages = [
            message
            for position, message in enumerate(messages)
            if isinstance(message, BaseMessage)
            and message_event_id(thread_id, message, position) in new_ids
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

    @releasing
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
        events = write_events(
            self.serde,
            thread_id,
            configurable.get("checkpoint_ns", ""),
            str(configurable["checkpoint_id"]),
            writes,
            task_id,
            task_path,
        )
        if not events:
            return
        alias = self._write_alias()
        self._keep_session_fresh(thread_id)
        if not all(channel in WRITES_IDX_MAP for channel, _ in writes):
            append_new(alias, self._store, thread_id, events, watched=())
            return

        def replace() -> None:
            saver_events(alias).filter(id__in=[e.id for e in events]).delete()
            self._store.append_events(events)

        write_transaction(alias, "put_writes", replace)

    @releasing
    def delete_thread(self, thread_id: str) -> None:
        """Delete the thread: its asm session with all its events and runs."""
        self._store.delete_session(str(thread_id))
        self._touched.pop(str(thread_id), None)

    @releasing
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy the thread's checkpoints, pending writes and messages to another thread."""
        source, target = str(source_thread_id), check_id(str(target_thread_id), "thread_id")
        alias = self._write_alias()
        with translate_errors("copy_thread"):
            rows = list(
                saver_events(alias)
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
                id=copied_event_id(target, event_type, data, event_id),
                data=data,
                correlation_id=correlation_id,
                run_id=run_id,
                metadata=metadata,
            )
            for event_id, event_type, data, metadata, correlation_id, run_id in rows
        ]
        write_transaction(alias, "copy_thread", lambda: self._store.append_events(copies))

    @releasing
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
                payloads = saver_records(alias).filter(
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

    @releasing
    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their pending writes) that the given runs created."""
        if not run_ids:
            return
        alias = self._write_alias()

        def work() -> None:
            checkpoints = saver_records(alias).filter(
                type=CHECKPOINT_TYPE.value, run_id__in=[str(r) for r in run_ids]
            )
            doomed = list(checkpoints.values_list("session_id", "correlation_id"))
            for thread_id, checkpoint_id in doomed:
                saver_records(alias).filter(
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
