"""Restoring archives: ``DjangoMaintenance.restore`` and ``manage.py asm_restore`` (#11, item 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from agent_sessions import models as m
from agent_sessions.core import Event
from agent_sessions.errors import ArchiveError, RestoreConflictError
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.retention import RetentionPolicy
from agent_sessions.store import DjangoSessionStore
from tests.factories import ArtifactFactory, EventFactory, RunFactory, SessionFactory
from tests.maintenance_support import days_ago, event_log, policy

pytestmark = pytest.mark.django_db

TABLES = {
    "asm_sessions": "id",
    "asm_runs": "id",
    "asm_events": "id",
    "asm_session_sequences": "session_id",
    "asm_artifacts": "id",
}


def dump() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the five tables, as the database returns them, by primary key."""
    tables = {}
    with connection.cursor() as cursor:
        for table, key in TABLES.items():
            cursor.execute(f'SELECT * FROM "{table}" ORDER BY "{key}"')
            tables[table] = [tuple(row) for row in cursor.fetchall()]
    return tables


def archiving(directory: Path, **fields: Any) -> RetentionPolicy:
    return policy(archive_before_prune=True, archive_store=str(directory), **fields)


def archive_files(directory: Path) -> list[str]:
    return [str(p) for p in sorted(directory.glob("asm-archive-*.jsonl"))]


def expired_session(n_events: int = 3, *, counter_above: int = 0, **fields: Any) -> m.Session:
    session = SessionFactory(
        deleted_at=days_ago(40), tags=["a", "b"], metadata={"k": [1, 2.5]}, **fields
    )
    event_log(session.id, ["session_created"] + ["message_sent"] * (n_events - 1))
    if counter_above:
        m.SessionSequence.objects.filter(session_id=session.id).update(
            last_sequence=n_events + counter_above
        )
    RunFactory(
        session_id=session.id,
        status="completed",
        input={"prompt": "hi"},
        output={"answer": "ok"},
        token_usage={"input_tokens": 3},
        cost_usd=0.125,
        ended_at=days_ago(39),
    )
    ArtifactFactory(session_id=session.id, metadata={"m": 1})
    return session


def mixed_dataset() -> None:
    for number in range(4):
        expired_session(3 + number, counter_above=number % 2)
    expired_session(2, status="failed")
    live = SessionFactory(status="active")
    event_log(live.id, ["session_created"] + ["message_streamed"] * 6)
    RunFactory(session_id=live.id)
    ArtifactFactory(session_id=live.id)
    ArtifactFactory(session_id="ses_gone")  # orphaned
    ArtifactFactory(session_id=live.id, deleted_at=days_ago(1))  # soft-deleted artifact


ROUND_TRIP = {"hard_delete_after_days": 30, "max_events_per_session": 3, "batch_size": 2}


def test_archive_delete_restore_gives_back_the_same_five_tables(tmp_path: Path) -> None:
    mixed_dataset()
    before = dump()

    report = DjangoMaintenance().execute(archiving(tmp_path, **ROUND_TRIP))
    assert report.errors == []
    assert (report.sessions_hard_deleted, report.events_pruned, report.artifacts_cleaned) == (
        5,
        4,
        1,
    )
    assert dump() != before

    restored = DjangoMaintenance().restore(archive_files(tmp_path))

    assert dump() == before
    assert (restored.sessions_restored, restored.runs_restored, restored.artifacts_restored) == (
        5,
        5,
        6,
    )
    assert restored.events_restored == sum(3 + n for n in range(4)) + 2 + 4
    assert restored.counters_restored == 5
    assert restored.conflicts == []
    assert restored.unverified_files == []


def test_restoring_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    mixed_dataset()
    DjangoMaintenance().execute(archiving(tmp_path, **ROUND_TRIP))
    files = archive_files(tmp_path)
    first = DjangoMaintenance().restore(files)
    after_first = dump()

    second = DjangoMaintenance().restore(files)

    assert dump() == after_first
    assert second.events_restored == second.sessions_restored == 0
    assert second.already_present == first.records_read


def test_a_dry_run_counts_and_writes_nothing(tmp_path: Path) -> None:
    expired_session(4)
    DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))
    emptied = dump()

    report = DjangoMaintenance().restore(archive_files(tmp_path), dry_run=True)

    assert dump() == emptied
    assert (report.dry_run, report.sessions_restored, report.events_restored) == (True, 1, 4)


def test_a_live_session_that_differs_is_not_overwritten_and_nothing_is_restored(
    tmp_path: Path,
) -> None:
    session = expired_session(3)
    other = expired_session(2)
    DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))
    SessionFactory(id=session.id, agent_id="someone-else")
    before = dump()

    with pytest.raises(RestoreConflictError) as info:
        DjangoMaintenance().restore(archive_files(tmp_path))

    assert info.value.code == "restore_conflict"
    assert info.value.details["conflicts"] == [
        f"asm_sessions {session.id}: the live row differs from the archive"
    ]
    assert dump() == before
    assert not m.Session.objects.filter(id=other.id).exists()


def test_an_event_whose_sequence_number_was_taken_again_is_a_conflict(tmp_path: Path) -> None:
    session = expired_session(2)
    DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))
    taken = DjangoSessionStore().append_event(Event.new("message_sent", session.id))

    with pytest.raises(RestoreConflictError, match="sequence number 1"):
        DjangoMaintenance().restore(archive_files(tmp_path))

    assert list(m.Event.objects.values_list("id", flat=True)) == [taken.id]


def test_restored_pruned_events_keep_their_numbers_and_the_counter_is_never_lowered(
    tmp_path: Path,
) -> None:
    live = SessionFactory(status="active")
    event_log(live.id, ["message_streamed"] * 5)
    DjangoMaintenance().execute(archiving(tmp_path, max_events_per_session=2))
    appended = DjangoSessionStore().append_event(Event.new("message_sent", live.id))

    DjangoMaintenance().restore(archive_files(tmp_path))

    numbers = list(
        m.Event.objects.filter(session_id=live.id)
        .order_by("sequence_number")
        .values_list("sequence_number", flat=True)
    )
    assert numbers == [1, 2, 3, 4, 5, 6]
    assert appended.sequence_number == 6
    assert m.SessionSequence.objects.get(session_id=live.id).last_sequence == 6


def test_a_counter_below_the_restored_events_is_raised(tmp_path: Path) -> None:
    session = SessionFactory()
    event_log(session.id, ["message_streamed"] * 4)
    DjangoMaintenance().execute(archiving(tmp_path, max_events_per_session=1))
    m.SessionSequence.objects.filter(session_id=session.id).update(last_sequence=1)

    DjangoMaintenance().restore(archive_files(tmp_path))

    assert m.SessionSequence.objects.get(session_id=session.id).last_sequence == 3


def test_a_file_that_does_not_match_its_manifest_restores_nothing(tmp_path: Path) -> None:
    expired_session(3)
    DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))
    [path] = archive_files(tmp_path)
    Path(path).write_text(Path(path).read_text().replace('"message_sent"', '"message_snet"'))

    with pytest.raises(ArchiveError, match="SHA-256"):
        DjangoMaintenance().restore([path])

    assert not m.Session.objects.exists()


def test_an_archive_without_a_manifest_is_restored_unverified(tmp_path: Path) -> None:
    session = expired_session(2)
    DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))
    [path] = archive_files(tmp_path)
    Path(path + ".manifest.json").unlink()  # as an older version wrote it

    report = DjangoMaintenance().restore([path])

    assert report.unverified_files == [path]
    assert m.Session.objects.filter(id=session.id).exists()


def test_the_command_restores_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expired_session(3)
    DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))

    call_command("asm_restore", *archive_files(tmp_path), "--format=json")

    report = json.loads(capsys.readouterr().out)
    assert (report["sessions_restored"], report["events_restored"], report["dry_run"]) == (
        1,
        3,
        False,
    )
    assert m.Event.objects.count() == 3


def test_the_command_dry_run_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expired_session(3)
    DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))

    call_command("asm_restore", *archive_files(tmp_path), "--dry-run")

    assert "would restore 1 session(s)" in capsys.readouterr().out
    assert not m.Session.objects.exists()


def test_the_command_exits_1_on_a_conflict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = expired_session(3)
    DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))
    SessionFactory(id=session.id, agent_id="someone-else")

    with pytest.raises(CommandError) as info:
        call_command("asm_restore", *archive_files(tmp_path), "--format=json")

    assert info.value.returncode == 1
    failure = json.loads(capsys.readouterr().out)
    assert failure["error"] == "restore_conflict"
    assert failure["conflicts"] == [
        f"asm_sessions {session.id}: the live row differs from the archive"
    ]


def test_the_command_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as info:
        call_command("asm_restore", str(tmp_path / "nope.jsonl"))

    assert info.value.returncode == 1
    assert "archive_error" in str(info.value)


def test_an_event_archived_twice_is_restored_once(tmp_path: Path) -> None:
    session = SessionFactory()
    EventFactory(session_id=session.id, sequence_number=1, id="evt_once", type="message_streamed")
    EventFactory(session_id=session.id, sequence_number=2, type="message_sent")
    DjangoMaintenance().execute(archiving(tmp_path, max_events_per_session=1))
    [path] = archive_files(tmp_path)

    report = DjangoMaintenance().restore([path, path])

    assert report.events_restored == 1
    assert report.already_present == 1
    assert m.Event.objects.filter(id="evt_once").count() == 1
