"""Destructive batches delete exactly what they archived (issue #11, item 1).

Each test lets a row become deletable (or appear) right after a batch's
archive was synced and before its DELETEs run, and shows that the late row
is neither deleted nor archived by that batch, and goes in the next run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connections

from agent_sessions import models as m
from agent_sessions.archive import ArchiveWriter, read_archive
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.retention import RetentionPolicy
from tests.factories import ArtifactFactory, EventFactory, RunFactory, SessionFactory
from tests.maintenance_support import days_ago, event_log, policy, session_with_log

pytestmark = pytest.mark.django_db


def archiving(directory: Path, **fields: object) -> RetentionPolicy:
    return policy(archive_before_prune=True, archive_store=str(directory), **fields)


def archived_ids(directory: Path, kind: str) -> list[str]:
    return [
        str(getattr(record, "id", None) or record["id"])  # type: ignore[index]
        for path in sorted(directory.glob("asm-archive-*.jsonl"))
        for found, record in read_archive(path)
        if found == kind
    ]


Inject = Callable[[Callable[[], None]], None]


@pytest.fixture
def after_first_sync(monkeypatch: pytest.MonkeyPatch) -> Inject:
    """Run a function once, right after the first archive sync of the run."""
    pending: list[Callable[[], None]] = []
    real_sync = ArchiveWriter.sync

    def sync(self: ArchiveWriter) -> None:
        real_sync(self)
        while pending:
            pending.pop()()

    monkeypatch.setattr(ArchiveWriter, "sync", sync)
    return pending.append


def test_a_session_that_expires_between_archive_and_delete_waits_for_the_next_run(
    tmp_path: Path, after_first_sync: Inject
) -> None:
    first = SessionFactory(id="ses_a", deleted_at=days_ago(40))
    late = SessionFactory(id="ses_b", deleted_at=None)
    last = SessionFactory(id="ses_c", deleted_at=days_ago(40))
    after_first_sync(lambda: m.Session.objects.filter(id=late.id).update(deleted_at=days_ago(50)))
    retention = archiving(tmp_path, hard_delete_after_days=30)

    report = DjangoMaintenance().execute(retention)

    assert report.errors == []
    assert report.sessions_hard_deleted == 2
    assert archived_ids(tmp_path, "session") == [first.id, last.id]
    assert list(m.Session.objects.values_list("id", flat=True)) == [late.id]

    again = DjangoMaintenance().execute(retention)

    assert again.sessions_hard_deleted == 1
    assert archived_ids(tmp_path, "session") == [first.id, last.id, late.id]
    assert not m.Session.objects.exists()


def test_an_event_written_between_archive_and_delete_survives_the_cascade(
    tmp_path: Path, after_first_sync: Inject
) -> None:
    session = session_with_log(["session_created", "message_sent"], deleted_at=days_ago(40))
    run = RunFactory(session_id=session.id)
    artifact = ArtifactFactory(session_id=session.id)
    after_first_sync(
        lambda: (
            EventFactory(session_id=session.id, sequence_number=3, id="evt_late"),
            RunFactory(session_id=session.id, id="run_late"),
            ArtifactFactory(session_id=session.id, id="art_late", key="late"),
        )
    )

    report = DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))

    assert report.errors == []
    assert report.sessions_hard_deleted == 1
    assert len(archived_ids(tmp_path, "event")) == 2
    assert archived_ids(tmp_path, "run") == [run.id]
    # Not archived by the cascade, so not deleted by it: the late event and run
    # stay (the health check reports them); the late artifact, now orphaned,
    # is archived and deleted by the orphan clean-up later in the run.
    assert list(m.Event.objects.values_list("id", flat=True)) == ["evt_late"]
    assert list(m.Run.objects.values_list("id", flat=True)) == ["run_late"]
    assert archived_ids(tmp_path, "artifact") == [artifact.id, "art_late"]
    assert not m.Artifact.objects.exists()


def test_an_event_that_becomes_prunable_between_archive_and_delete_is_pruned_next_run(
    tmp_path: Path, after_first_sync: Inject
) -> None:
    session = session_with_log(["message_sent"] * 3)
    after_first_sync(
        lambda: EventFactory(
            session_id=session.id, sequence_number=4, id="evt_late", timestamp=days_ago(0.5)
        )
    )
    retention = archiving(tmp_path, max_events_per_session=1)

    report = DjangoMaintenance().execute(retention)

    assert report.events_pruned == 2
    kept = set(m.Event.objects.values_list("id", flat=True))
    assert "evt_late" in kept
    assert "evt_late" not in archived_ids(tmp_path, "event")
    assert len(kept) == 2

    DjangoMaintenance().execute(retention)

    assert m.Event.objects.count() == 1
    assert len(archived_ids(tmp_path, "event")) == 3


def test_an_artifact_orphaned_between_archive_and_delete_waits_for_the_next_run(
    tmp_path: Path, after_first_sync: Inject
) -> None:
    ArtifactFactory(id="art_a", key="a", session_id="ses_gone")
    owner = SessionFactory(id="ses_owner")
    ArtifactFactory(id="art_b", key="b", session_id=owner.id)
    ArtifactFactory(id="art_c", key="c", session_id="ses_gone")
    after_first_sync(lambda: m.Session.objects.filter(id=owner.id).delete())
    retention = archiving(tmp_path)

    report = DjangoMaintenance().execute(retention)

    assert report.artifacts_cleaned == 2
    assert archived_ids(tmp_path, "artifact") == ["art_a", "art_c"]
    assert list(m.Artifact.objects.values_list("id", flat=True)) == ["art_b"]

    assert DjangoMaintenance().execute(retention).artifacts_cleaned == 1
    assert archived_ids(tmp_path, "artifact") == ["art_a", "art_c", "art_b"]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_commit_from_another_connection_between_archive_and_delete_is_not_deleted(
    tmp_path: Path, after_first_sync: Inject
) -> None:
    SessionFactory(id="ses_a", deleted_at=days_ago(40))
    SessionFactory(id="ses_b", deleted_at=None)
    SessionFactory(id="ses_c", deleted_at=days_ago(40))
    event_log("ses_a", ["session_created"])
    other = connections["default"].copy()

    def commit_elsewhere() -> None:
        with other.cursor() as cursor:  # autocommit: committed when execute returns
            cursor.execute(
                "UPDATE asm_sessions SET deleted_at = %s WHERE id = 'ses_b'",
                [dt.datetime(2000, 1, 1)],
            )
            cursor.execute(
                "INSERT INTO asm_events (id, type, timestamp, session_id, sequence_number, "
                "data, metadata, schema_version) VALUES ('evt_late', 'message_sent', now(), "
                "'ses_a', 2, '{}', '{}', 1)"
            )

    after_first_sync(commit_elsewhere)
    try:
        report = DjangoMaintenance().execute(archiving(tmp_path, hard_delete_after_days=30))
    finally:
        other.close()

    assert report.sessions_hard_deleted == 2
    assert archived_ids(tmp_path, "session") == ["ses_a", "ses_c"]
    assert list(m.Session.objects.values_list("id", flat=True)) == ["ses_b"]
    assert list(m.Event.objects.values_list("id", flat=True)) == ["evt_late"]
