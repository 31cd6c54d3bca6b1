"""The FilterSets work on their own, with a request's QueryDict, as the admin and views use them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.http import QueryDict

from agent_sessions import models
from agent_sessions.filters import EventFilterSet, RunFilterSet, SessionFilterSet
from tests.factories import EventFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def sessions(query: str) -> set[str]:
    filterset = SessionFilterSet(QueryDict(query), queryset=models.Session.objects.all())
    assert filterset.is_valid(), filterset.errors
    return set(filterset.qs.values_list("id", flat=True))


def test_every_filter_declares_field_name_and_lookup_expr() -> None:
    for filterset in (SessionFilterSet, RunFilterSet, EventFilterSet):
        for name, declared in filterset.base_filters.items():
            assert declared.field_name, (filterset.__name__, name)
            assert declared.lookup_expr, (filterset.__name__, name)


def test_repeated_status_parameters_are_any_of() -> None:
    active = SessionFactory(status="active").id
    paused = SessionFactory(status="paused").id
    SessionFactory(status="failed")
    assert sessions("status=active&status=paused") == {active, paused}


def test_an_unknown_status_makes_the_form_invalid() -> None:
    filterset = SessionFilterSet(
        QueryDict("status=archived"), queryset=models.Session.objects.all()
    )
    assert not filterset.is_valid()
    assert "status" in filterset.errors


def test_repeated_tags_must_all_match() -> None:
    both = SessionFactory(tags=["a", "b"]).id
    SessionFactory(tags=["a"])
    assert sessions("tags=a&tags=b") == {both}


def test_provider_matches_sessions_through_their_runs() -> None:
    session = SessionFactory().id
    RunFactory(session_id=session, provider="amp")
    SessionFactory()
    assert sessions("provider=amp") == {session}


def test_soft_deleted_sessions_are_excluded_unless_include_deleted() -> None:
    live = SessionFactory().id
    deleted = SessionFactory(deleted_at=dt.datetime.now(UTC)).id
    assert sessions("") == {live}
    assert sessions("include_deleted=false") == {live}
    assert sessions("include_deleted=true") == {live, deleted}


def test_datetimes_in_query_strings_are_iso_8601_and_inclusive() -> None:
    at_noon = SessionFactory(created_at=dt.datetime(2025, 1, 1, 12, tzinfo=UTC)).id
    SessionFactory(created_at=dt.datetime(2025, 1, 2, tzinfo=UTC))
    assert sessions("created_before=2025-01-01T12:00:00Z") == {at_noon}
    assert sessions("created_after=2025-01-01T12:00:00%2B00:00") >= {at_noon}


def test_a_datetime_without_zone_is_read_in_the_current_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Asia/Kolkata"
    noon_utc = SessionFactory(created_at=dt.datetime(2025, 1, 1, 12, tzinfo=UTC)).id
    # 17:30 in Kolkata is 12:00 UTC.
    assert sessions("created_after=2025-01-01T17:30:00") == {noon_utc}
    assert sessions("created_after=2025-01-01T17:31:00") == set()


def test_a_nul_character_is_a_form_error_not_a_database_error() -> None:
    for filterset in (
        SessionFilterSet(QueryDict("provider=a%00b"), queryset=models.Session.objects.all()),
        EventFilterSet(QueryDict("session_ids=a%00b"), queryset=models.Event.objects.all()),
    ):
        assert not filterset.is_valid()


def test_min_tokens_filters_runs_in_sql() -> None:
    big = RunFactory(token_usage={"total_tokens": 50}).id
    RunFactory(token_usage={"total_tokens": 5})
    filterset = RunFilterSet(QueryDict("min_tokens=50"), queryset=models.Run.objects.all())
    assert set(filterset.qs.values_list("id", flat=True)) == {big}


def test_negative_min_tokens_is_a_form_error() -> None:
    filterset = RunFilterSet(QueryDict("min_tokens=-1"), queryset=models.Run.objects.all())
    assert not filterset.is_valid()


def test_run_agent_id_selects_runs_of_that_agents_sessions() -> None:
    mine = RunFactory(session_id=SessionFactory(agent_id="agent-a").id).id
    RunFactory(session_id=SessionFactory(agent_id="agent-b").id)
    filterset = RunFilterSet({"agent_id": "agent-a"}, queryset=models.Run.objects.all())
    assert set(filterset.qs.values_list("id", flat=True)) == {mine}


def test_event_filters_accept_a_plain_dict_with_lists() -> None:
    a = EventFactory(session_id="ses_a", type="message_sent").id
    EventFactory(session_id="ses_a", type="run_started")
    EventFactory(session_id="ses_b", type="message_sent")
    filterset = EventFilterSet(
        {"session_ids": ["ses_a"], "types": "message_sent"}, queryset=models.Event.objects.all()
    )
    assert set(filterset.qs.values_list("id", flat=True)) == {a}


def test_an_empty_list_filters_nothing_out() -> None:
    EventFactory()
    filterset = EventFilterSet({"session_ids": []}, queryset=models.Event.objects.all())
    assert filterset.qs.count() == 1
