"""Live appends while maintenance runs are neither lost nor renumbered (real OS processes)."""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any

import pytest
from django.db import connections

from agent_sessions import models as m
from agent_sessions.core import Event
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.store import DjangoSessionStore
from tests.factories import SessionFactory, SessionSequenceFactory
from tests.maintenance_support import days_ago, policy, session_with_log

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CONTEXT = multiprocessing.get_context("fork")
APPENDS_PER_SESSION = 8


def _append_live(session_ids: list[str], results: Any) -> None:
    """Child process: append to every live session in turn; report the stored ids."""
    try:
        store = DjangoSessionStore()
        stored: dict[str, list[str]] = {sid: [] for sid in session_ids}
        for _ in range(APPENDS_PER_SESSION):
            for session_id in session_ids:
                event = store.append_event(Event.new("message_sent", session_id))
                stored[session_id].append(event.id)
        results.put(("ok", stored))
    except BaseException:
        results.put(("error", traceback.format_exc()))
    finally:
        connections.close_all()


def test_appends_during_maintenance_are_kept_in_order() -> None:
    # Plenty of short maintenance transactions to interleave with.
    for _ in range(40):
        session_with_log(
            ["session_created", "message_sent", "message_sent"], deleted_at=days_ago(60)
        )
    for _ in range(20):
        session_with_log(["session_created"] + ["message_streamed"] * 14)
    for number in range(20):
        SessionSequenceFactory(session_id=f"ses_forgotten_{number:02d}")
    live = [SessionFactory(status="active").id for _ in range(4)]
    # No session row: their counters must survive the orphan cleanup once events exist.
    rowless = [f"ses_rowless_{number}" for number in range(2)]
    retention = policy(hard_delete_after_days=30, max_events_per_session=10, batch_size=3)

    connections.close_all()  # the child opens its own connection
    results = CONTEXT.Queue()
    appender = CONTEXT.Process(target=_append_live, args=([*live, *rowless], results))
    appender.start()
    reports = []
    try:
        while appender.is_alive() or not reports:
            reports.append(DjangoMaintenance().execute(retention))
        status, stored = results.get(timeout=120)
    finally:
        appender.join(timeout=30)

    assert status == "ok", stored
    assert all(report.errors == [] for report in reports)
    assert sum(report.sessions_hard_deleted for report in reports) == 40
    for session_id, event_ids in stored.items():
        rows = m.Event.objects.filter(session_id=session_id).order_by("sequence_number")
        assert [row.id for row in rows] == event_ids
        assert [row.sequence_number for row in rows] == list(range(1, APPENDS_PER_SESSION + 1))
        assert m.SessionSequence.objects.get(session_id=session_id).last_sequence == 8
    assert DjangoMaintenance().health_check() == [
        f"{APPENDS_PER_SESSION * len(rowless)} events reference non-existent sessions"
    ]


def test_each_batch_is_committed_on_its_own() -> None:
    for _ in range(6):
        SessionFactory(status="completed", updated_at=days_ago(365))
    observer = connections["default"].copy()  # another connection sees only commits
    seen: list[int] = []

    def committed_so_far(step: str, rows: int, total: int) -> None:
        with observer.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM asm_sessions WHERE deleted_at IS NOT NULL")
            seen.append(cursor.fetchone()[0])

    try:
        DjangoMaintenance(progress=committed_so_far).soft_delete_expired_sessions(
            policy(max_completed_session_age_days=90, batch_size=2)
        )
    finally:
        observer.close()

    assert seen == [2, 4, 6]
