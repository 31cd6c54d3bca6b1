"""Hostile input to DjangoQueryAPI is refused with ValidationError or matched literally.

SQL metacharacters are plain data; wrong types, unknown choices and unknown
orders raise ``ValidationError`` before any SQL runs; nothing surfaces as a raw
database error.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from agent_sessions.errors import ValidationError
from agent_sessions.query import DjangoQueryAPI
from tests.factories import EventFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db

HOSTILE = [
    "'; DROP TABLE asm_sessions; --",
    '" OR 1=1 --',
    "%",
    "_",
    "\\",
    "a' || (SELECT 1) || '",
    "$1",
    "%s",
    "ses_%",
    "{}",
    "😈",
]


@pytest.fixture
def population() -> None:
    session = SessionFactory(id="ses_a", agent_id="agent", tags=["t"], status="active")
    RunFactory(session_id=session.id, provider="claude", token_usage={"total_tokens": 5})
    EventFactory(session_id=session.id, provider="claude", correlation_id="corr", run_id="run_a")


def tables_intact() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM asm_sessions")
        return cursor.fetchone()[0] == 1


@pytest.mark.usefixtures("population")
@pytest.mark.parametrize("value", HOSTILE)
def test_metacharacters_in_session_filters_match_nothing(
    query_api: DjangoQueryAPI, value: str
) -> None:
    for filters in (
        {"agent_id": value},
        {"provider": value},
        {"provider": [value, "x"]},
        {"tags": [value]},
        {"tags": ["t", value]},
    ):
        page = query_api.search_sessions(**filters)
        assert (page.sessions, page.total_count) == ([], 0), filters
    assert tables_intact()


@pytest.mark.usefixtures("population")
@pytest.mark.parametrize("value", HOSTILE)
def test_metacharacters_in_run_filters_match_nothing(query_api: DjangoQueryAPI, value: str) -> None:
    assert query_api.search_runs(session_id=value).runs == []
    assert query_api.search_runs(provider=value).runs == []
    assert query_api.get_usage_summary(session_id=value, provider=value)["run_count"] == 0
    assert query_api.get_cost_summary(agent_id=value)["run_count"] == 0
    assert tables_intact()


@pytest.mark.usefixtures("population")
@pytest.mark.parametrize("value", HOSTILE)
def test_metacharacters_in_event_filters_match_nothing(
    query_api: DjangoQueryAPI, value: str
) -> None:
    for filters in (
        {"session_ids": [value]},
        {"run_ids": [value]},
        {"providers": [value]},
        {"correlation_id": value},
    ):
        assert query_api.search_events(**filters).events == [], filters
        assert query_api.count_events(**filters) == 0, filters
    assert tables_intact()


@pytest.mark.usefixtures("population")
@pytest.mark.parametrize("value", HOSTILE)
def test_metacharacters_as_choices_are_refused_with_their_codes(
    query_api: DjangoQueryAPI, value: str
) -> None:
    with pytest.raises(ValidationError) as session_status:
        query_api.search_sessions(status=value)
    with pytest.raises(ValidationError) as run_status:
        query_api.search_runs(status=value)
    with pytest.raises(ValidationError) as event_type:
        query_api.search_events(types=[value])
    with pytest.raises(ValidationError) as cursor:
        query_api.search_sessions(cursor=value)
    with pytest.raises(ValidationError) as order:
        query_api.search_events(order_by=value)
    assert session_status.value.code == run_status.value.code == "invalid_status"
    assert event_type.value.code == "invalid_event_type"
    assert cursor.value.code == "invalid_cursor"
    assert order.value.code == "validation_error"


def test_a_dict_as_status_is_a_validation_error(query_api: DjangoQueryAPI) -> None:
    with pytest.raises(ValidationError) as exc:
        query_api.search_sessions(status={"$ne": "active"})
    assert exc.value.field == "status"


def test_a_string_as_limit_is_a_validation_error(query_api: DjangoQueryAPI) -> None:
    with pytest.raises(ValidationError) as exc:
        query_api.search_events(limit="10; DROP TABLE asm_events")
    assert (exc.value.code, exc.value.field) == ("validation_error", "limit")


@pytest.mark.parametrize("order_by", ["id", "updated_at_asc", "", None, "-created_at", 1])
def test_unknown_order_by_is_refused_never_silently_replaced(
    query_api: DjangoQueryAPI, order_by: Any
) -> None:
    for search in (query_api.search_sessions, query_api.search_runs, query_api.search_events):
        with pytest.raises(ValidationError) as exc:
            search(order_by=order_by)
        assert (exc.value.code, exc.value.field) == ("validation_error", "order_by")


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"agent_id": 5}, "agent_id"),
        ({"agent_id": "a\x00b"}, "agent_id"),
        ({"agent_id": "x" * 256}, "agent_id"),
        ({"provider": {"a": 1}}, "provider"),
        ({"provider": [None]}, "provider"),
        ({"tags": "prod"}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"tags": ["a\x00"]}, "tags"),
        ({"created_after": "2025-01-01"}, "created_after"),
        ({"created_before": 1735689600}, "created_before"),
        ({"include_deleted": "yes"}, "include_deleted"),
        ({"with_total": 1}, "with_total"),
    ],
)
def test_wrong_types_in_search_sessions_are_refused(
    query_api: DjangoQueryAPI, filters: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        query_api.search_sessions(**filters)
    assert exc.value.field == field


def test_naive_datetimes_are_refused(query_api: DjangoQueryAPI) -> None:
    import datetime as dt

    naive = dt.datetime(2025, 1, 1)
    with pytest.raises(ValidationError):
        query_api.search_events(since=naive)
    with pytest.raises(ValidationError):
        query_api.get_usage_summary(until=naive)


@pytest.mark.parametrize(
    "filters",
    [
        {"session_ids": 5},
        {"session_ids": [["nested"]]},
        {"types": [7]},
        {"providers": [b"bytes"]},
        {"correlation_id": ["list"]},
        {"run_ids": ["x" * 300]},
    ],
)
def test_wrong_types_in_event_filters_are_refused(
    query_api: DjangoQueryAPI, filters: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        query_api.search_events(**filters)
    with pytest.raises(ValidationError):
        query_api.count_events(**filters)


@pytest.mark.parametrize("session_id", [None, "", 5, "a\x00"])
def test_bad_session_ids_for_stats_and_export_are_refused(
    query_api: DjangoQueryAPI, session_id: Any
) -> None:
    with pytest.raises(ValidationError):
        query_api.get_session_stats(session_id)
    with pytest.raises(ValidationError):
        query_api.export_session(session_id)


@pytest.mark.parametrize(
    "table",
    [
        "cheap",
        {"claude": {"default": {"input": "1", "output": 1}}},
        {"claude": {"default": {"input": -1, "output": 1}}},
        {"claude": {"models": {"m": {"input": 1}}}},
    ],
)
def test_a_malformed_pricing_table_is_refused(query_api: DjangoQueryAPI, table: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        query_api.get_cost_summary(pricing_table=table)
    assert exc.value.field == "pricing_table"


def test_an_unknown_database_alias_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        DjangoQueryAPI(using="replica_that_does_not_exist")
    assert info.value.details["field"] == "using"
