"""``manage.py asm_maintenance`` (CONTRACT §9): flags, output, exit status, overlap."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agent_sessions import models as m
from agent_sessions.errors import StorageError
from agent_sessions.maintenance import DjangoMaintenance
from tests.factories import SessionFactory
from tests.maintenance_support import (
    counts,
    days_ago,
    release,
    run_manage,
    session_with_log,
    start_lock_holder,
    stored_types,
)

pytestmark = pytest.mark.django_db


def maintain(*args: str) -> tuple[str, str]:
    """Run the command in this process; return (stdout, stderr)."""
    out, err = StringIO(), StringIO()
    call_command("asm_maintenance", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def retention(settings: Any) -> dict[str, Any]:
    """settings.AGENT_SESSIONS["RETENTION"], empty (defaults) until a test fills it."""
    settings.AGENT_SESSIONS = {"RETENTION": {}}
    return settings.AGENT_SESSIONS["RETENTION"]  # type: ignore[no-any-return]


def _deleted(session: m.Session) -> bool:
    session.refresh_from_db()
    return session.deleted_at is not None


# --------------------------------------------------------------------------- policy


def test_policy_comes_from_settings(retention: dict[str, Any]) -> None:
    retention["max_completed_session_age_days"] = 10
    stale = SessionFactory(status="completed", updated_at=days_ago(11))

    maintain()

    assert _deleted(stale)


def test_limit_flag_overrides_the_setting(retention: dict[str, Any]) -> None:
    retention["max_completed_session_age_days"] = 10
    stale = SessionFactory(status="completed", updated_at=days_ago(11))

    maintain("--max-completed-session-age-days", "20")

    assert not _deleted(stale)


def test_none_turns_a_limit_off(retention: dict[str, Any]) -> None:
    stale = SessionFactory(status="completed", updated_at=days_ago(365))

    maintain("--max-completed-session-age-days", "none")

    assert not _deleted(stale)


def test_every_limit_flag_sets_its_policy_field(
    retention: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(
        DjangoMaintenance,
        "execute",
        lambda self, policy, dry_run, lock=None: seen.append(policy) or _empty(),
    )

    maintain(
        "--max-session-age-days=1",
        "--max-completed-session-age-days=2",
        "--hard-delete-after-days=3",
        "--max-events-per-session=4",
        "--max-total-events=5",
        "--batch-size=6",
        "--exempt-status=active",
        "--exempt-status=pending",
        "--exempt-tag=keep",
        "--prune-event-types-first=message_streamed, turn_completed",
        "--archive-dir=/tmp/asm-archive-flag-test",
    )

    [policy] = seen
    assert (
        policy.max_session_age_days,
        policy.max_completed_session_age_days,
        policy.hard_delete_after_days,
        policy.max_events_per_session,
        policy.max_total_events,
        policy.batch_size,
    ) == (1, 2, 3, 4, 5, 6)
    assert policy.exempt_statuses == ["active", "pending"]
    assert policy.exempt_tags == ["keep"]
    assert policy.prune_event_types_first == ["message_streamed", "turn_completed"]
    assert policy.archive_before_prune is True
    assert policy.archive_store == "/tmp/asm-archive-flag-test"


def _empty() -> Any:
    from agent_sessions.results import MaintenanceReport

    return MaintenanceReport()


def test_exempt_status_flag_replaces_the_configured_list(retention: dict[str, Any]) -> None:
    retention["exempt_statuses"] = ["completed"]
    completed = SessionFactory(status="completed", updated_at=days_ago(365))
    active = SessionFactory(status="active", updated_at=days_ago(365))

    maintain("--exempt-status", "active")

    assert _deleted(completed)
    assert not _deleted(active)


def test_prune_event_types_first_flag_sets_the_pruning_order(retention: dict[str, Any]) -> None:
    session = session_with_log(["message_sent", "message_streamed", "turn_completed"])

    maintain("--max-events-per-session=2", "--prune-event-types-first=turn_completed")

    assert stored_types(session.id) == ["message_sent", "message_streamed"]


def test_archive_dir_flag_turns_archiving_on(retention: dict[str, Any], tmp_path: Path) -> None:
    session_with_log(["message_sent"] * 2)

    maintain("--max-events-per-session=1", f"--archive-dir={tmp_path}")

    assert len(list(tmp_path.glob("asm-archive-*.jsonl"))) == 1


def test_dry_run_flag_changes_nothing(retention: dict[str, Any]) -> None:
    SessionFactory(status="completed", updated_at=days_ago(365))
    before = counts()

    out, _ = maintain("--dry-run")

    assert counts() == before
    assert "would soft-delete 1 session(s)" in out


def test_database_flag_selects_the_alias(retention: dict[str, Any]) -> None:
    stale = SessionFactory(status="completed", updated_at=days_ago(365))

    maintain("--database", "default")

    assert _deleted(stale)


# --------------------------------------------------------------------------- output


def test_text_output_is_a_short_summary(retention: dict[str, Any]) -> None:
    SessionFactory(status="completed", updated_at=days_ago(365))

    out, err = maintain()

    assert re.fullmatch(
        r"Done: soft-deleted 1 session\(s\), hard-deleted 0 session\(s\), "
        r"pruned 0 event\(s\), cleaned 0 orphaned artifact\(s\) and "
        r"0 orphaned sequence counter\(s\) \(\d+ ms\)\.\n",
        out,
    )
    assert err == ""


def test_verbosity_0_prints_nothing_on_success(retention: dict[str, Any]) -> None:
    SessionFactory(status="completed", updated_at=days_ago(365))

    assert maintain("-v", "0") == ("", "")


def test_verbosity_2_prints_progress_per_batch(retention: dict[str, Any]) -> None:
    for _ in range(3):
        SessionFactory(status="completed", updated_at=days_ago(365))

    out, _ = maintain("-v", "2", "--batch-size", "2")

    progress = [line for line in out.splitlines() if "soft_delete_expired_sessions" in line]
    assert progress == [
        "  soft_delete_expired_sessions: batch of 2, 2 so far",
        "  soft_delete_expired_sessions: batch of 1, 3 so far",
    ]


def test_json_format_prints_one_object_with_the_report_and_dry_run(
    retention: dict[str, Any],
) -> None:
    SessionFactory(status="completed", updated_at=days_ago(365))

    out, _ = maintain("--format", "json", "--dry-run", "-v", "2")

    report = json.loads(out)
    assert set(report) == {
        "sessions_soft_deleted",
        "sessions_hard_deleted",
        "events_pruned",
        "artifacts_cleaned",
        "orphaned_sequences_cleaned",
        "duration_ms",
        "errors",
        "dry_run",
    }
    assert report["sessions_soft_deleted"] == 1
    assert report["dry_run"] is True


def test_errors_are_printed_and_exit_1(
    retention: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> int:
        raise StorageError("storage_error", "disk on fire")

    monkeypatch.setattr(DjangoMaintenance, "_orphaned_artifacts", broken)
    err = StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("asm_maintenance", "-v", "0", stdout=StringIO(), stderr=err)

    assert caught.value.returncode == 1
    assert "clean_orphaned_artifacts" in err.getvalue()
    assert "disk on fire" in err.getvalue()


@pytest.mark.parametrize(
    "flags",
    [
        ["--max-events-per-session", "many"],
        ["--max-total-events", "0"],
        ["--batch-size", "none"],
        ["--exempt-status", "sleeping"],
        ["--prune-event-types-first", "message_sent,nonsense"],
    ],
)
def test_bad_flag_values_exit_2(retention: dict[str, Any], flags: list[str]) -> None:
    SessionFactory(status="completed", updated_at=days_ago(365))
    before = counts()

    with pytest.raises(CommandError) as caught:
        maintain(*flags)

    assert caught.value.returncode == 2
    assert counts() == before


def test_unknown_database_exits_2(retention: dict[str, Any]) -> None:
    with pytest.raises(CommandError) as caught:
        maintain("--database", "nowhere")

    assert caught.value.returncode == 2


# --------------------------------------------------------------------------- health check


def test_health_check_flag_reports_issues_and_exits_1(retention: dict[str, Any]) -> None:
    session_with_log(["message_sent"], id="ses_x").delete()
    err = StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("asm_maintenance", "--health-check", stdout=StringIO(), stderr=err)

    assert caught.value.returncode == 1
    assert "1 events reference non-existent sessions" in err.getvalue()


def test_health_check_flag_only_checks(retention: dict[str, Any]) -> None:
    SessionFactory(status="completed", updated_at=days_ago(365))
    before = counts()

    out, _ = maintain("--health-check")

    assert counts() == before
    assert "Healthy" in out


def test_health_check_in_json(retention: dict[str, Any]) -> None:
    out, _ = maintain("--health-check", "--format=json")

    assert json.loads(out) == {"healthy": True, "issues": []}


# --------------------------------------------------------------------------- real processes


@pytest.mark.django_db(transaction=True)
def test_command_line_exit_status_is_0_on_success() -> None:
    SessionFactory(status="completed", updated_at=days_ago(365))

    done = run_manage("asm_maintenance", "--format=json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sessions_soft_deleted"] == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("flags", [["--format=xml"], ["--no-such-flag"], ["--max-total-events=-3"]])
def test_command_line_exit_status_is_2_for_bad_flags(flags: list[str]) -> None:
    done = run_manage("asm_maintenance", *flags)

    assert done.returncode == 2, done.stderr


@pytest.mark.django_db(transaction=True)
def test_second_overlapping_run_says_lock_exits_0_and_changes_nothing() -> None:
    stale = SessionFactory(status="completed", updated_at=days_ago(365))
    before = counts()
    holder = start_lock_holder()
    try:
        second = run_manage("asm_maintenance")
    finally:
        release(holder)

    assert second.returncode == 0, second.stderr
    assert "lock" in second.stdout
    assert counts() == before
    assert not _deleted(stale)


@pytest.mark.django_db(transaction=True)
def test_the_lock_is_released_when_the_holder_ends() -> None:
    stale = SessionFactory(status="completed", updated_at=days_ago(365))
    release(start_lock_holder())

    done = run_manage("asm_maintenance")

    assert done.returncode == 0, done.stderr
    assert _deleted(stale)


@pytest.mark.django_db(transaction=True)
def test_a_locked_run_in_json_says_locked() -> None:
    holder = start_lock_holder()
    try:
        second = run_manage("asm_maintenance", "--format=json", "--dry-run")
    finally:
        release(holder)

    assert second.returncode == 0, second.stderr
    answer = json.loads(second.stdout)
    assert answer["locked"] is True
    assert answer["dry_run"] is True
    assert "lock" in answer["message"]
