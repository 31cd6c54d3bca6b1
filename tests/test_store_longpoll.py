"""Long-poll reads: get_events(..., wait_timeout_ms=N) on PostgreSQL (NOTIFY) and SQLite.

The writers' side of the notification protocol (notify only watched sessions)
is tested here with a raw LISTEN connection that follows the protocol; the
shared listener itself in test_listener.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from agent_sessions.core import Event, EventType
from agent_sessions.listener import get_listener
from agent_sessions.sequences import NOTIFY_CHANNEL, WATCH_KEYS_PER_BATCH, WATCH_LOCK_CLASS
from agent_sessions.store import DjangoSessionStore

pytestmark = pytest.mark.django_db(transaction=True)

#: Far longer than any wake-up: a reader that returns before it was woken by the append.
LONG_WAIT_MS = 10_000


@contextmanager
def writer(*steps: tuple[float, Callable[[DjangoSessionStore], object]]) -> Iterator[None]:
    """Run ``(delay_seconds, action)`` steps in a thread with its own connection."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            store = DjangoSessionStore()
            for delay, action in steps:
                time.sleep(delay)
                action(store)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=30)
    assert not failures, failures


def append(event: Event) -> Callable[[DjangoSessionStore], object]:
    return lambda store: store.append_event(event)


@pytest.fixture
def session_id() -> str:
    return f"ses_{uuid.uuid4().hex}"


class Watcher:
    """A raw LISTEN connection that watches sessions the way the listener does."""

    def __init__(self) -> None:
        import psycopg

        params = dict(connection.get_connection_params())
        params.pop("cursor_factory", None)
        params.pop("context", None)
        self.connection = psycopg.connect(**params, autocommit=True)
        self.connection.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def watch(self, session_id: str) -> None:
        self.connection.execute(
            f"SELECT pg_advisory_lock_shared({WATCH_LOCK_CLASS}, hashtext(%s))", [session_id]
        )

    def notified(self, session_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            for note in self.connection.notifies(timeout=remaining, stop_after=1):
                if note.payload == session_id:
                    return True
        return False


@pytest.fixture
def watcher() -> Iterator[Watcher]:
    watcher = Watcher()
    yield watcher
    watcher.connection.close()


def test_long_poll_returns_existing_events_at_once(
    store: DjangoSessionStore, session_id: str
) -> None:
    stored = store.append_event(Event.new("message_sent", session_id))
    assert store.get_events(session_id, wait_timeout_ms=LONG_WAIT_MS) == [stored]


def test_long_poll_wakes_when_a_matching_event_is_committed(
    store: DjangoSessionStore, session_id: str
) -> None:
    event = Event.new("message_sent", session_id)
    start = time.monotonic()
    with writer((0.2, append(event))):
        events = store.get_events(session_id, wait_timeout_ms=LONG_WAIT_MS)
    assert [e.id for e in events] == [event.id]
    assert time.monotonic() - start < LONG_WAIT_MS / 2000, "woken by the append, not the timeout"


def test_long_poll_ignores_appends_to_other_sessions_runs_and_types(
    store: DjangoSessionStore, session_id: str
) -> None:
    wanted = Event.new(EventType.TOOL_CALL_STARTED, session_id, run_id="run_1")
    with writer(
        (0.1, append(Event.new(EventType.TOOL_CALL_STARTED, "ses_other", run_id="run_1"))),
        (0.1, append(Event.new(EventType.TOOL_CALL_STARTED, session_id, run_id="run_2"))),
        (0.1, append(Event.new(EventType.MESSAGE_SENT, session_id, run_id="run_1"))),
        (0.2, append(wanted)),
    ):
        events = store.get_events(
            session_id, run_id="run_1", type="tool_call_started", wait_timeout_ms=LONG_WAIT_MS
        )
    assert [e.id for e in events] == [wanted.id]


def test_long_poll_with_after_waits_for_the_next_event(
    store: DjangoSessionStore, session_id: str
) -> None:
    store.append_event(Event.new("message_sent", session_id))
    with writer((0.2, append(Event.new("message_received", session_id)))):
        events = store.get_events(session_id, after=1, wait_timeout_ms=LONG_WAIT_MS)
    assert [(e.sequence_number, e.type) for e in events] == [(2, EventType.MESSAGE_RECEIVED)]


def test_long_poll_returns_empty_after_the_timeout(
    store: DjangoSessionStore, session_id: str
) -> None:
    start = time.monotonic()
    with writer((0.05, append(Event.new("message_sent", "ses_other")))):
        events = store.get_events(session_id, wait_timeout_ms=300)
    assert events == []
    assert time.monotonic() - start >= 0.3


def test_zero_wait_does_not_block(store: DjangoSessionStore, session_id: str) -> None:
    assert store.get_events(session_id, wait_timeout_ms=0) == []


def test_a_waiter_is_woken_on_commit_and_not_on_rollback(
    store: DjangoSessionStore, session_id: str
) -> None:
    class Abort(Exception):
        pass

    def append_then_roll_back() -> None:
        with transaction.atomic():
            store.append_event(Event.new("message_sent", session_id))
            raise Abort

    listener = get_listener("default")
    with pytest.raises(Abort):
        append_then_roll_back()
    assert not listener.wait(session_id, after=0, timeout=0.3)

    with transaction.atomic():
        store.append_event(Event.new("message_sent", session_id))
        assert not listener.wait(session_id, after=0, timeout=0.3)
    assert listener.wait(session_id, after=0, timeout=5)


def test_long_poll_does_not_busy_loop_while_waiting(
    store: DjangoSessionStore, session_id: str, vendor: str
) -> None:
    with (
        writer((0.1, append(Event.new("message_sent", "ses_other")))),
        CaptureQueriesContext(connection) as queries,
    ):
        assert store.get_events(session_id, wait_timeout_ms=1000) == []
    # PostgreSQL queries again only when notified about this session; SQLite
    # polls with a back-off (10 ms doubling to 100 ms): about 15 queries a second.
    assert len(queries) <= (3 if vendor == "postgresql" else 20)


@pytest.mark.postgres_only
def test_appends_notify_only_sessions_that_a_reader_watches(
    store: DjangoSessionStore, session_id: str, watcher: Watcher
) -> None:
    store.append_event(Event.new("message_sent", session_id))
    assert not watcher.notified(session_id, 0.2)

    watcher.watch(session_id)
    store.append_event(Event.new("message_sent", session_id))
    assert watcher.notified(session_id, 5)
    store.append_events([Event.new("message_sent", session_id)])
    assert watcher.notified(session_id, 5)


@pytest.mark.postgres_only
def test_a_reader_that_starts_watching_mid_append_sees_the_event(
    store: DjangoSessionStore, session_id: str
) -> None:
    appended = threading.Event()
    commit = threading.Event()

    def append_slowly() -> None:
        try:
            with transaction.atomic():
                DjangoSessionStore().append_event(Event.new("message_sent", session_id))
                appended.set()
                commit.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=append_slowly)
    thread.start()
    try:
        assert appended.wait(timeout=30)
        # The append decided not to notify (nobody watched); the reader's watch
        # waits for that commit, so its query sees the event.
        threading.Timer(0.2, commit.set).start()
        events = store.get_events(session_id, wait_timeout_ms=LONG_WAIT_MS)
    finally:
        commit.set()
        thread.join(timeout=30)
    assert [e.session_id for e in events] == [session_id]


@pytest.mark.postgres_only
def test_a_batch_across_many_sessions_notifies_a_watched_one(
    store: DjangoSessionStore, session_id: str, watcher: Watcher
) -> None:
    many = [Event.new("message_sent", f"ses_bulk_{n}") for n in range(WATCH_KEYS_PER_BATCH + 8)]
    watcher.watch(session_id)
    store.append_events([*many, Event.new("message_sent", session_id)])
    assert watcher.notified(session_id, 5)
