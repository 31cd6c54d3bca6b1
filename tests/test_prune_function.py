"""``max_total_events`` batches through ``asm_prune_oldest_events`` (migration 0008, issue #17).

On PostgreSQL without an archive a batch is one call of the function: in
autocommit it is the batch's whole transaction, one round trip, with the
maintenance lock checked by the statement itself just before it commits.
Where the function is missing the ORM path prunes the same events.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from agent_sessions import models as m
from agent_sessions.db import translate_errors
from agent_sessions.errors import StorageError
from agent_sessions.locks import hold_maintenance_lock
from agent_sessions.maintenance import DjangoMaintenance
from tests.db_support import function_dropped
from tests.factories import SessionFactory
from tests.maintenance_support import days_ago, event_log, lose_the_lock, policy

pytestmark = pytest.mark.postgres_only

# message_streamed is a prune-first type by default; message_sent is not.
LOG = ["session_created"] + ["message_streamed", "message_sent"] * 6
CAP = policy(max_total_events=10, batch_size=4)  # 39 events, 29 pruned


def _sessions(count: int = 3) -> None:
    for n in range(count):
        event_log(SessionFactory().id, LOG, start=days_ago(10 - n))


def _left() -> list[tuple[str, str]]:
    return list(m.Event.objects.order_by("timestamp").values_list("session_id", "type"))


def _function_dropped() -> AbstractContextManager[None]:
    """Drop the function, and put it back after (as migration 0008 made it)."""
    return function_dropped("0008_prune_oldest_events_function")


@pytest.fixture
def dropped_function() -> Iterator[None]:
    with _function_dropped():
        yield


@pytest.mark.django_db(transaction=True)
def test_each_batch_is_one_statement_in_autocommit() -> None:
    _sessions()
    with CaptureQueriesContext(connection) as captured:
        pruned = DjangoMaintenance().prune_events(CAP)

    calls = [
        q["sql"] for q in captured.captured_queries if "FROM asm_prune_oldest_events(" in q["sql"]
    ]
    assert pruned == 29
    assert len(calls) == 9  # 8 batches, and one that finds the prune-first types done
    assert not [q for q in captured.captured_queries if "SET LOCAL" in q["sql"]]
    assert not [q for q in captured.captured_queries if "SAVEPOINT" in q["sql"]]
    assert len(_left()) == 10


@pytest.mark.django_db(transaction=True)
def test_without_the_function_the_orm_prunes_the_same_events(dropped_function: None) -> None:
    _sessions()
    with CaptureQueriesContext(connection) as captured:
        pruned = DjangoMaintenance().prune_events(CAP)

    assert pruned == 29
    assert not [q for q in captured.captured_queries if "FROM asm_prune_oldest_events(" in q["sql"]]
    left = _left()
    assert len(left) == 10
    assert [t for _s, t in left].count("session_created") == 3  # never pruned


@pytest.mark.django_db(transaction=True)
def test_the_function_and_the_orm_leave_the_same_events() -> None:
    _sessions()
    DjangoMaintenance().prune_events(CAP)
    by_function = _left()
    m.Event.objects.all().delete()
    _sessions()
    with _function_dropped():
        DjangoMaintenance().prune_events(CAP)
    assert [t for _s, t in _left()] == [t for _s, t in by_function]


@pytest.mark.django_db
def test_inside_a_callers_transaction_its_commit_mode_is_left_alone() -> None:
    _sessions()
    with transaction.atomic():
        assert DjangoMaintenance().prune_events(CAP) == 29
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


@pytest.mark.django_db(transaction=True)
def test_a_run_that_loses_its_lock_mid_walk_keeps_only_committed_batches() -> None:
    _sessions()
    totals: list[int] = []

    def lose_after_first_batch(step: str, rows: int, total: int) -> None:
        totals.append(total)
        if len(totals) == 1:
            lose_the_lock()

    with hold_maintenance_lock() as lock:
        assert lock is not None
        assert lock.holder is not None
        report = DjangoMaintenance(progress=lose_after_first_batch).execute(CAP, lock=lock)

    assert totals == [4]
    assert len(_left()) == 39 - 4  # the second batch rolled back
    assert report.events_pruned == 0
    assert len(report.errors) == 1
    assert report.errors[0].startswith("prune_events: [lock_lost]")
    assert "(4 rows were done before the failure)" in report.errors[0]


@pytest.mark.django_db(transaction=True)
def test_a_statement_given_a_lock_nobody_holds_deletes_nothing() -> None:
    _sessions()
    with hold_maintenance_lock() as lock:
        assert lock is not None
        assert lock.holder is not None
        holder = lock.holder
    with (
        pytest.raises(StorageError) as info,
        connection.cursor() as cursor,
        translate_errors("prune_events"),
    ):
        cursor.execute(
            "SELECT * FROM asm_prune_oldest_events('-infinity', 0, '', NULL, %s, 100, true,"
            " %s, %s, %s)",
            [["session_created"], holder.key, holder.pid, holder.transaction],
        )
    assert info.value.details["sqlstate"] == "AS001"
    assert len(_left()) == 39
