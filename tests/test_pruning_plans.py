"""Pruning walks the table once: keyset batches that start at their position, and progress
that counts on across phases (issue #17)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent_sessions.maintenance import DjangoMaintenance
from tests.factories import SessionFactory
from tests.maintenance_support import days_ago, event_log, policy

pytestmark = pytest.mark.django_db

# message_streamed is a prune-first type by default; message_sent is not.
LOG = ["session_created"] + ["message_streamed", "message_sent"] * 6


def _sessions(count: int) -> None:
    for n in range(count):
        event_log(SessionFactory().id, LOG, start=days_ago(10 - n))


def test_progress_counts_on_across_pruning_phases() -> None:
    _sessions(3)  # 39 events, 36 prunable: 18 prune-first, 18 others
    reports: list[tuple[str, int, int]] = []
    maintenance = DjangoMaintenance(
        progress=lambda step, rows, total: reports.append((step, rows, total))
    )

    pruned = maintenance.prune_events(policy(max_total_events=10, batch_size=4))

    totals = [total for step, _rows, total in reports if step == "prune_events"]
    assert pruned == 29
    assert totals == sorted(totals)
    assert len(set(totals)) == len(totals)  # never restarts, never repeats
    assert totals[-1] == pruned
    assert sum(rows for step, rows, _total in reports if step == "prune_events") == pruned


# The test table is tiny: make the planner walk the table in pruning order, as it
# does at scale, to show whether the batch's start is an index condition (the
# expanded ``a > x OR (a = x AND ...)`` form is only a filter: a rescan per batch).
_AS_AT_SCALE = ("seqscan", "bitmapscan", "sort")
_STARTS_AT_ITS_POSITION = re.compile(r'Index Cond: .*"?timestamp"? >= ')


@pytest.mark.postgres_only
def test_every_oldest_first_batch_starts_at_its_position_through_the_index(
    tmp_path: Path,
) -> None:
    # With an archive, a batch is read through the ORM, then archived, then deleted.
    _sessions(3)
    archived = policy(
        max_total_events=10, batch_size=4, archive_before_prune=True, archive_store=str(tmp_path)
    )
    with CaptureQueriesContext(connection) as captured:
        DjangoMaintenance().prune_events(archived)
    keyset = re.compile(
        r'\("asm_events"\."timestamp", "asm_events"\."sequence_number", "asm_events"\."id"\) >'
    )
    pages = [q["sql"] for q in captured.captured_queries if keyset.search(q["sql"])]
    assert len(pages) >= 6  # both phases, several batches each

    with connection.cursor() as cursor:
        for setting in _AS_AT_SCALE:
            cursor.execute(f"SET LOCAL enable_{setting} = off")
        for sql in pages:
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert _STARTS_AT_ITS_POSITION.search(plan), plan


@pytest.mark.postgres_only
def test_the_prune_function_plans_its_batch_once_as_an_index_walk() -> None:
    # Without an archive, a batch is one call of asm_prune_oldest_events (migration
    # 0008); auto_explain shows the plan of the statement inside it.
    _sessions(3)
    notices: list[str] = []
    driver = connection.connection

    def collect(diagnostic: Any) -> None:
        notices.append(str(diagnostic.message_primary))

    with connection.cursor() as cursor:
        cursor.execute("LOAD 'auto_explain'")
        for setting in _AS_AT_SCALE:
            cursor.execute(f"SET LOCAL enable_{setting} = off")
        for setting, value in (
            ("log_min_duration", "0"),
            ("log_nested_statements", "on"),
            ("log_level", "notice"),
        ):
            cursor.execute(f"SET LOCAL auto_explain.{setting} = {value}")
        cursor.execute("DISCARD PLANS")  # planned under these settings, not earlier ones
    driver.add_notice_handler(collect)
    try:
        pruned = DjangoMaintenance().prune_events(policy(max_total_events=10, batch_size=4))
    finally:
        driver.remove_notice_handler(collect)

    plans = [text for text in notices if "DELETE FROM asm_events WHERE ctid" in text]
    assert pruned == 29
    # One statement per batch: 18 prune-first events in 5 batches and a call that finds
    # none left, then 11 others in 3.
    assert len(plans) == 9
    for plan in plans:
        assert _STARTS_AT_ITS_POSITION.search(plan), plan
        assert "Tid Scan" in plan, plan  # deleted where the walk found them
        assert ">= $1" in plan, plan  # the generic plan: made once, not per batch
        assert "JIT" not in plan, plan
