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
idle stream holds no database connection and no thread; each read is one
short access in a worker thread; waiting is done by the process's shared
listener) and :func:`stream_sync` for WSGI (a worker thread per stream, as
any long response under WSGI).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field

from django.db import close_old_connections

from agent_sessions.aio import run_in_worker
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
    "StreamState",
    "event_frame",
    "open_streams",
    "stream_async",
    "stream_sync",
]

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

    def read(self) -> EventWindow:
        """One batch after :attr:`position` (synchronous: one short database access)."""
        return read_window(
            self.store,
            self.session_id,
            self.event_filter,
            after=self.position,
            limit=STREAM_BATCH_SIZE,
        )

    def frames(self, window: EventWindow) -> bytes:
        """The frames of a batch (possibly none); advances :attr:`position`."""
        chunk = b"".join(event_frame(event) for event in window.events)
        self.position = window.position
        if chunk:
            self.last_write = time.monotonic()
        return chunk

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


def _read_closing(state: StreamState) -> EventWindow:
    # The WSGI driver runs in the request's thread: close what CONN_MAX_AGE
    # says must not outlive one read, so an idle stream holds no connection.
    try:
        return state.read()
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
    while True:
        window: EventWindow = await run_in_worker(state.read)
        if chunk := state.frames(window):
            yield chunk
            if len(window.events) >= STREAM_BATCH_SIZE:
                continue
        timeout = state.wait_seconds()
        if timeout is None:
            return
        if timeout > 0:
            await wait_for_append_async(
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
    while True:
        window = _read_closing(state)
        if chunk := state.frames(window):
            yield chunk
            if len(window.events) >= STREAM_BATCH_SIZE:
                continue
        timeout = state.wait_seconds()
        if timeout is None:
            return
        if timeout > 0:
            wait_for_append(state.alias, state.session_id, after=state.position, timeout=timeout)
            close_old_connections()
        if keepalive := state.keepalive():
            yield keepalive
