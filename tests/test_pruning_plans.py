"""Pruning walks the table once: keyset batches that start at their position, and progress
that counts on across phases (issue #17)."""

from __future__ import annotations

import re

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


@pytest.mark.postgres_only
def test_every_oldest_first_batch_starts_at_its_position_through_the_index() -> None:
    _sessions(3)
    with CaptureQueriesContext(connection) as captured:
        DjangoMaintenance().prune_events(policy(max_total_events=10, batch_size=4))
    keyset = re.compile(
        r'\("asm_events"\."timestamp", "asm_events"\."sequence_number", "asm_events"\."id"\) >'
    )
    pages = [q["sql"] for q in captured.captured_queries if keyset.search(q["sql"])]
    assert len(pages) >= 6  # both phases, several batches each

    with connection.cursor() as cursor:
        # The test table is tiny: make the planner walk the table in pruning order, as it
        # does at scale, to show whether the batch's start is an index condition (the
        # expanded ``a > x OR (a = x AND ...)`` form is only a filter: a rescan per batch).
        for setting in ("seqscan", "bitmapscan", "sort"):
            cursor.execute(f"SET enable_{setting} = off")
        try:
            for sql in pages:
                cursor.execute(f"EXPLAIN {sql}")
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert re.search(r'Index Cond: .*"?timestamp"? >= ', plan), plan
        finally:
            for setting in ("seqscan", "bitmapscan", "sort"):
                cursor.execute(f"RESET enable_{setting}")
