"""The shared per-process listener that wakes waiting readers (agent_sessions.listener).

One LISTEN connection per process and database wakes every waiting reader;
an interval check of the database wakes them for events written by writers
that send no NOTIFY (Elixir, plain SQL). Claims about processes use real
processes (tests.db_support.Child).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from agent_sessions.aio import run_in_worker
from agent_sessions.checks import check_settings
from agent_sessions.core import Event
from agent_sessions.listener import LISTENER_APPLICATION_NAME, get_listener, shutdown_listeners
from agent_sessions.sequences import WATCH_LOCK_CLASS
from agent_sessions.store import DjangoSessionStore
from tests.db_support import Child, backends, eventually

pytestmark = pytest.mark.django_db(transaction=True)

#: Far longer than any wake-up: a reader that returns before it is woken, not timed out.
LONG_WAIT_MS = 20_000
#: The interval check's period in the tests that rely on it.
SHORT_INTERVAL = 0.2
#: An interval so long that only NOTIFY can wake a reader within LONG_WAIT_MS / 2.
NOTIFY_ONLY_INTERVAL = 60


@pytest.fixture
def session_id() -> str:
    return f"ses_{uuid.uuid4().hex}"


@pytest.fixture
def fresh_listeners() -> Iterator[None]:
    """Start and end without listeners, so a test's settings reach a new one."""
    shutdown_listeners()
    yield
    shutdown_listeners()


def set_interval(settings: Any, seconds: float, **extra: Any) -> None:
    settings.AGENT_SESSIONS = {"WAIT_POLL_INTERVAL_SECONDS": seconds, **extra}


def later(delay: float, action: Any) -> threading.Thread:
    """Run ``action()`` after ``delay`` seconds in a thread (which closes its connection)."""

    def run() -> None:
        try:
            time.sleep(delay)
            action()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def insert_without_notify(session_id: str, number: int) -> str:
    """Store an event with plain SQL as a foreign writer would: no counter, no NOTIFY."""
    event_id = f"evt_{uuid.uuid4().hex}"
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO asm_events (id, type, timestamp, session_id, sequence_number, data, "
            "metadata, schema_version) VALUES (%s, 'message_sent', '2026-01-01 00:00:00', %s, "
            "%s, '{}', '{}', 1)",
            [event_id, session_id, number],
        )
    return event_id


def watch_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
            "AND classid = %s",
            [WATCH_LOCK_CLASS],
        )
        return int(cursor.fetchone()[0])


# --------------------------------------------------------------------------- waking


def test_a_long_poll_is_woken_by_an_append_from_another_process(
    store: DjangoSessionStore, session_id: str, settings: Any, vendor: str, fresh_listeners: None
) -> None:
    # On PostgreSQL only NOTIFY can wake the reader in time; SQLite has the check alone.
    set_interval(settings, NOTIFY_ONLY_INTERVAL if vendor == "postgresql" else SHORT_INTERVAL)
    with Child() as child:
        child.run("from agent_sessions.store import DjangoSessionStore")
        child.run("from agent_sessions.core import Event")
        event = f"Event.new('message_sent', {session_id!r})"
        append = f"result = DjangoSessionStore().append_event({event}).id"
        appended: list[str] = []
        start = time.monotonic()
        thread = later(0.3, lambda: appended.append(child.run(append)))
        events = store.get_events(session_id, wait_timeout_ms=LONG_WAIT_MS)
        elapsed = time.monotonic() - start
        thread.join(timeout=30)
    assert [e.id for e in events] == appended
    assert elapsed < LONG_WAIT_MS / 2000, "woken by the other process's append, not the timeout"


def test_a_long_poll_sees_a_plain_sql_insert_within_the_interval(
    store: DjangoSessionStore, session_id: str, settings: Any, fresh_listeners: None
) -> None:
    set_interval(settings, SHORT_INTERVAL)
    inserted: list[str] = []
    start = time.monotonic()
    thread = later(0.3, lambda: inserted.append(insert_without_notify(session_id, 1)))
    events = store.get_events(session_id, wait_timeout_ms=LONG_WAIT_MS)
    elapsed = time.monotonic() - start
    thread.join(timeout=30)
    assert [e.id for e in events] == inserted
    # 0.3 s until the insert, then at most one interval (plus a loaded machine's slack).
    assert elapsed < 0.3 + SHORT_INTERVAL + 2.0, f"took {elapsed:.2f} s"


def test_a_stream_sees_a_plain_sql_insert_within_the_interval(
    store: DjangoSessionStore, session_id: str, settings: Any, fresh_listeners: None
) -> None:
    set_interval(settings, SHORT_INTERVAL)

    async def scenario() -> tuple[Event, float]:
        stream = store.stream_events(session_id, poll_timeout_ms=LONG_WAIT_MS)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)
        await run_in_worker(insert_without_notify, session_id, 1)
        start = time.monotonic()
        event = await asyncio.wait_for(first, timeout=LONG_WAIT_MS / 1000)
        await stream.aclose()
        return event, time.monotonic() - start

    event, elapsed = asyncio.run(scenario())
    assert event.sequence_number == 1
    assert elapsed < SHORT_INTERVAL + 2.0, f"took {elapsed:.2f} s"


def test_wait_is_true_only_for_events_after_the_given_number(session_id: str) -> None:
    listener = get_listener("default")
    assert listener.wait(session_id, after=0, timeout=0.2) is False
    insert_without_notify(session_id, 1)
    assert listener.wait(session_id, after=1, timeout=0.3) is False
    assert listener.wait(session_id, after=0, timeout=5) is True


@pytest.mark.postgres_only
def test_without_a_direct_connection_readers_are_woken_by_the_check(
    store: DjangoSessionStore, session_id: str, settings: Any, fresh_listeners: None
) -> None:
    set_interval(settings, SHORT_INTERVAL, DIRECT_DATABASE={"default": None})
    event = Event.new("message_sent", session_id)
    thread = later(0.3, lambda: DjangoSessionStore().append_event(event))
    events = store.get_events(session_id, wait_timeout_ms=LONG_WAIT_MS)
    thread.join(timeout=30)
    assert [e.id for e in events] == [event.id]
    assert not get_listener("default").listening
    assert backends("application_name = %s", (LISTENER_APPLICATION_NAME,)) == []


# --------------------------------------------------------------------------- resources


@pytest.mark.postgres_only
def test_a_hundred_waiting_readers_hold_at_most_one_connection(
    store: DjangoSessionStore, settings: Any, fresh_listeners: None
) -> None:
    set_interval(settings, SHORT_INTERVAL)
    sessions = [f"ses_{uuid.uuid4().hex}" for _ in range(100)]

    async def scenario() -> tuple[int, int, list[Event]]:
        # Counted from a worker thread both times (its own backend is left out).
        idle = await run_in_worker(lambda: len(backends()))
        readers = [
            asyncio.ensure_future(store.aget_events(sid, wait_timeout_ms=LONG_WAIT_MS))
            for sid in sessions
        ]
        listener = get_listener("default")
        while listener.waiting < len(sessions):
            await asyncio.sleep(0.05)
        await asyncio.sleep(3 * SHORT_INTERVAL)  # the listener has checked them all
        held = await run_in_worker(lambda: len(backends()))
        waiting = listener.waiting
        await store.aappend_event(Event.new("message_sent", sessions[0]))
        woken = await asyncio.wait_for(readers[0], timeout=10)
        for reader in readers[1:]:
            reader.cancel()
        await asyncio.gather(*readers[1:], return_exceptions=True)
        return held - idle, waiting, woken

    extra, waiting, woken = asyncio.run(scenario())
    assert waiting == 100
    assert extra <= 1, f"100 waiting readers held {extra} connections"
    assert [e.session_id for e in woken] == [sessions[0]]


def test_cancelling_an_async_waiter_leaves_nothing_behind(
    store: DjangoSessionStore, session_id: str, vendor: str, fresh_listeners: None
) -> None:
    listener = get_listener("default")

    async def scenario() -> None:
        waiting = asyncio.ensure_future(store.aget_events(session_id, wait_timeout_ms=LONG_WAIT_MS))
        while listener.waiting == 0:
            await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())
    assert listener.waiting == 0
    if vendor == "postgresql":
        assert eventually(lambda: watch_locks() == 0), "the watch lock was not released"
    # A later append wakes nobody and nothing: later waiters still work.
    store.append_event(Event.new("message_sent", session_id))
    assert listener.wait(session_id, after=0, timeout=5)


@pytest.mark.postgres_only
def test_the_listener_reconnects_after_its_connection_is_terminated(
    store: DjangoSessionStore, session_id: str, settings: Any, fresh_listeners: None
) -> None:
    set_interval(settings, NOTIFY_ONLY_INTERVAL)
    listener = get_listener("default")
    assert not listener.wait(session_id, after=0, timeout=0.3)
    (listening,) = backends("application_name = %s", (LISTENER_APPLICATION_NAME,))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [listening["pid"]])

    event = Event.new("message_sent", session_id)
    start = time.monotonic()
    thread = later(0.5, lambda: DjangoSessionStore().append_event(event))
    events = store.get_events(session_id, wait_timeout_ms=LONG_WAIT_MS)
    thread.join(timeout=30)
    assert [e.id for e in events] == [event.id]
    assert time.monotonic() - start < LONG_WAIT_MS / 2000, "woken by NOTIFY on a new connection"
    assert [b["pid"] for b in backends("application_name = %s", (LISTENER_APPLICATION_NAME,))] != [
        listening["pid"]
    ]


def test_the_listener_lets_its_connections_go_when_nobody_waits(
    session_id: str, monkeypatch: pytest.MonkeyPatch, vendor: str, fresh_listeners: None
) -> None:
    monkeypatch.setattr("agent_sessions.listener.IDLE_DISCONNECT_SECONDS", 0.2)
    listener = get_listener("default")
    assert not listener.wait(session_id, after=0, timeout=0.3)
    assert eventually(lambda: not listener.listening)
    if vendor == "postgresql":
        assert eventually(
            lambda: backends("application_name = %s", (LISTENER_APPLICATION_NAME,)) == []
        )


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("interval", [0, -1, 61, "1", True, None])
def test_a_bad_poll_interval_is_a_check_error(settings: Any, interval: Any) -> None:
    settings.AGENT_SESSIONS = {"WAIT_POLL_INTERVAL_SECONDS": interval}
    assert [m.id for m in check_settings()] == ["agent_sessions.E030"]


@pytest.mark.parametrize(
    "direct", ["nowhere", {"default": "nowhere"}, {"nowhere": "default"}, 5, {"default": 5}]
)
def test_a_bad_direct_database_is_a_check_error(settings: Any, direct: Any) -> None:
    settings.AGENT_SESSIONS = {"DIRECT_DATABASE": direct}
    assert [m.id for m in check_settings()] == ["agent_sessions.E031"]


@pytest.mark.parametrize("direct", [None, "default", {"default": None}, {"default": "default"}])
def test_a_valid_direct_database_passes_the_checks(settings: Any, direct: Any) -> None:
    settings.AGENT_SESSIONS = {"DIRECT_DATABASE": direct, "WAIT_POLL_INTERVAL_SECONDS": 0.25}
    assert check_settings() == []
