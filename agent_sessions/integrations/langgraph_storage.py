"""Where the LangGraph checkpointer's events are read and written.

:class:`~agent_sessions.integrations.langgraph.DjangoCheckpointSaver` decides
*what* to store (:mod:`.langgraph_codec` builds the events); this module
knows *how*, on the write path every writer shares
(:func:`agent_sessions.db.run_write`):

- on PostgreSQL a ``put`` is one statement (the new messages and the
  checkpoint, :func:`~agent_sessions.integrations.langgraph_pgsql.append_session_events`,
  a call of migration 0007's function, planned once per server connection)
  and a ``get_tuple`` one statement (the checkpoint with its pending writes,
  :func:`~agent_sessions.integrations.langgraph_pgsql.read_checkpoint_events`);
- other databases, and the rare races the statement leaves to the store
  (a concurrent append of the same new id, a counter found behind), go
  through :class:`~agent_sessions.store.DjangoSessionStore` and the ORM.

It also closes the connections of the short-lived threads LangGraph calls
the saver from (:func:`releasing`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.db import RetryTransaction, run_write, translate_errors
from agent_sessions.errors import StorageError
from agent_sessions.integrations.langgraph_codec import (
    CHECKPOINT_TYPE,
    KEY,
    SOURCE,
    WRITE_TYPE,
    payload,
)
from agent_sessions.integrations.langgraph_pgsql import (
    append_session_events,
    read_checkpoint_events,
    read_checkpoint_page,
)
from agent_sessions.integrations.pgsql import is_postgres
from agent_sessions.sequences import AppendFunctionMissing
from agent_sessions.store import DjangoSessionStore

__all__ = [
    "append_new",
    "checkpoint_page",
    "read_checkpoint",
    "release_connections",
    "releasing",
    "saver_events",
    "saver_records",
    "stored_checkpoint",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S")

#: SQLSTATE of a unique violation: a concurrent append of the same new id, or a
#: counter behind its events (both left to the store's batch append).
_UNIQUE_VIOLATION = "23505"


def release_connections() -> None:
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


def releasing(
    method: Callable[Concatenate[_S, _P], _R],
) -> Callable[Concatenate[_S, _P], _R]:
    """Run the method, then :func:`release_connections`."""

    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        finally:
            release_connections()

    functools.update_wrapper(wrapper, method)
    return wrapper


def saver_events(alias: str) -> Any:
    """The events the saver wrote (checkpoints, writes, messages), as a queryset."""
    return m.Event.objects.using(alias).filter(metadata__source=SOURCE)


def saver_records(alias: str) -> Any:
    """The saver's checkpoint and pending-write events, as a queryset.

    Told apart by ``data["langgraph"]`` (small, readable fields), not by
    ``metadata``, which holds the serialised payload: PostgreSQL would
    decompress it for every row just to test the filter.
    """
    return m.Event.objects.using(alias).filter(data__has_key=KEY)


# ---------------------------------------------------------------------------- reads


def read_checkpoint(
    alias: str, thread_id: str, ns: str, checkpoint_id: str | None
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A checkpoint's payload (None when there is none) and its pending writes' payloads.

    Args:
        alias: The database to read.
        thread_id: The thread (asm session).
        ns: The checkpoint namespace.
        checkpoint_id: The checkpoint; None: the thread's latest in ``ns``.
    """
    with translate_errors("get_tuple"):
        if is_postgres(alias):
            rows = read_checkpoint_events(
                connections[alias],
                session_id=thread_id,
                ns=ns,
                checkpoint_id=checkpoint_id,
                key=KEY,
                checkpoint_type=CHECKPOINT_TYPE.value,
                write_type=WRITE_TYPE.value,
            )
        else:
            rows = _read_checkpoint_orm(alias, thread_id, ns, checkpoint_id)
    checkpoint = None
    writes = []
    for is_checkpoint, data, metadata in rows:
        if is_checkpoint:
            checkpoint = payload(data, metadata)
        else:
            writes.append(payload(data, metadata))
    return checkpoint, writes


def _read_checkpoint_orm(
    alias: str, thread_id: str, ns: str, checkpoint_id: str | None
) -> list[tuple[bool, dict[str, Any], dict[str, Any] | None]]:
    events = m.Event.objects.using(alias).filter(session_id=thread_id, data__langgraph__ns=ns)
    if not checkpoint_id:
        checkpoint_id = (
            events.filter(type=CHECKPOINT_TYPE.value)
            .order_by("-correlation_id")
            .values_list("correlation_id", flat=True)
            .first()
        )
        if checkpoint_id is None:
            return []
    # The checkpoint and its pending writes share the correlation id: one query.
    rows = (
        events.filter(
            correlation_id=checkpoint_id, type__in=[CHECKPOINT_TYPE.value, WRITE_TYPE.value]
        )
        .order_by("sequence_number")
        .values_list("type", "data", "metadata")
    )
    # The data__langgraph__ns filter leaves out rows whose data is NULL.
    return [
        (event_type == CHECKPOINT_TYPE.value, (data or {})[KEY], (metadata or {}).get(KEY))
        for event_type, data, metadata in rows
    ]


def checkpoint_page(
    alias: str,
    *,
    thread_id: str | None,
    ns: str | None,
    checkpoint_id: str | None,
    before_id: str | None,
    after: tuple[str, str] | None,
    size: int,
) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """One page of checkpoints, newest checkpoint id first, with their pending writes.

    One statement on PostgreSQL
    (:func:`~agent_sessions.integrations.langgraph_pgsql.read_checkpoint_page`),
    two elsewhere.

    Args:
        alias: The database to read.
        thread_id: Only this thread (None: every thread).
        ns: Only this namespace (None: every namespace).
        checkpoint_id: Only this checkpoint.
        before_id: Only checkpoints whose id is below this one.
        after: The (checkpoint id, thread id) of the previous page's last row.
        size: At most this many rows.

    Returns:
        (thread id, the checkpoint's payload, its writes' payloads) each.
    """
    if is_postgres(alias):
        filters = {
            "thread_id": thread_id,
            "ns": ns,
            "checkpoint_id": checkpoint_id or None,
            "before_id": before_id or None,
            "after_id": after[0] if after is not None else None,
            "after_session": after[1] if after is not None else None,
        }
        with translate_errors("list"):
            rows = read_checkpoint_page(
                connections[alias],
                filters=filters,
                size=size,
                key=KEY,
                checkpoint_type=CHECKPOINT_TYPE.value,
                write_type=WRITE_TYPE.value,
            )
        return [
            (sid, payload(data, metadata), [payload(d, m) for d, m in writes])
            for sid, data, metadata, writes in rows
        ]
    checkpoints = saver_records(alias).filter(type=CHECKPOINT_TYPE.value)
    if thread_id is not None:
        checkpoints = checkpoints.filter(session_id=thread_id)
    if ns is not None:
        checkpoints = checkpoints.filter(data__langgraph__ns=ns)
    if checkpoint_id:
        checkpoints = checkpoints.filter(correlation_id=checkpoint_id)
    if before_id:
        checkpoints = checkpoints.filter(correlation_id__lt=before_id)
    if after is not None:
        checkpoints = checkpoints.filter(
            Q(correlation_id__lt=after[0]) | Q(correlation_id=after[0], session_id__gt=after[1])
        )
    ordered = checkpoints.order_by("-correlation_id", "session_id", "-sequence_number")
    with translate_errors("list"):
        found = list(ordered.values_list("session_id", "data", "metadata")[:size])
    page = [(sid, payload(data[KEY], metadata.get(KEY))) for sid, data, metadata in found]
    writes = _writes_of(alias, [(sid, p["ns"], p["checkpoint_id"]) for sid, p in page])
    return [(sid, p, writes[(sid, p["ns"], p["checkpoint_id"])]) for sid, p in page]


def _writes_of(
    alias: str, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """The pending writes' payloads of each (thread, namespace, checkpoint id)."""
    found: dict[tuple[str, str, str], list[dict[str, Any]]] = {key: [] for key in keys}
    if not found:
        return found
    # Two IN lists (usually one thread) plan far faster than an OR per pair;
    # pairs that are not asked for are dropped below.
    rows = saver_records(alias).filter(
        session_id__in={thread_id for thread_id, _ns, _id in found},
        correlation_id__in={checkpoint_id for _thread, _ns, checkpoint_id in found},
        type=WRITE_TYPE.value,
    )
    with translate_errors("list"):
        for session_id, data, metadata in rows.values_list("session_id", "data", "metadata"):
            write = payload(data[KEY], metadata.get(KEY))
            key = (session_id, write["ns"], write["checkpoint_id"])
            if key in found:
                found[key].append(write)
    return found


def stored_checkpoint(alias: str, event_id: str) -> tuple[Any, Any] | None:
    """The stored ``(data, metadata["langgraph"])`` of a checkpoint event, or None."""
    with translate_errors("put"):
        row = m.Event.objects.using(alias).filter(id=event_id).values_list("data", "metadata")
        found = row.first()
    return None if found is None else (found[0], (found[1] or {}).get(KEY))


# ---------------------------------------------------------------------------- writes


class _AppendFunctionGone(RetryTransaction):
    """Migration 0007's function was dropped since it was looked up; run the put again."""


def append_new(
    alias: str,
    store: DjangoSessionStore,
    thread_id: str,
    events: Sequence[core.Event],
    *,
    watched: Iterable[str],
) -> set[str]:
    """Store the events of one thread atomically, skipping ids already stored.

    Args:
        alias: The write database.
        store: The store for the portable path.
        thread_id: The thread (asm session) of every event.
        events: The saver's own validated events, distinct ids (the event
            pipeline may change them in place).
        watched: The ids whose newness the caller needs to know.

    Returns:
        Which of the ``watched`` ids were stored by this call.

    Raises:
        ValidationError: a value the database cannot store (nothing written).
        StorageError: the database failed (nothing written).
    """
    watched = set(watched)
    if is_postgres(alias):

        def append(connection: BaseDatabaseWrapper) -> dict[str, int]:
            try:
                return append_session_events(connection, thread_id, events)
            except AppendFunctionMissing as exc:
                raise _AppendFunctionGone from exc

        try:
            numbers = run_write(alias, "put", append, single_statement=True)
            return watched & set(numbers)
        except StorageError as exc:
            if exc.details.get("sqlstate") != _UNIQUE_VIOLATION:
                raise
    # Which are new is decided before the append (the store returns stored and
    # new events alike); a concurrent writer of the same ids may be counted twice.
    known = _stored_ids(alias, sorted(watched)) if watched else set()
    if len(events) == 1:
        store.append_event(events[0])
    else:
        store.append_events(events)
    return watched - known


def _stored_ids(alias: str, ids: Sequence[str]) -> set[str]:
    with translate_errors("put"):
        return set(m.Event.objects.using(alias).filter(id__in=ids).values_list("id", flat=True))
