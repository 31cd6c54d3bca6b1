"""DjangoMaintenance applies a RetentionPolicy (CONTRACT §7-8), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from agent_sessions import models as m
from agent_sessions import pruning as pruning_module
from agent_sessions.core import Event
from agent_sessions.errors import MigrationRequiredError, StorageError, ValidationError
from agent_sessions.maintenance import PROTECTED_EVENT_TYPES, DjangoMaintenance
from agent_sessions.retention import RetentionPolicy
from agent_sessions.store import DjangoSessionStore
from tests.factories import (
    ArtifactFactory,
    EventFactory,
    RunFactory,
    SessionFactory,
    SessionSequenceFactory,
)
from tests.maintenance_support import (
    counts,
    days_ago,
    event_log,
    policy,
    session_with_log,
    stored_types,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def maintenance() -> DjangoMaintenance:
    return DjangoMaintenance()


def _deleted(session: m.Session) -> bool:
    session.refresh_from_db()
    return session.deleted_at is not None


# --------------------------------------------------------------------------- soft delete


def test_soft_delete_marks_sessions_not_updated_within_the_completed_age(
    maintenance: DjangoMaintenance,
) -> None:
    stale = SessionFactory(status="completed", updated_at=days_ago(91))
    fresh = SessionFactory(status="completed", updated_at=days_ago(89))

    assert maintenance.soft_delete_expired_sessions(policy(max_completed_session_age_days=90)) == 1

    assert _deleted(stale)
    assert not _deleted(fresh)


def test_soft_delete_sets_deleted_at_to_now(maintenance: DjangoMaintenance) -> None:
    stale = SessionFactory(status="failed", updated_at=days_ago(100))
    before = days_ago(0)

    maintenance.soft_delete_expired_sessions(policy(max_completed_session_age_days=90))

    stale.refresh_from_db()
    assert before <= stale.deleted_at <= days_ago(0)


def test_soft_delete_spares_exempt_statuses(maintenance: DjangoMaintenance) -> None:
    active = SessionFactory(status="active", updated_at=days_ago(365))
    paused = SessionFactory(status="paused", updated_at=days_ago(365))
    pending = SessionFactory(status="pending", updated_at=days_ago(365))

    maintenance.soft_delete_expired_sessions(policy(max_completed_session_age_days=90))

    assert not _deleted(active)
    assert not _deleted(paused)
    assert _deleted(pending)


def test_soft_delete_spares_sessions_with_an_exempt_tag(maintenance: DjangoMaintenance) -> None:
    pinned = SessionFactory(status="completed", updated_at=days_ago(365), tags=["x", "pinned"])
    tagged = SessionFactory(status="completed", updated_at=days_ago(365), tags=["x"])
    untagged = SessionFactory(status="completed", updated_at=days_ago(365), tags=None)

    maintenance.soft_delete_expired_sessions(policy(max_completed_session_age_days=90))

    assert not _deleted(pinned)
    assert _deleted(tagged)
    assert _deleted(untagged)


def test_max_session_age_soft_deletes_any_status_by_creation_time(
    maintenance: DjangoMaintenance,
) -> None:
    old_active = SessionFactory(status="active", created_at=days_ago(31), updated_at=days_ago(0))
    young_active = SessionFactory(status="active", created_at=days_ago(29))
    old_pinned = SessionFactory(status="active", created_at=days_ago(31), tags=["pinned"])

    assert maintenance.soft_delete_expired_sessions(policy(max_session_age_days=30)) == 1

    assert _deleted(old_active)
    assert not _deleted(young_active)
    assert not _deleted(old_pinned)


def test_soft_delete_leaves_already_deleted_sessions_alone(maintenance: DjangoMaintenance) -> None:
    earlier = days_ago(10)
    gone = SessionFactory(status="completed", updated_at=days_ago(365), deleted_at=earlier)

    assert maintenance.soft_delete_expired_sessions(policy(max_completed_session_age_days=90)) == 0

    gone.refresh_from_db()
    assert gone.deleted_at == earlier


# --------------------------------------------------------------------------- hard delete


def test_hard_delete_removes_sessions_with_runs_events_counter_and_artifacts(
    maintenance: DjangoMaintenance,
) -> None:
    doomed = session_with_log(["session_created", "message_sent"], deleted_at=days_ago(31))
    RunFactory(session_id=doomed.id)
    ArtifactFactory(session_id=doomed.id)
    kept = session_with_log(["session_created"], deleted_at=days_ago(29))
    RunFactory(session_id=kept.id)
    ArtifactFactory(session_id=kept.id)

    assert maintenance.hard_delete_expired_sessions(policy(hard_delete_after_days=30)) == 1

    for model in (m.Run, m.Event, m.SessionSequence, m.Artifact):
        assert not model.objects.filter(session_id=doomed.id).exists()
        assert model.objects.filter(session_id=kept.id).exists()
    assert list(m.Session.objects.values_list("id", flat=True)) == [kept.id]


def test_hard_delete_ignores_sessions_that_are_not_soft_deleted(
    maintenance: DjangoMaintenance,
) -> None:
    SessionFactory(status="completed", created_at=days_ago(999), updated_at=days_ago(999))

    assert maintenance.hard_delete_expired_sessions(policy(hard_delete_after_days=30)) == 0
    assert m.Session.objects.count() == 1


@pytest.fixture
def failing_artifact_delete(vendor: str) -> Any:
    """Install a trigger that makes deleting one session's artifacts fail.

    The trigger lives in the test's transaction and is rolled back with it.
    """

    def install(session_id: str) -> None:
        with connection.cursor() as cursor:
            if vendor == "postgresql":
                cursor.execute(
                    "CREATE FUNCTION asm_test_refuse_delete() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'refusing to delete artifact'; END $$ LANGUAGE plpgsql"
                )
                cursor.execute(
                    "CREATE TRIGGER asm_test_refuse BEFORE DELETE ON asm_artifacts FOR EACH ROW "
                    f"WHEN (OLD.session_id = '{session_id}') "
                    "EXECUTE FUNCTION asm_test_refuse_delete()"
                )
            else:
                cursor.execute(
                    "CREATE TRIGGER asm_test_refuse BEFORE DELETE ON asm_artifacts "
                    f"WHEN OLD.session_id = '{session_id}' "
                    "BEGIN SELECT RAISE(ABORT, 'refusing to delete artifact'); END"
                )

    return install


def test_hard_delete_is_atomic_per_session_when_its_cascade_fails_midway(
    maintenance: DjangoMaintenance, failing_artifact_delete: Any
) -> None:
    # Events, runs and the counter are deleted before artifacts: the failure
    # comes in the middle of the cascade.
    sessions = [
        session_with_log(["session_created", "message_sent"], deleted_at=days_ago(40))
        for _ in range(3)
    ]
    for session in sessions:
        RunFactory(session_id=session.id)
        ArtifactFactory(session_id=session.id)
    broken = sessions[1]
    failing_artifact_delete(broken.id)
    before = {
        model: model.objects.filter(session_id=broken.id).count()
        for model in (m.Run, m.Event, m.SessionSequence, m.Artifact)
    }

    with pytest.raises(StorageError, match=broken.id):
        maintenance.hard_delete_expired_sessions(policy(hard_delete_after_days=30, batch_size=10))

    assert m.Session.objects.filter(id=broken.id).exists()
    for model, count in before.items():
        assert model.objects.filter(session_id=broken.id).count() == count
    others = [sessions[0].id, sessions[2].id]
    assert not m.Session.objects.filter(id__in=others).exists()
    assert not m.Event.objects.filter(session_id__in=others).exists()


# --------------------------------------------------------------------------- pruning


def test_prune_deletes_prune_first_types_oldest_first(maintenance: DjangoMaintenance) -> None:
    types = ["session_created", "message_sent", "message_streamed", "token_usage_updated"]
    session = session_with_log([*types, "message_streamed"])

    pruned = maintenance.prune_session_events(session.id, policy(max_events_per_session=3))

    assert pruned == 2
    assert stored_types(session.id) == ["session_created", "message_sent", "message_streamed"]
    assert list(
        m.Event.objects.filter(session_id=session.id).values_list("sequence_number", flat=True)
    ) == [1, 2, 5]


def test_prune_then_deletes_the_oldest_other_events(maintenance: DjangoMaintenance) -> None:
    session = session_with_log(
        [
            "session_created",
            "message_sent",
            "message_streamed",
            "tool_call_started",
            "turn_completed",
        ]
    )

    pruned = maintenance.prune_session_events(session.id, policy(max_events_per_session=2))

    assert pruned == 3
    assert stored_types(session.id) == ["session_created", "turn_completed"]


def test_prune_never_deletes_protected_types(maintenance: DjangoMaintenance) -> None:
    protected = sorted(PROTECTED_EVENT_TYPES)
    session = session_with_log([*protected, "message_sent"])

    pruned = maintenance.prune_session_events(session.id, policy(max_events_per_session=1))

    assert pruned == 1
    assert sorted(stored_types(session.id)) == protected


def test_prune_never_lowers_the_counter_and_appends_continue(
    maintenance: DjangoMaintenance,
) -> None:
    store = DjangoSessionStore()
    session = SessionFactory()
    for _ in range(6):
        store.append_event(Event.new("message_streamed", session.id))

    maintenance.prune_session_events(session.id, policy(max_events_per_session=2))

    assert store.get_latest_sequence(session.id) == 6
    assert store.append_event(Event.new("message_sent", session.id)).sequence_number == 7
    assert maintenance.health_check() == []


def test_prune_events_applies_the_cap_to_every_session(maintenance: DjangoMaintenance) -> None:
    over = [session_with_log(["message_sent"] * 5) for _ in range(3)]
    under = session_with_log(["message_sent"] * 2)

    assert maintenance.prune_events(policy(max_events_per_session=2, batch_size=2)) == 9

    for session in [*over, under]:
        assert m.Event.objects.filter(session_id=session.id).count() == 2


def test_prune_events_walks_the_whole_table_in_bounded_windows(
    maintenance: DjangoMaintenance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows are at least 10,000 events for speed; lift that floor so these
    # 35 events span several windows of 10 (10 * batch_size).
    monkeypatch.setattr(pruning_module, "_MIN_WINDOW_EVENTS", 0)
    sessions = [session_with_log(["session_created"] + ["message_sent"] * 4) for _ in range(7)]
    retention = policy(max_events_per_session=2, batch_size=1)  # windows of 10 events

    assert maintenance.prune_events(retention, dry_run=True) == 21
    assert maintenance.prune_events(retention) == 21

    for session in sessions:
        assert stored_types(session.id) == ["session_created", "message_sent"]


def test_max_total_events_prunes_oldest_across_sessions_prune_first_types_first(
    maintenance: DjangoMaintenance,
) -> None:
    older, newer = SessionFactory(), SessionFactory()
    event_log(older.id, ["session_created", "message_sent", "message_sent"], start=days_ago(3))
    event_log(newer.id, ["session_created", "message_sent", "message_streamed"], start=days_ago(1))

    assert maintenance.prune_events(policy(max_total_events=4)) == 2

    # The streamed event goes first although it is the newest; then the oldest other.
    assert stored_types(older.id) == ["session_created", "message_sent"]
    assert stored_types(newer.id) == ["session_created", "message_sent"]
    assert list(
        m.Event.objects.filter(session_id=older.id).values_list("sequence_number", flat=True)
    ) == [1, 3]


def test_max_total_events_stops_when_only_protected_events_are_left(
    maintenance: DjangoMaintenance,
) -> None:
    session = session_with_log(["session_created", "run_started", "message_sent"])

    assert maintenance.prune_events(policy(max_total_events=1)) == 1
    assert stored_types(session.id) == ["session_created", "run_started"]


# --------------------------------------------------------------------------- orphans


def test_clean_orphaned_artifacts_deletes_artifacts_of_missing_sessions(
    maintenance: DjangoMaintenance,
) -> None:
    orphan = ArtifactFactory(session_id="ses_missing")
    owned = ArtifactFactory()
    unattached = ArtifactFactory(session_id=None)

    assert maintenance.clean_orphaned_artifacts() == 1

    assert not m.Artifact.objects.filter(id=orphan.id).exists()
    assert set(m.Artifact.objects.values_list("id", flat=True)) == {owned.id, unattached.id}


def test_clean_orphaned_sequences_needs_neither_session_row_nor_events(
    maintenance: DjangoMaintenance,
) -> None:
    SessionSequenceFactory(session_id="ses_forgotten", last_sequence=4)
    with_row = SessionSequenceFactory(session_id=SessionFactory().id)
    with_events = SessionSequenceFactory(session_id="ses_rowless", last_sequence=1)
    EventFactory(session_id="ses_rowless", sequence_number=1)

    assert maintenance.clean_orphaned_sequences() == 1

    assert set(m.SessionSequence.objects.values_list("session_id", flat=True)) == {
        with_row.session_id,
        with_events.session_id,
    }


# --------------------------------------------------------------------------- health check


def test_health_check_is_empty_for_consistent_data(maintenance: DjangoMaintenance) -> None:
    session_with_log(["session_created", "message_sent"])
    assert maintenance.health_check() == []


def test_health_check_reports_the_contract_messages_in_order(
    maintenance: DjangoMaintenance,
) -> None:
    event_log("ses_gone", ["session_created", "message_sent"])
    RunFactory(session_id="ses_gone")
    session = session_with_log(["message_sent"] * 3)
    m.SessionSequence.objects.filter(session_id=session.id).update(last_sequence=1)

    assert maintenance.health_check() == [
        "2 events reference non-existent sessions",
        "1 runs reference non-existent sessions",
        f"Sequence mismatch for {session.id}: counter=1, max_sequence=3",
    ]


def test_health_check_accepts_a_counter_above_the_highest_sequence(
    maintenance: DjangoMaintenance,
) -> None:
    session = session_with_log(["message_sent"] * 3)
    m.SessionSequence.objects.filter(session_id=session.id).update(last_sequence=9)

    assert maintenance.health_check() == []


# --------------------------------------------------------------------------- execute


@pytest.fixture
def mixed_data() -> dict[str, Any]:
    """Something for every step: expired, hard-deletable, over-cap, orphans."""
    doomed = session_with_log(["session_created"] + ["message_sent"] * 6, deleted_at=days_ago(60))
    RunFactory(session_id=doomed.id)
    ArtifactFactory(session_id=doomed.id)
    stale = session_with_log(
        ["session_created", "message_streamed", "message_sent", "turn_completed"],
        status="completed",
        updated_at=days_ago(120),
    )
    busy = session_with_log(["session_created"] + ["message_streamed", "message_sent"] * 4)
    pinned = SessionFactory(status="completed", updated_at=days_ago(120), tags=["pinned"])
    ArtifactFactory(session_id="ses_missing")
    SessionSequenceFactory(session_id="ses_forgotten")
    return {"doomed": doomed, "stale": stale, "busy": busy, "pinned": pinned}


FULL_POLICY = {
    "max_completed_session_age_days": 90,
    "hard_delete_after_days": 30,
    "max_events_per_session": 5,
    "max_total_events": 7,
    "batch_size": 2,
}


def test_execute_runs_every_step(maintenance: DjangoMaintenance, mixed_data: Any) -> None:
    report = maintenance.execute(policy(**FULL_POLICY))

    assert report.errors == []
    assert report.sessions_soft_deleted == 1
    assert report.sessions_hard_deleted == 1
    assert report.events_pruned == 4 + 2  # busy 9 → 5, then 5 + 4 → 7 in total
    assert report.artifacts_cleaned == 1
    assert report.orphaned_sequences_cleaned == 1
    assert m.Event.objects.count() == 7
    assert report.duration_ms >= 0
    assert maintenance.health_check() == []


def test_dry_run_reports_the_counts_a_real_run_then_produces(
    maintenance: DjangoMaintenance, mixed_data: Any
) -> None:
    before = counts()

    dry = maintenance.execute(policy(**FULL_POLICY), dry_run=True)
    assert counts() == before
    real = maintenance.execute(policy(**FULL_POLICY))

    assert dry.errors == real.errors == []
    assert {**dry.to_dict(), "duration_ms": 0} == {**real.to_dict(), "duration_ms": 0}


def test_dry_run_changes_nothing(maintenance: DjangoMaintenance, mixed_data: Any) -> None:
    stale = mixed_data["stale"]
    before = counts()

    maintenance.execute(policy(**FULL_POLICY), dry_run=True)

    assert counts() == before
    assert not _deleted(stale)


def test_execute_rejects_an_invalid_policy_before_doing_anything(
    maintenance: DjangoMaintenance, mixed_data: Any
) -> None:
    before = counts()

    with pytest.raises(ValidationError) as caught:
        maintenance.execute(policy(**{**FULL_POLICY, "batch_size": 0}))

    assert caught.value.field == "batch_size"
    assert counts() == before


def test_execute_records_a_failing_step_and_still_runs_the_others(
    maintenance: DjangoMaintenance, mixed_data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> int:
        raise StorageError("storage_error", "disk on fire")

    # The step's body, which execute() runs with its own run object.
    monkeypatch.setattr(maintenance, "_hard_delete", broken)

    report = maintenance.execute(policy(**FULL_POLICY))

    assert report.sessions_hard_deleted == 0
    assert len(report.errors) == 1
    assert "hard_delete_expired_sessions" in report.errors[0]
    assert "disk on fire" in report.errors[0]
    assert report.sessions_soft_deleted == 1
    assert report.events_pruned > 0
    assert report.artifacts_cleaned == 1
    assert report.orphaned_sequences_cleaned == 1


def test_a_step_failing_midway_says_how_much_it_had_done(
    maintenance: DjangoMaintenance, failing_artifact_delete: Any
) -> None:
    for session_id in ("ses_gone_1", "ses_gone_2", "ses_gone_3"):
        ArtifactFactory(session_id=session_id)
    failing_artifact_delete("ses_gone_3")  # artifact ids ascend with creation

    report = maintenance.execute(policy(batch_size=1))

    assert report.artifacts_cleaned == 0
    [error] = report.errors
    assert error.startswith("clean_orphaned_artifacts: ")
    assert error.endswith("(2 rows were done before the failure)")
    assert list(m.Artifact.objects.values_list("session_id", flat=True)) == ["ses_gone_3"]


def test_every_step_works_in_batches_of_batch_size(mixed_data: Any) -> None:
    batches: list[tuple[str, int]] = []
    for _ in range(5):
        ArtifactFactory(session_id="ses_missing")
        session_with_log(["message_sent"] * 3, status="completed", updated_at=days_ago(100))
    maintenance = DjangoMaintenance(progress=lambda step, rows, total: batches.append((step, rows)))

    maintenance.execute(policy(**FULL_POLICY))

    steps = {step for step, _ in batches}
    assert {
        "soft_delete_expired_sessions",
        "hard_delete_expired_sessions",
        "prune_events",
        "clean_orphaned_artifacts",
        "clean_orphaned_sequences",
    } <= steps
    assert all(1 <= rows <= FULL_POLICY["batch_size"] for _, rows in batches)
    soft_batches = [rows for step, rows in batches if step == "soft_delete_expired_sessions"]
    assert sum(soft_batches) == 6
    assert len(soft_batches) == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda maintenance: maintenance.execute(RetentionPolicy()),
        lambda maintenance: maintenance.execute(RetentionPolicy(), dry_run=True),
        lambda maintenance: maintenance.soft_delete_expired_sessions(RetentionPolicy()),
        lambda maintenance: maintenance.hard_delete_expired_sessions(RetentionPolicy()),
        lambda maintenance: maintenance.prune_session_events(
            "ses_1", policy(max_events_per_session=1)
        ),
        lambda maintenance: maintenance.clean_orphaned_artifacts(),
        lambda maintenance: maintenance.health_check(),
    ],
    ids=["execute", "execute-dry-run", "soft-delete", "hard-delete", "prune", "orphans", "health"],
)
def test_missing_tables_raise_migration_required_from_maintenance(
    maintenance: DjangoMaintenance, call: Any
) -> None:
    with connection.cursor() as cursor:  # undone with the test's transaction
        for table in (
            "asm_sessions",
            "asm_runs",
            "asm_events",
            "asm_session_sequences",
            "asm_artifacts",
        ):
            cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_elsewhere")

    with pytest.raises(MigrationRequiredError) as caught:
        call(maintenance)

    assert "migrate" in caught.value.message


@pytest.mark.parametrize(
    "call",
    [
        lambda maintenance, given: maintenance.execute(given),
        lambda maintenance, given: maintenance.soft_delete_expired_sessions(given),
        lambda maintenance, given: maintenance.hard_delete_expired_sessions(given),
        lambda maintenance, given: maintenance.prune_events(given),
        lambda maintenance, given: maintenance.prune_session_events("ses_1", given),
    ],
    ids=["execute", "soft-delete", "hard-delete", "prune", "prune-session"],
)
@pytest.mark.parametrize("given", [None, {"batch_size": 10}], ids=["none", "settings-dict"])
def test_a_policy_that_is_not_a_retention_policy_is_a_validation_error(
    maintenance: DjangoMaintenance, call: Any, given: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        call(maintenance, given)

    assert caught.value.field == "policy"


def test_an_unknown_database_alias_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        DjangoMaintenance(using="replica_that_does_not_exist")
    assert caught.value.field == "using"
