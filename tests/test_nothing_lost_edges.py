"""The remaining data-loss and untyped-error edges of issue #11 (item 7), on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import Client

from agent_sessions import models as m
from agent_sessions.core import Event, Run, Session
from agent_sessions.errors import ValidationError
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.store import DjangoSessionStore
from tests.factories import EventFactory, SessionFactory
from tests.maintenance_support import days_ago, event_log, policy

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- ADK state rows


@pytest.mark.django_db(transaction=True)
def test_adk_app_and_user_state_survive_every_retention_policy_and_are_not_sessions(
    tmp_path: Path, admin_client: Client
) -> None:
    from agent_sessions.integrations.adk import DjangoSessionService

    service = DjangoSessionService()
    asyncio.run(
        service.create_session(
            app_name="app", user_id="u1", session_id="s1", state={"app:a": 1, "user:b": 2}
        )
    )
    state_ids = {"adk-app-state:app", "adk-user-state:app:u1"}
    assert state_ids <= set(m.Session.objects.values_list("id", flat=True))
    # Old enough for any age policy.
    m.Session.objects.update(created_at=days_ago(400), updated_at=days_ago(400))
    everything = policy(
        max_session_age_days=1,
        max_completed_session_age_days=1,
        hard_delete_after_days=1,
        exempt_statuses=[],
        exempt_tags=[],
        archive_before_prune=True,
        archive_store=str(tmp_path),
    )

    DjangoMaintenance().execute(everything)
    m.Session.objects.filter(deleted_at__isnull=False).update(deleted_at=days_ago(30))
    DjangoMaintenance().execute(everything)

    assert set(m.Session.objects.values_list("id", flat=True)) == state_ids
    assert m.Session.objects.filter(deleted_at__isnull=False).count() == 0
    found = asyncio.run(service.get_session(app_name="app", user_id="u1", session_id="s1"))
    assert found is None  # the conversation went; its shared state stayed
    page = DjangoQueryAPI().search_sessions(include_deleted=True)
    assert page.sessions == []
    assert page.total_count == 0
    listing = admin_client.get("/admin/agent_sessions/session/?deleted=all").content.decode()
    assert "adk-app-state" not in listing
    assert "adk-user-state" not in listing


# --------------------------------------------------------------------------- run JSON


@pytest.mark.parametrize("field", ["input", "output", "error"])
@pytest.mark.parametrize("value", ["text", [1, 2], 3, True])
def test_a_run_whose_json_is_not_an_object_is_refused_and_not_written(
    field: str, value: Any
) -> None:
    session = SessionFactory()
    run = Run.new(session.id)

    setattr(run, field, value)  # changed after construction: save_run validates again

    with pytest.raises(ValidationError) as info:
        DjangoSessionStore().save_run(run)

    assert info.value.field == field
    assert not m.Run.objects.exists()


# --------------------------------------------------------------------------- missing counter


def test_a_session_without_its_counter_continues_after_its_highest_sequence() -> None:
    session = SessionFactory()
    event_log(session.id, ["session_created", "message_sent", "message_sent"])
    m.SessionSequence.objects.filter(session_id=session.id).delete()  # ASM's orphan clean-up
    store = DjangoSessionStore()

    one = store.append_event(Event.new("message_sent", session.id))
    batch = store.append_events([Event.new("message_sent", session.id) for _ in range(2)])

    assert one.sequence_number == 4
    assert [e.sequence_number for e in batch] == [5, 6]
    assert store.get_latest_sequence(session.id) == 6


def test_a_batch_for_several_sessions_catches_up_only_the_missing_counter() -> None:
    behind, fine = SessionFactory(), SessionFactory()
    event_log(behind.id, ["message_sent"] * 5)
    event_log(fine.id, ["message_sent"] * 2)
    m.SessionSequence.objects.filter(session_id=behind.id).delete()

    stored = DjangoSessionStore().append_events(
        [Event.new("message_sent", behind.id), Event.new("message_sent", fine.id)]
    )

    assert [e.sequence_number for e in stored] == [6, 3]


def test_the_health_check_reports_a_missing_counter_with_events() -> None:
    session = SessionFactory()
    event_log(session.id, ["message_sent"] * 3)
    m.SessionSequence.objects.filter(session_id=session.id).delete()

    assert DjangoMaintenance().health_check() == [
        f"Missing sequence counter for {session.id}: max_sequence=3"
    ]


# --------------------------------------------------------------------------- untyped errors


class _FarZone(dt.tzinfo):
    """A tzinfo whose offset Python refuses (beyond ±24 h)."""

    def utcoffset(self, value: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=25)

    def dst(self, value: dt.datetime | None) -> dt.timedelta | None:
        return None


def test_a_timezone_offset_beyond_24_hours_is_a_validation_error() -> None:
    far = dt.datetime(2025, 1, 1, tzinfo=_FarZone())
    session = SessionFactory()

    with pytest.raises(ValidationError, match="UTC offset") as info:
        DjangoSessionStore().append_event(Event.new("message_sent", session.id, timestamp=far))
    assert info.value.field == "timestamp"
    with pytest.raises(ValidationError):
        DjangoQueryAPI().search_events(since=far)
    with pytest.raises(ValidationError):
        Session.new("agent", created_at=far)
    assert not m.Event.objects.exists()


HUGE = {"claude": {"default": {"input": 10**400, "output": 1e-6}}}


def test_a_pricing_rate_too_large_for_a_float_is_a_validation_error() -> None:
    EventFactory()  # something in the database

    with pytest.raises(ValidationError, match="finite"):
        DjangoQueryAPI().get_cost_summary(pricing_table=HUGE)


def test_system_check_e006_reports_a_pricing_rate_too_large_for_a_float(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"PRICING_TABLE": HUGE}

    errors = [e for e in run_checks() if e.id and e.id.startswith("agent_sessions.")]

    assert [e.id for e in errors] == ["agent_sessions.E006"]
    assert "finite" in errors[0].msg
