"""A maintenance run that loses its lock stops at once (issue #11, item 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connections

from agent_sessions import models as m
from agent_sessions.archive import read_archive
from agent_sessions.errors import MaintenanceLockLost
from agent_sessions.locks import hold_maintenance_lock
from agent_sessions.maintenance import DjangoMaintenance
from tests.factories import SessionFactory
from tests.maintenance_support import (
    _BOOTSTRAP,
    ROOT,
    _child_env,
    days_ago,
    lose_the_lock,
    policy,
    run_manage,
    session_with_log,
    terminate_lock_backend,
)

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)
def test_a_held_lock_checks_out_and_a_lost_one_raises() -> None:
    with hold_maintenance_lock() as lock:
        assert lock is not None
        lock.check()
        lose_the_lock()

        with pytest.raises(MaintenanceLockLost) as info:
            lock.check()

    assert info.value.code == "lock_lost"
    with hold_maintenance_lock() as again:  # released (or gone): free for the next run
        assert again is not None


@pytest.mark.django_db(transaction=True)
def test_a_run_that_loses_its_lock_stops_before_the_next_batch() -> None:
    for _ in range(5):
        SessionFactory(status="completed", updated_at=days_ago(365))
    for _ in range(3):
        session_with_log(["message_sent"] * 3)
    lost_after: list[int] = []

    def lose_after_second_batch(step: str, rows: int, total: int) -> None:
        if total == 2 and not lost_after:
            lost_after.append(total)
            lose_the_lock()

    with hold_maintenance_lock() as lock:
        report = DjangoMaintenance(progress=lose_after_second_batch).execute(
            policy(max_completed_session_age_days=90, max_events_per_session=1, batch_size=1),
            lock=lock,
        )

    assert m.Session.objects.filter(deleted_at__isnull=False).count() == 2
    assert m.Event.objects.count() == 9  # pruning never started
    assert report.sessions_soft_deleted == 0
    assert len(report.errors) == 1
    assert report.errors[0].startswith("soft_delete_expired_sessions: [lock_lost]")
    assert "(2 rows were done before the failure)" in report.errors[0]


# A maintenance run slowed down after every batch, so the test can take its
# lock away while it works.
_SLOW_MANAGE = (
    _BOOTSTRAP
    + """
import time
from agent_sessions.maintenance import DjangoMaintenance
_report = DjangoMaintenance._report
def _slow(self, *args):
    _report(self, *args)
    time.sleep(float(os.environ["ASM_BATCH_PAUSE"]))
DjangoMaintenance._report = _slow
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""
)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_runs_never_work_at_once_when_the_first_loses_its_lock(tmp_path: Path) -> None:
    sessions = [
        session_with_log(["session_created", "message_sent"], deleted_at=days_ago(40)).id
        for _ in range(30)
    ]
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    args = ["asm_maintenance", "--hard-delete-after-days=30", "--batch-size=1", "-v", "2"]
    connections.close_all()
    first = subprocess.Popen(
        [sys.executable, "-c", _SLOW_MANAGE, *args, f"--archive-dir={first_dir}"],
        cwd=ROOT,
        env={**_child_env(), "ASM_BATCH_PAUSE": "0.2", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        line = first.stdout.readline()  # the first batch is committed
        assert "hard_delete_expired_sessions: batch of 1" in line, line

        assert terminate_lock_backend() == 1
        second = run_manage(*args[:-2], f"--archive-dir={second_dir}", "--format=json", timeout=120)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    assert second.returncode == 0, second.stderr
    assert first.returncode == 1
    assert "[lock_lost]" in err
    assert "Done:" in out  # the report is printed
    first_ids = archived_sessions(first_dir)
    second_ids = archived_sessions(second_dir)
    assert json.loads(second.stdout)["sessions_hard_deleted"] == len(second_ids)
    # Never both on the same rows: every session archived (and deleted) exactly once.
    assert sorted(first_ids + second_ids) == sorted(sessions)
    assert not m.Session.objects.exists()


def archived_sessions(directory: Path) -> list[str]:
    return [
        str(record.id)  # type: ignore[union-attr]
        for path in sorted(directory.glob("asm-archive-*.jsonl"))
        for kind, record in read_archive(path)
        if kind == "session"
    ]
