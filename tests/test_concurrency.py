"""Gap-free sequences and idempotent appends under real concurrency (OS processes and threads).

Each test starts real processes (``fork``) that open their own connections to
the test database and append through ``DjangoSessionStore`` at the same time,
released together by a barrier. The same loads run on PostgreSQL and SQLite;
on SQLite every writer queues on the database's single write lock.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections, transaction

from agent_sessions.core import Event
from agent_sessions.store import DjangoSessionStore

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CONTEXT = multiprocessing.get_context("fork")
PROCESS_TIMEOUT_SECONDS = 120


def _child(
    work: Callable[..., Any],
    args: tuple[Any, ...],
    barrier: Any,
    results: Any,
    index: int,
    configure: Callable[[], None] | None,
) -> None:
    try:
        if configure is not None:
            configure()
        barrier.wait()
        results.put((index, "ok", work(DjangoSessionStore(), *args)))
    except BaseException:
        results.put((index, "error", traceback.format_exc()))
    finally:
        connections.close_all()


def run_in_processes(
    work: Callable[..., Any],
    args_per_process: list[tuple[Any, ...]],
    *,
    configure: Callable[[], None] | None = None,
) -> list[Any]:
    """Run ``work(store, *args)`` in one forked process per args tuple, all released at once.

    Returns each process's result, in the order of ``args_per_process``; a
    failure in any process fails the test with that process's traceback.
    """
    # Children must open their own connections, not share the parent's socket.
    connections.close_all()
    barrier = CONTEXT.Barrier(len(args_per_process))
    results = CONTEXT.Queue()
    processes = [
        CONTEXT.Process(target=_child, args=(work, args, barrier, results, index, configure))
        for index, args in enumerate(args_per_process)
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, Any] = {}
    try:
        for _ in processes:
            index, status, value = results.get(timeout=PROCESS_TIMEOUT_SECONDS)
            if status == "error":
                pytest.fail(f"process {index} failed:\n{value}")
            outcomes[index] = value
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return [outcomes[index] for index in range(len(processes))]


def append_one_by_one(store: DjangoSessionStore, session_id: str, count: int) -> list[int]:
    return [
        store.append_event(Event.new("message_sent", session_id)).sequence_number  # type: ignore[misc]
        for _ in range(count)
    ]


def append_in_batches(
    store: DjangoSessionStore, session_id: str, batches: int, size: int
) -> list[list[int]]:
    return [
        [
            e.sequence_number  # type: ignore[misc]
            for e in store.append_events(
                [Event.new("message_sent", session_id) for _ in range(size)]
            )
        ]
        for _ in range(batches)
    ]


def append_given_ids(
    store: DjangoSessionStore, session_id: str, ids: list[str], writer: int, batch_size: int
) -> dict[str, int]:
    """Append events with the given ids (content differs per writer); id → number received."""
    received: dict[str, int] = {}
    for start in range(0, len(ids), batch_size):
        batch = [
            Event.new("message_sent", session_id, id=event_id, data={"writer": writer})
            for event_id in ids[start : start + batch_size]
        ]
        stored = [store.append_event(batch[0])] if batch_size == 1 else store.append_events(batch)
        received.update((e.id, e.sequence_number) for e in stored)  # type: ignore[misc]
    return received


def _new_session_id() -> str:
    return f"ses_{uuid.uuid4().hex}"


def test_single_appends_from_eight_processes_are_numbered_1_to_2000(
    store: DjangoSessionStore, stored_sequences: Any
) -> None:
    session_id = _new_session_id()
    per_process = run_in_processes(append_one_by_one, [(session_id, 250)] * 8)

    assert stored_sequences(session_id) == list(range(1, 2001))
    assert sorted(n for numbers in per_process for n in numbers) == list(range(1, 2001))
    for numbers in per_process:
        assert numbers == sorted(numbers), "one writer's numbers only go up"
    assert store.get_latest_sequence(session_id) == 2000


@pytest.mark.parametrize("batch_size", [1, 6], ids=["single-appends", "batches"])
def test_concurrent_appends_of_the_same_ids_store_one_row_each_with_one_number(
    store: DjangoSessionStore, stored_sequences: Any, batch_size: int
) -> None:
    session_id = _new_session_id()
    ids = [f"evt_{uuid.uuid4().hex}" for _ in range(30)]

    received = run_in_processes(
        append_given_ids, [(session_id, ids, writer, batch_size) for writer in range(6)]
    )

    for event_id in ids:
        assert len({numbers[event_id] for numbers in received}) == 1, event_id
    assert stored_sequences(session_id) == list(range(1, 31))
    assert store.get_latest_sequence(session_id) == 30
    stored = store.get_events(session_id)
    assert sorted(e.id for e in stored) == sorted(ids)
    assert {e.id: e.sequence_number for e in stored} == received[0]


def test_concurrent_batches_get_contiguous_blocks(
    store: DjangoSessionStore, stored_sequences: Any
) -> None:
    session_id = _new_session_id()
    per_process = run_in_processes(append_in_batches, [(session_id, 10, 25)] * 6)

    for batches in per_process:
        for numbers in batches:
            assert numbers == list(range(numbers[0], numbers[0] + 25))
    assert stored_sequences(session_id) == list(range(1, 1501))
    assert store.get_latest_sequence(session_id) == 1500


def test_concurrent_writers_on_several_sessions_keep_each_session_gap_free(
    store: DjangoSessionStore, stored_sequences: Any
) -> None:
    sessions = [_new_session_id() for _ in range(3)]
    # Every process writes batches spanning all sessions, in different orders.
    run_in_processes(
        append_across_sessions, [(sessions[shift:] + sessions[:shift],) for shift in range(3)] * 2
    )
    for session_id in sessions:
        assert stored_sequences(session_id) == list(range(1, 121))


def append_across_sessions(store: DjangoSessionStore, session_ids: list[str]) -> None:
    for _ in range(20):
        store.append_events([Event.new("message_sent", sid) for sid in session_ids])


def test_single_appends_from_threads_are_gap_free(
    store: DjangoSessionStore, stored_sequences: Any
) -> None:
    session_id = _new_session_id()
    errors: queue.Queue[str] = queue.Queue()
    barrier = threading.Barrier(4)

    def writer() -> None:
        try:
            barrier.wait()
            append_one_by_one(DjangoSessionStore(), session_id, 50)
        except BaseException:
            errors.put(traceback.format_exc())
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=PROCESS_TIMEOUT_SECONDS)
    assert errors.empty(), errors.get()
    assert stored_sequences(session_id) == list(range(1, 201))


def _sqlite_without_recommended_options() -> None:
    # A project that neither takes the write lock up front nor waits long
    # for it: the store must take the lock itself and retry.
    options = connections["default"].settings_dict["OPTIONS"]
    options.pop("transaction_mode", None)
    options.pop("init_command", None)
    options["timeout"] = 0.001


@pytest.mark.sqlite_only
def test_sqlite_writers_without_immediate_mode_or_busy_timeout_do_not_fail_with_locked(
    store: DjangoSessionStore, stored_sequences: Any
) -> None:
    session_id = _new_session_id()
    run_in_processes(
        append_one_by_one, [(session_id, 100)] * 4, configure=_sqlite_without_recommended_options
    )
    assert stored_sequences(session_id) == list(range(1, 401))


def test_an_append_that_loses_the_race_for_a_new_id_returns_the_winners_event(
    store: DjangoSessionStore,
) -> None:
    session_id = _new_session_id()
    winner = Event.new("message_sent", session_id, data={"writer": "winner"})
    loser = Event.new("message_sent", session_id, id=winner.id, data={"writer": "loser"})
    winner_stored = threading.Event()
    release_winner = threading.Event()
    results: dict[str, Any] = {}

    def win() -> None:
        try:
            with transaction.atomic():
                results["winner"] = DjangoSessionStore().append_event(winner)
                winner_stored.set()
                release_winner.wait(timeout=30)
        finally:
            connection.close()

    def lose() -> None:
        try:
            results["loser"] = DjangoSessionStore().append_event(loser)
        finally:
            connection.close()

    first = threading.Thread(target=win)
    first.start()
    assert winner_stored.wait(timeout=30)
    second = threading.Thread(target=lose)
    second.start()
    # The loser is now blocked behind the winner's uncommitted row (or lock).
    second.join(timeout=0.3)
    assert second.is_alive()
    release_winner.set()
    first.join(timeout=30)
    second.join(timeout=30)

    assert results["loser"] == results["winner"]
    assert results["loser"].data == {"writer": "winner"}
    assert store.get_latest_sequence(session_id) == 1
    assert store.append_event(Event.new("message_sent", session_id)).sequence_number == 2
