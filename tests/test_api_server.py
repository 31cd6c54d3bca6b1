"""The SSE stream served by a real uvicorn process to many concurrent clients (issue #13).

Events are appended by other processes; clients drop their connections on
purpose and reconnect with ``Last-Event-ID``, the server ends streams on its
own (``STREAM_MAX_SECONDS``) and is killed and restarted once. Every client
must still see every event it asked for exactly once, in order.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agent_sessions.core import Event, Session
from agent_sessions.store import DjangoSessionStore
from tests.api_support import (
    AsgiServer,
    SSEParser,
    event_type,
    server_db_connections,
    start_writer,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PERMISSION = {"API_PERMISSION": "tests.api_support.allow_all"}


@pytest.fixture
def server() -> Iterator[AsgiServer]:
    """A server that ends every stream after 1.5 s (clients must reconnect and resume)."""
    server = AsgiServer(
        agent_sessions={**PERMISSION, "STREAM_MAX_SECONDS": 1.5, "STREAM_HEARTBEAT_SECONDS": 0.5}
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def idle_server() -> Iterator[AsgiServer]:
    """A server with the default stream settings (streams last until the client leaves)."""
    server = AsgiServer(agent_sessions=PERMISSION)
    server.start()
    yield server
    server.stop()


def stream_url(server: AsgiServer, session_id: str, query: str = "") -> str:
    return f"{server.url}/agent-sessions/sessions/{session_id}/events/stream{query}"


class Reader:
    """One client: reads a stream, drops it now and then, reconnects with Last-Event-ID."""

    def __init__(self, url: str, expected: list[int], seed: int) -> None:
        self.url = url
        self.expected = expected
        self.received: list[int] = []
        self.connections = 0
        self.client_drops = 0
        self.rng = random.Random(seed)

    async def run(self, client: httpx.AsyncClient, deadline: float) -> None:
        last_id: str | None = None
        while len(self.received) < len(self.expected) and time.monotonic() < deadline:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            drop_after = self.rng.randint(2, 9)
            try:
                async with client.stream("GET", self.url, headers=headers) as response:
                    assert response.status_code == 200, await response.aread()
                    self.connections += 1
                    parser = SSEParser()
                    this_connection = 0
                    async for text in response.aiter_text():
                        for frame in parser.feed(text):
                            if "id" in frame:
                                self.received.append(int(frame["id"]))
                                last_id = frame["id"]
                                this_connection += 1
                            if this_connection >= drop_after:
                                # Hang up mid-chunk: frames already received after
                                # this one are discarded and must be sent again.
                                break
                        if this_connection >= drop_after:
                            self.client_drops += 1
                            break
            except httpx.TransportError:
                # The server was killed; it comes back on the same port.
                await asyncio.sleep(0.05)


def test_many_clients_get_every_event_exactly_once_in_order_across_drops(
    server: AsgiServer,
) -> None:
    store = DjangoSessionStore()
    sessions = [Session.new("streamer") for _ in range(4)]
    for session in sessions:
        store.save_session(session)
    count = 45
    everything = list(range(1, count + 1))
    tools = [n for n in everything if event_type(n) == "tool_call_started"]
    readers: list[Reader] = []
    for index, session in enumerate(sessions):
        for copy in range(5):
            readers.append(
                Reader(stream_url(server, session.id), everything, seed=index * 10 + copy)
            )
        readers.append(
            Reader(stream_url(server, session.id, "?type=tool_call_started"), tools, seed=index)
        )
    writers = [
        start_writer([s.id for s in sessions[:2]], count, 0.05),
        start_writer([s.id for s in sessions[2:]], count, 0.05),
    ]
    restarted = threading.Event()

    def restart_midway() -> None:
        time.sleep(1.0)
        server.kill()
        server.start()
        restarted.set()

    restarter = threading.Thread(target=restart_midway)

    async def read_all() -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        timeout = httpx.Timeout(10.0)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            deadline = time.monotonic() + 60
            await asyncio.gather(*(reader.run(client, deadline) for reader in readers))

    restarter.start()
    try:
        asyncio.run(read_all())
    finally:
        restarter.join()
        for writer in writers:
            assert writer.wait(timeout=60) == 0
    assert restarted.is_set()
    for reader in readers:
        assert reader.received == reader.expected, reader.url
        # A reader keeps at most 9 events per connection, so it resumed at least this often.
        assert reader.connections >= -(-len(reader.expected) // 9)
    assert sum(reader.client_drops for reader in readers) >= len(readers)


def _open_idle_streams(server: AsgiServer, session_id: str, count: int) -> dict[str, Any]:
    """Open ``count`` streams, check the server while idle, append one event, read it."""
    observed: dict[str, Any] = {}

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=count + 10)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(20.0)) as client:
            got: list[list[str]] = [[] for _ in range(count)]

            async def one(index: int) -> None:
                async with client.stream("GET", stream_url(server, session_id)) as response:
                    parser = SSEParser()
                    async for text in response.aiter_text():
                        for frame in parser.feed(text):
                            if "id" in frame:
                                got[index].append(frame["id"])
                        if got[index]:
                            return

            tasks = [asyncio.create_task(one(i)) for i in range(count)]
            opened = await asyncio.to_thread(
                wait_until, lambda: server.stats()["open_streams"] >= count, timeout=30
            )
            assert opened, server.stats()
            await asyncio.sleep(1.0)  # idle: nothing to send, only keepalives
            observed["idle_stats"] = await asyncio.to_thread(server.stats)
            observed["idle_connections"] = await asyncio.to_thread(_peak_connections, 1.0)
            peak = asyncio.create_task(asyncio.to_thread(_peak_connections, 1.0))
            await asyncio.to_thread(_append_closing, session_id)
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
            observed["fanout_connections"] = await peak
            observed["received"] = got

    asyncio.run(scenario())
    observed["after_stats"] = (
        wait_until(lambda: (stats := server.stats())["open_streams"] == 0 and stats, timeout=10)
        or server.stats()
    )
    return observed


def _append_closing(session_id: str) -> None:
    from django.db import connection

    try:
        DjangoSessionStore().append_event(Event.new("message_sent", session_id))
    finally:
        connection.close()


def _peak_connections(seconds: float) -> int:
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, server_db_connections())
        time.sleep(0.05)
    connection.close()
    return peak


def test_idle_streams_hold_no_thread_each_and_end_when_their_clients_leave(
    idle_server: AsgiServer,
) -> None:
    server = idle_server
    session = Session.new("idle")
    DjangoSessionStore().save_session(session)
    baseline = server.stats()["threads"]
    observed = _open_idle_streams(server, session.id, 50)
    assert observed["idle_stats"]["open_streams"] == 50
    assert observed["idle_stats"]["threads"] <= baseline + 10, observed
    assert observed["received"] == [["1"]] * 50
    assert observed["after_stats"]["open_streams"] == 0, "streams outlived their clients"


@pytest.mark.postgres_only
@pytest.mark.parametrize("conn_max_age", [0, 60])
def test_fifty_idle_streams_do_not_hold_fifty_database_connections(conn_max_age: int) -> None:
    server = AsgiServer(agent_sessions=PERMISSION, conn_max_age=conn_max_age)
    server.start()
    try:
        session = Session.new("idle")
        DjangoSessionStore().save_session(session)
        observed = _open_idle_streams(server, session.id, 50)
        # The listener's LISTEN and check connections, plus the stream reader's when persistent.
        assert observed["idle_connections"] <= 3, observed
        assert observed["fanout_connections"] <= 3, observed
    finally:
        server.stop()
    assert wait_until(lambda: server_db_connections() == 0, timeout=10)


class _RawStream:
    """One logged-in SSE client on a raw socket (cheap enough for hundreds in one test)."""

    def __init__(self, port: int, path: str, cookie: str) -> None:
        self.port, self.path, self.cookie = port, path, cookie
        self.ids: list[str] = []
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> asyncio.StreamReader:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"Cookie: {self.cookie}\r\n\r\n"
        )
        self.writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n", 1)[0], head
        return reader

    async def read_one_event(self, reader: asyncio.StreamReader) -> None:
        parser = SSEParser()
        while not self.ids:
            chunk = await reader.read(65536)
            if not chunk:
                return
            # Chunked transfer framing lines parse as junk frames; only "id" matters.
            self.ids += [f["id"] for f in parser.feed(chunk.decode()) if "id" in f]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@pytest.mark.postgres_only
def test_idle_streams_of_logged_in_users_read_nothing_and_share_two_connections() -> None:
    """Issue #13's target with Django's default ``CONN_MAX_AGE = 0`` and real logins.

    200 streams over 40 sessions, opened at once by a user with
    ``view_event`` (the default access check: a session and a user lookup
    each), with a heartbeat every 0.2 s. While they open, idle and receive
    an event, the server holds at most 3 connections; once idle, only the
    listener's: heartbeats cause no reads.
    """
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user = User.objects.create_user("watcher")
    user.user_permissions.add(Permission.objects.get(codename="view_event"))
    login = Client()
    login.force_login(user)
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in login.cookies.items())
    store = DjangoSessionStore()
    sessions = [Session.new("watched") for _ in range(40)]
    for session in sessions:
        store.save_session(session)
    server = AsgiServer(agent_sessions={"STREAM_HEARTBEAT_SECONDS": 0.2}, conn_max_age=0)
    server.start()
    observed: dict[str, Any] = {}

    async def scenario() -> None:
        streams = [
            _RawStream(
                server.port, f"/agent-sessions/sessions/{sessions[i % 40].id}/events/stream", cookie
            )
            for i in range(200)
        ]
        whole = asyncio.create_task(asyncio.to_thread(_peak_connections, 6.0))
        readers = await asyncio.gather(*(s.open() for s in streams))
        tasks = [
            asyncio.create_task(s.read_one_event(r)) for s, r in zip(streams, readers, strict=True)
        ]
        assert await asyncio.to_thread(
            wait_until, lambda: server.stats()["open_streams"] >= 200, timeout=30
        ), server.stats()
        await asyncio.sleep(1.0)  # five heartbeats: the catch-up reads are over
        observed["idle"] = await asyncio.to_thread(_peak_connections, 1.5)
        for session in sessions:
            await asyncio.to_thread(_append_closing, session.id)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        observed["whole"] = await whole
        observed["received"] = {tuple(s.ids) for s in streams}
        for stream in streams:
            stream.close()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    assert observed["received"] == {("1",)}, observed
    assert observed["idle"] == 1, observed  # the listener's LISTEN connection alone
    assert observed["whole"] <= 3, observed
