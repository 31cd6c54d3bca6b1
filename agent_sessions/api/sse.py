"""The Server-Sent Events stream of one session's events (CONTRACT §13).

Each event is one frame::

    id: 42
    event: message_sent
    data: {"id": "evt_…", "type": "message_sent", "session_id": "ses_…", …}

The ``id`` is the event's sequence number, which a reconnecting
``EventSource`` sends back as ``Last-Event-ID``: the stream resumes right
after it, so across any number of reconnects every event arrives exactly
once and in order. ``: keepalive`` comments keep proxies from closing an idle
stream.

Two drivers share :class:`StreamState`: :func:`stream_async` for ASGI (an
idle stream holds no database connection and no thread; waiting is done by
the process's shared listener, and each read is one short access on the
process's one :class:`StreamReader` thread) and :func:`stream_sync` for WSGI
(a worker thread per stream, as any long response under WSGI). A stream
reads only to catch up and when the listener wakes it: an idle stream's
heartbeats cost no query.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import os
import queue
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from django.db import close_old_connections

from agent_sessions.api.reading import EventFilter, EventWindow, read_window
from agent_sessions.api.waiting import (
    release_request_thread,
    wait_for_append,
    wait_for_append_async,
)
from agent_sessions.core import Event
from agent_sessions.store import DjangoSessionStore

__all__ = [
    "SSE_EVENT_FIELDS",
    "Batch",
    "StreamReader",
    "StreamState",
    "event_frame",
    "open_streams",
    "read_batch",
    "run_in_reader",
    "stream_async",
    "stream_sync",
]

P = ParamSpec("P")
T = TypeVar("T")

#: The keys of a frame's ``data`` object, in this order.
SSE_EVENT_FIELDS = (
    "id",
    "type",
    "session_id",
    "run_id",
    "sequence_number",
    "timestamp",
    "data",
    "metadata",
    "provider",
    "correlation_id",
)
#: Events read per query while catching up.
STREAM_BATCH_SIZE = 200
KEEPALIVE = b": keepalive\n\n"

#: Streams of this process that have started and not ended (see :func:`open_streams`).
_open_streams = 0
_count_lock = threading.Lock()

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def event_frame(event: Event) -> bytes:
    """One SSE frame for a stored event (``data`` is one line: JSON escapes newlines)."""
    record = event.to_dict()
    payload = _dumps({key: record[key] for key in SSE_EVENT_FIELDS})
    # A type written by a newer writer is free text; a line break would end the field.
    name = " ".join(str(event.type).splitlines())
    return f"id: {event.sequence_number}\nevent: {name}\ndata: {payload}\n\n".encode()


@dataclass
class StreamState:
    """Where one stream is, and its settings.

    Attributes:
        store: Reads events and the counter (on the database appends go to).
        alias: That database's alias (the listener to wait on).
        session_id: The session streamed.
        event_filter: ``run_id``/``type`` filters.
        position: Every matching event up to this sequence number was sent.
        heartbeat: Seconds between keepalive comments on an idle stream.
        max_seconds: End the stream after this long (None: never); the
            client reconnects and resumes.
        retry_ms: The reconnection delay announced to ``EventSource``.
    """

    store: DjangoSessionStore
    alias: str
    session_id: str
    event_filter: EventFilter
    position: int
    heartbeat: float
    max_seconds: float | None
    retry_ms: int
    started: float = field(default_factory=time.monotonic)
    last_write: float = field(default_factory=time.monotonic)

    def opening(self) -> bytes:
        """The first bytes: the reconnection delay, and a comment that flushes headers."""
        return (
            f"retry: {self.retry_ms}\n: stream {self.session_id} after {self.position}\n\n".encode()
        )

    def advance(self, batch: Batch) -> bytes:
        """Take a batch read at :attr:`position`: move past it and return its frames."""
        self.position = batch.window.position
        if batch.frames:
            self.last_write = time.monotonic()
        return batch.frames

    def wait_seconds(self) -> float | None:
        """How long the next wait may last; None when the stream's time is up."""
        now = time.monotonic()
        wait = max(0.0, self.last_write + self.heartbeat - now)
        if self.max_seconds is None:
            return wait
        left = self.started + self.max_seconds - now
        return None if left <= 0 else min(wait, left)

    def keepalive(self) -> bytes:
        """A keepalive comment when nothing was written for a heartbeat interval, else b"".

        Counted from the last write, not the last wake-up: a filtered stream
        woken again and again by events it leaves out still sends them.
        """
        now = time.monotonic()
        if now - self.last_write < self.heartbeat:
            return b""
        self.last_write = now
        return KEEPALIVE


@dataclass(frozen=True, slots=True)
class Batch:
    """Events read after a position, and their frames, encoded once for every stream."""

    window: EventWindow
    frames: bytes


def read_batch(
    store: DjangoSessionStore, session_id: str, event_filter: EventFilter, after: int
) -> Batch:
    """Read and encode one batch (synchronous: one short database access, then JSON)."""
    window = read_window(store, session_id, event_filter, after=after, limit=STREAM_BATCH_SIZE)
    return Batch(window, b"".join(event_frame(event) for event in window.events))


#: A queued read: its future, the callable and its arguments.
_Job = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class StreamReader(Executor):
    """The process's one thread for the event endpoints' reads; holds a connection only while busy.

    Every read of the streams and long-polls (their opening checks too) is
    queued here and run in order. Why one thread: the thread's connection is
    then the only one that all the streams of a process ever use for reading
    (the listener's is the other), whatever the number of streams and
    whatever ``CONN_MAX_AGE`` says, so a process serving a thousand streams
    holds at most two connections.

    Connections follow ``CONN_MAX_AGE`` at the grain of a *run* of reads,
    as they do at the grain of a request in Django: the thread keeps its
    connection while more reads are queued behind the one it finished (a
    fan-out that wakes many streams, a burst of clients opening) and
    applies ``CONN_MAX_AGE`` once the queue is empty. With ``CONN_MAX_AGE =
    0`` an idle reader therefore holds no connection, and a burst of
    reads pays for one connection instead of one each. A read that fails
    applies ``CONN_MAX_AGE`` at once, so a broken connection is not reused.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="asm-stream-read", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; its result or exception comes back on the future."""
        future: Future[T] = Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args, kwargs = self._queue.get()
            failed = False
            # A cancelled read (its client left before it ran) is skipped.
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    failed = True
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            if failed or self._queue.empty():
                close_old_connections()


#: This process's reader (created on first use; a forked child creates its own).
_reader: tuple[int, StreamReader] | None = None
_reader_lock = threading.Lock()


def _get_reader() -> StreamReader:
    global _reader
    pid = os.getpid()
    with _reader_lock:
        if _reader is None or _reader[0] != pid:
            _reader = (pid, StreamReader())
        return _reader[1]


async def run_in_reader(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one short read of the event endpoints on the process's :class:`StreamReader`.

    The streams' reads, their opening checks (access, session known) and the
    long-poll's reads all run there, one after another. Streams at the same
    position share a read (:func:`_shared_batch`).
    """
    # The caller's context variables go along, as sync_to_async would carry them.
    context = contextvars.copy_context()
    future = _get_reader().submit(context.run, func, *args, **kwargs)
    # Cancelling the caller cancels a read that has not started yet.
    return await asyncio.wrap_future(future)


#: Reads in flight under ASGI, by (loop, alias, session, filter, position).
_inflight: dict[tuple[Any, ...], asyncio.Future[Batch]] = {}


def _forget(key: tuple[Any, ...], future: asyncio.Future[Batch]) -> None:
    _inflight.pop(key, None)
    if not future.cancelled():
        future.exception()  # retrieved: no "never retrieved" warning when nobody awaits it


async def _shared_batch(state: StreamState) -> Batch:
    """The batch after the stream's position, read once for all streams at the same place.

    Why: when an append wakes every stream of a session (a page open in many
    tabs, many viewers of one agent), they all stand at the same position
    with the same filter; one database read and one JSON encoding serve them
    all. A stream joining a read that began a moment before an append may
    miss that append in this batch; its next wait is then answered at once,
    because the listener re-checks a session when a waiter registers.
    """
    key = (
        asyncio.get_running_loop(),
        state.alias,
        state.session_id,
        state.event_filter,
        state.position,
    )
    future = _inflight.get(key)
    if future is None:
        future = asyncio.ensure_future(
            run_in_reader(
                read_batch, state.store, state.session_id, state.event_filter, state.position
            )
        )
        _inflight[key] = future
        future.add_done_callback(functools.partial(_forget, key))
    # Shielded: one client leaving must not cancel the read the others wait for.
    return await asyncio.shield(future)


def _read_closing(state: StreamState) -> Batch:
    # The WSGI driver runs in the request's thread: close what CONN_MAX_AGE
    # says must not outlive one read, so an idle stream holds no connection.
    try:
        return read_batch(state.store, state.session_id, state.event_filter, state.position)
    finally:
        close_old_connections()


def open_streams() -> int:
    """How many streams this process is serving now (for monitoring, and the leak tests)."""
    return _open_streams


async def stream_async(state: StreamState) -> AsyncIterator[bytes]:
    """The stream under ASGI; ends when the client disconnects (the task is cancelled)."""
    global _open_streams
    with _count_lock:
        _open_streams += 1
    try:
        async with aclosing(_stream_async(state)) as chunks:
            async for chunk in chunks:
                yield chunk
    finally:
        with _count_lock:
            _open_streams -= 1


async def _stream_async(state: StreamState) -> AsyncGenerator[bytes]:
    release_request_thread()
    yield state.opening()
    woken = True  # catch up first
    while True:
        if woken:
            batch = await _shared_batch(state)
            if chunk := state.advance(batch):
                yield chunk
                if len(batch.window.events) >= STREAM_BATCH_SIZE:
                    continue
        timeout = state.wait_seconds()
        if timeout is None:
            return
        # A wait that times out is not followed by a read: an idle stream
        # reads nothing, however many heartbeats pass. Nothing is missed: the
        # listener checks a session when a waiter registers, so a commit that
        # raced the timeout wakes the next wait at once.
        woken = timeout > 0 and await wait_for_append_async(
            state.alias, state.session_id, after=state.position, timeout=timeout
        )
        if keepalive := state.keepalive():
            yield keepalive


def stream_sync(state: StreamState) -> Iterator[bytes]:
    """The stream under WSGI; ends when a write to the gone client fails."""
    global _open_streams
    with _count_lock:
        _open_streams += 1
    try:
        yield from _stream_sync(state)
    finally:
        with _count_lock:
            _open_streams -= 1


def _stream_sync(state: StreamState) -> Iterator[bytes]:
    yield state.opening()
    woken = True
    while True:
        if woken:
            batch = _read_closing(state)
            if chunk := state.advance(batch):
                yield chunk
                if len(batch.window.events) >= STREAM_BATCH_SIZE:
                    continue
        timeout = state.wait_seconds()
        if timeout is None:
            return
        woken = timeout > 0 and wait_for_append(
            state.alias, state.session_id, after=state.position, timeout=timeout
        )
        if keepalive := state.keepalive():
            yield keepalive
