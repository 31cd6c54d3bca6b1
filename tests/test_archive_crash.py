"""Crash-consistent archives (issue #11, item 2).

A failing disk is simulated by an injected archive file (the writer's
``opener``, or ``agent_sessions.archive.open_archive_file`` for maintenance
runs) that runs out of space, fails fsync, truncate or close, or cannot be
opened at all.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from agent_sessions import archive as archive_module
from agent_sessions import models as m
from agent_sessions.archive import (
    ArchiveScan,
    ArchiveWriter,
    manifest_path,
    open_archive_file,
    read_archive,
    read_archive_entries,
)
from agent_sessions.core import Event
from agent_sessions.errors import ArchiveError, StorageError
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.validation import utcnow
from tests.maintenance_support import counts, days_ago, policy, session_with_log

RECORD_BYTES = 400  # more than one encoded test event


@dataclass
class Disk:
    """What the injected archive files do; change it mid-run to let space return."""

    space: int | None = None  # bytes left; None = unlimited
    fail_open: OSError | None = None
    fail_sync: bool = False
    fail_truncate: bool = False
    fail_close: bool = False
    opened: int = 0


class FailingFile:
    """A real archive file in front of which a :class:`Disk` decides what fails."""

    def __init__(self, path: Path, disk: Disk) -> None:
        if disk.fail_open is not None:
            raise disk.fail_open
        self.inner = open_archive_file(path)
        self.disk = disk
        disk.opened += 1

    def write(self, data: bytes) -> int:
        if self.disk.space is None:
            return self.inner.write(data)
        if self.disk.space <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        # Like a filling disk: part of the line gets out before the error.
        written = self.inner.write(data[: self.disk.space])
        self.disk.space -= written
        return written

    def sync(self) -> None:
        if self.disk.fail_sync:
            raise OSError(errno.EIO, "Input/output error")
        self.inner.sync()

    def truncate(self, size: int) -> None:
        if self.disk.fail_truncate:
            raise OSError(errno.EIO, "Input/output error")
        self.inner.truncate(size)

    def close(self) -> None:
        self.inner.close()
        if self.disk.fail_close:
            raise OSError(errno.EIO, "Input/output error")


def writer(directory: Path, disk: Disk) -> ArchiveWriter:
    return ArchiveWriter(
        directory, started_at=utcnow(), opener=lambda path: FailingFile(path, disk)
    )


def events(n: int, prefix: str = "e") -> list[Event]:
    return [
        Event.new("message_sent", "ses_1", id=f"evt_{prefix}{i}", sequence_number=i + 1)
        for i in range(n)
    ]


def read_ids(directory: Path) -> list[str]:
    return [
        str(getattr(record, "id", None) or record["id"])  # type: ignore[index]
        for path in sorted(directory.glob("asm-archive-*.jsonl"))
        for _, record in read_archive(path)
    ]


# --------------------------------------------------------------------------- the writer


def test_a_full_disk_cuts_the_file_back_to_its_last_durable_batch(tmp_path: Path) -> None:
    disk = Disk()
    archive = writer(tmp_path, disk)
    archive.write("event", events(2, "a"))
    archive.sync()
    disk.space = RECORD_BYTES + 50  # room for one record and part of the next

    with pytest.raises(ArchiveError) as info:
        archive.write("event", events(3, "b"))

    assert info.value.code == "archive_error"
    assert "No space left" in info.value.message
    assert read_ids(tmp_path) == ["evt_a0", "evt_a1"]
    assert archive.path.read_bytes().endswith(b"\n")


def test_space_returning_mid_run_appends_whole_records_after_the_durable_ones(
    tmp_path: Path,
) -> None:
    disk = Disk()
    archive = writer(tmp_path, disk)
    archive.write("event", events(2, "a"))
    archive.sync()
    disk.space = 100
    with pytest.raises(ArchiveError):
        archive.write("event", events(2, "b"))
    disk.space = None  # space comes back

    archive.write("event", events(2, "c"))
    archive.sync()
    archive.close()

    scan = ArchiveScan(archive.path)
    assert [e.record["id"] for e in read_archive_entries(archive.path, scan)] == [
        "evt_a0",
        "evt_a1",
        "evt_c0",
        "evt_c1",
    ]
    assert (scan.verified, scan.skipped_lines, scan.unconfirmed) == (True, 0, 0)


def test_a_failed_fsync_abandons_the_segment_and_the_next_batch_starts_another(
    tmp_path: Path,
) -> None:
    disk = Disk()
    archive = writer(tmp_path, disk)
    archive.write("event", events(1, "a"))
    archive.sync()
    archive.write("event", events(1, "b"))
    disk.fail_sync = True

    with pytest.raises(ArchiveError, match="fsync"):
        archive.sync()

    disk.fail_sync = False
    archive.write("event", events(1, "c"))
    archive.sync()
    archive.close()
    assert len(archive.paths) == 2
    assert archive.paths[1].name.endswith("-1.jsonl")
    assert sorted(read_ids(tmp_path)) == ["evt_a0", "evt_c0"]


def test_a_torn_tail_that_cannot_be_truncated_is_skipped_by_the_reader(tmp_path: Path) -> None:
    disk = Disk()
    archive = writer(tmp_path, disk)
    archive.write("event", events(2, "a"))
    archive.sync()
    disk.space, disk.fail_truncate = 60, True
    with pytest.raises(ArchiveError):
        archive.write("event", events(1, "b"))
    disk.space, disk.fail_truncate = None, False

    archive.write("event", events(1, "c"))
    archive.sync()
    archive.close()

    first, second = archive.paths
    scan = ArchiveScan(first)
    assert [e.record["id"] for e in read_archive_entries(first, scan)] == ["evt_a0", "evt_a1"]
    assert (scan.verified, scan.skipped_lines) == (True, 1)
    assert [e.record["id"] for e in read_archive_entries(second)] == ["evt_c0"]


def test_a_record_glued_to_a_torn_line_by_an_older_writer_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "asm-archive-old.jsonl"
    lines = [
        json.dumps({"kind": "event", "record": e.to_dict()}, separators=(",", ":"))
        for e in events(3)
    ]
    path.write_text(lines[0] + "\n" + lines[1][:70] + lines[2] + "\n", encoding="utf-8")

    scan = ArchiveScan(path)
    ids = [e.record["id"] for e in read_archive_entries(path, scan)]

    assert ids == ["evt_e0", "evt_e2"]
    assert scan.verified is False  # no manifest: an older archive, read unverified


def test_a_file_that_does_not_match_its_manifest_is_refused(tmp_path: Path) -> None:
    archive = writer(tmp_path, Disk())
    archive.write("event", events(2))
    archive.close()
    data = archive.path.read_bytes()
    archive.path.write_bytes(data.replace(b"evt_e1", b"evt_x1"))

    with pytest.raises(ArchiveError, match="SHA-256"):
        list(read_archive(archive.path))


def test_the_manifest_counts_records_by_kind(tmp_path: Path) -> None:
    archive = writer(tmp_path, Disk())
    archive.write("event", events(2))
    archive.close()

    manifest = json.loads(manifest_path(archive.path).read_text())

    assert manifest["counts"] == {"event": 2}
    assert manifest["records"] == 2
    assert manifest["bytes"] == archive.path.stat().st_size


def test_a_failing_close_is_an_archive_error_after_the_data_is_durable(tmp_path: Path) -> None:
    disk = Disk(fail_close=True)
    archive = writer(tmp_path, disk)
    archive.write("event", events(1))

    with pytest.raises(ArchiveError, match="close"):
        archive.close()

    assert read_ids(tmp_path) == ["evt_e0"]


# --------------------------------------------------------------------------- maintenance


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    """Every archive file maintenance opens in this test goes through this disk."""
    state = Disk()
    monkeypatch.setattr(archive_module, "open_archive_file", lambda path: FailingFile(path, state))
    return state


def archiving(directory: Path, **fields: Any) -> Any:
    return policy(archive_before_prune=True, archive_store=str(directory), **fields)


def expired_sessions(n: int) -> list[str]:
    return [
        session_with_log(["session_created", "message_sent"], deleted_at=days_ago(40)).id
        for _ in range(n)
    ]


@pytest.mark.django_db
def test_a_disk_filling_mid_run_deletes_only_what_was_durably_archived(
    tmp_path: Path, disk: Disk
) -> None:
    expired_sessions(6)
    disk.space = 2600  # about two sessions' records (a session, its two events)

    report = DjangoMaintenance().execute(
        archiving(tmp_path, hard_delete_after_days=30, batch_size=1)
    )

    archived = read_ids(tmp_path)
    gone = [sid for sid in archived if sid.startswith("ses_")]
    assert 0 < len(gone) < 6
    assert not m.Session.objects.filter(id__in=gone).exists()
    assert m.Session.objects.count() == 6 - len(gone)
    assert m.Event.objects.count() == 2 * (6 - len(gone))
    assert [e.split(":")[0] for e in report.errors] == ["hard_delete_expired_sessions"]
    assert "No space left" in report.errors[0]
    # A failed step counts 0 (CONTRACT §8); its message says what it had done.
    assert report.sessions_hard_deleted == 0
    assert f"({len(gone)} rows were done before the failure)" in report.errors[0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("failure", "words"),
    [
        ({"fail_open": OSError(errno.EROFS, "Read-only file system")}, "Read-only"),
        ({"fail_open": PermissionError(errno.EACCES, "Permission denied")}, "Permission"),
        ({"space": 0}, "No space left"),
        ({"fail_sync": True}, "fsync"),
    ],
    ids=["read-only", "permission", "disk-full", "fsync"],
)
def test_an_archive_that_cannot_be_written_deletes_nothing(
    tmp_path: Path, disk: Disk, failure: dict[str, Any], words: str
) -> None:
    expired_sessions(2)
    session_with_log(["message_sent"] * 3)
    for name, value in failure.items():
        setattr(disk, name, value)
    before = counts()

    report = DjangoMaintenance().execute(
        archiving(tmp_path, hard_delete_after_days=30, max_events_per_session=1)
    )

    assert counts() == before
    assert (report.sessions_hard_deleted, report.events_pruned) == (0, 0)
    assert len(report.errors) == 2
    assert all(words in error for error in report.errors)


@pytest.mark.django_db
def test_a_failing_close_is_reported_and_what_was_archived_stays_deleted(
    tmp_path: Path, disk: Disk
) -> None:
    expired_sessions(1)
    disk.fail_close = True

    report = DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))

    assert report.sessions_hard_deleted == 1
    assert [error.split(":")[0] for error in report.errors] == ["archive"]
    assert len(read_ids(tmp_path)) == 3


@pytest.mark.django_db
@pytest.mark.parametrize("output", ["text", "json"])
def test_the_command_prints_a_report_and_exits_1_when_the_archive_fails(
    tmp_path: Path, disk: Disk, output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expired_sessions(1)
    disk.space = 0

    with pytest.raises(CommandError) as info:
        call_command(
            "asm_maintenance",
            "--hard-delete-after-days=30",
            f"--archive-dir={tmp_path}",
            f"--format={output}",
        )

    assert info.value.returncode == 1
    out, err = capsys.readouterr()
    if output == "json":
        report = json.loads(out)
        assert report["sessions_hard_deleted"] == 0
        assert "No space left" in report["errors"][0]
    else:
        assert "No space left" in err
        assert "hard-deleted 0 session(s)" in out
    assert m.Session.objects.count() == 1


def test_archive_errors_are_storage_errors() -> None:
    assert issubclass(ArchiveError, StorageError)


@pytest.mark.django_db
def test_records_of_a_batch_that_never_finished_are_not_restored(tmp_path: Path) -> None:
    from agent_sessions.maintenance import DjangoMaintenance as Maintenance
    from tests.factories import EventFactory

    disk = Disk()
    archive = writer(tmp_path, disk)
    archive.write("event", events(1, "a"))
    archive.sync()
    archive.write("event", events(1, "b"))  # whole lines, then fsync and truncate fail
    disk.fail_sync = disk.fail_truncate = True
    with pytest.raises(ArchiveError):
        archive.sync()
    # The failed batch's row was never deleted, and has changed since.
    EventFactory(id="evt_b0", session_id="ses_1", sequence_number=2, type="message_streamed")

    report = Maintenance().restore(archive.paths)

    assert report.unconfirmed_skipped == 1
    assert report.conflicts == []
    assert m.Event.objects.get(id="evt_b0").type == "message_streamed"
