"""archive_before_prune: what maintenance deletes is first written as JSON Lines (CONTRACT §8)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent_sessions import models as m
from agent_sessions.archive import read_archive
from agent_sessions.core import Event, Run, Session
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.retention import RetentionPolicy
from tests.factories import RunFactory
from tests.maintenance_support import counts, days_ago, policy, session_with_log

pytestmark = pytest.mark.django_db


def archiving(directory: Path, **fields: object) -> RetentionPolicy:
    return policy(archive_before_prune=True, archive_store=str(directory), **fields)


def archive_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("asm-archive-*.jsonl"))


def test_pruned_events_are_archived_and_read_back_as_events(tmp_path: Path) -> None:
    session = session_with_log(["session_created", "message_streamed", "message_sent"])
    expected = [
        row.to_domain()
        for row in m.Event.objects.filter(session_id=session.id, sequence_number__in=[2, 3])
    ]

    DjangoMaintenance().execute(archiving(tmp_path, max_events_per_session=1))

    [path] = archive_files(tmp_path)
    records = list(read_archive(path))
    assert [kind for kind, _ in records] == ["event", "event"]
    assert [record for _, record in records] == sorted(expected, key=lambda e: e.sequence_number)
    assert all(isinstance(record, Event) for _, record in records)


def test_hard_deleted_sessions_are_archived_with_their_runs_and_events(tmp_path: Path) -> None:
    session = session_with_log(["session_created", "message_sent"], deleted_at=days_ago(40))
    run = RunFactory(session_id=session.id)

    DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))

    [path] = archive_files(tmp_path)
    records = list(read_archive(path))
    assert [kind for kind, _ in records] == ["session", "run", "event", "event"]
    assert records[0][1] == Session.from_dict(session.to_domain().to_dict())
    assert isinstance(records[1][1], Run)
    assert records[1][1].id == run.id
    assert [r.sequence_number for _, r in records[2:]] == [1, 2]  # type: ignore[union-attr]
    assert not m.Session.objects.filter(id=session.id).exists()


def test_archive_lines_hold_kind_and_record(tmp_path: Path) -> None:
    session = session_with_log(["message_sent", "message_sent"])

    DjangoMaintenance().execute(archiving(tmp_path, max_events_per_session=1))

    [path] = archive_files(tmp_path)
    [line] = path.read_text(encoding="utf-8").splitlines()
    entry = json.loads(line)
    assert set(entry) == {"kind", "record"}
    assert entry["kind"] == "event"
    assert entry["record"]["session_id"] == session.id
    assert entry["record"]["sequence_number"] == 1


def test_one_run_writes_one_file(tmp_path: Path) -> None:
    session_with_log(["message_sent"] * 3)
    session_with_log(["session_created"], deleted_at=days_ago(40))

    DjangoMaintenance().execute(
        archiving(tmp_path, max_events_per_session=1, hard_delete_after_days=30, batch_size=1)
    )

    [path] = archive_files(tmp_path)
    assert path.name.endswith(f"-{os.getpid()}.jsonl")
    kinds = [kind for kind, _ in read_archive(path)]
    assert sorted(kinds) == ["event", "event", "event", "session"]  # 2 pruned; 1 session, 1 event


def test_a_run_that_deletes_nothing_leaves_no_file(tmp_path: Path) -> None:
    session_with_log(["message_sent"])

    DjangoMaintenance().execute(archiving(tmp_path, max_events_per_session=5))

    assert archive_files(tmp_path) == []


def test_dry_run_writes_no_archive(tmp_path: Path) -> None:
    session_with_log(["message_sent"] * 3)

    report = DjangoMaintenance().execute(
        archiving(tmp_path, max_events_per_session=1), dry_run=True
    )

    assert report.events_pruned == 2
    assert archive_files(tmp_path) == []


def test_unwritable_archive_deletes_nothing_and_reports_the_error(tmp_path: Path) -> None:
    session_with_log(["message_sent"] * 3)
    session_with_log(["session_created"], deleted_at=days_ago(40))
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the archive directory should be")
    before = counts()

    report = DjangoMaintenance().execute(
        archiving(blocker, max_events_per_session=1, hard_delete_after_days=30)
    )

    assert counts() == before
    assert report.sessions_hard_deleted == 0
    assert report.events_pruned == 0
    assert len(report.errors) == 2
    assert all("archive" in error for error in report.errors)
