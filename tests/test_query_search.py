"""DjangoQueryAPI searches (CONTRACT §6): filters, orders, defaults, totals and keyset paging."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agent_sessions.errors import ValidationError
from agent_sessions.query import DjangoQueryAPI
from tests.factories import EventFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def session_ids(page: Any) -> list[str]:
    return [s.id for s in page.sessions]


def walk(search: Any, **kwargs: Any) -> list[Any]:
    """Every page of a search, following cursors; returns the pages."""
    pages = [search(**kwargs)]
    while pages[-1].cursor is not None:
        pages.append(search(cursor=pages[-1].cursor, **kwargs))
    return pages


# --------------------------------------------------------------------------- sessions


def test_search_sessions_orders_by_updated_at_desc_by_default(query_api: DjangoQueryAPI) -> None:
    old = SessionFactory(created_at=at(0), updated_at=at(5))
    new = SessionFactory(created_at=at(1), updated_at=at(9))
    mid = SessionFactory(created_at=at(2), updated_at=at(7))
    assert session_ids(query_api.search_sessions()) == [new.id, mid.id, old.id]


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [("created_at_desc", ["c", "b", "a"]), ("created_at_asc", ["a", "b", "c"])],
)
def test_search_sessions_orders_by_created_at(
    query_api: DjangoQueryAPI, order_by: str, expected: list[str]
) -> None:
    for n, name in enumerate("abc"):
        SessionFactory(id=f"ses_{name}", created_at=at(n), updated_at=at(10 - n))
    page = query_api.search_sessions(order_by=order_by)
    assert session_ids(page) == [f"ses_{name}" for name in expected]


def test_search_sessions_breaks_ties_by_id(query_api: DjangoQueryAPI) -> None:
    for name in ("ses_b", "ses_c", "ses_a"):
        SessionFactory(id=name, created_at=at(0), updated_at=at(0))
    assert session_ids(query_api.search_sessions(order_by="created_at_asc")) == [
        "ses_a",
        "ses_b",
        "ses_c",
    ]
    assert session_ids(query_api.search_sessions()) == ["ses_c", "ses_b", "ses_a"]


def test_search_sessions_filters_by_agent_id(query_api: DjangoQueryAPI) -> None:
    mine = SessionFactory(agent_id="agent-x")
    SessionFactory(agent_id="agent-y")
    assert session_ids(query_api.search_sessions(agent_id="agent-x")) == [mine.id]


def test_search_sessions_status_takes_one_value_or_a_list(query_api: DjangoQueryAPI) -> None:
    active = SessionFactory(status="active", updated_at=at(3))
    paused = SessionFactory(status="paused", updated_at=at(2))
    SessionFactory(status="completed", updated_at=at(1))
    assert session_ids(query_api.search_sessions(status="active")) == [active.id]
    assert session_ids(query_api.search_sessions(status=["active", "paused"])) == [
        active.id,
        paused.id,
    ]


def test_search_sessions_provider_matches_sessions_with_any_run_of_it(
    query_api: DjangoQueryAPI,
) -> None:
    claude = SessionFactory(updated_at=at(2))
    RunFactory(session_id=claude.id, provider="claude")
    RunFactory(session_id=claude.id, provider="claude")
    codex = SessionFactory(updated_at=at(1))
    RunFactory(session_id=codex.id, provider="codex")
    SessionFactory()
    assert session_ids(query_api.search_sessions(provider="claude")) == [claude.id]
    page = query_api.search_sessions(provider=["claude", "codex"])
    assert session_ids(page) == [claude.id, codex.id]
    assert page.total_count == 2


def test_search_sessions_tags_must_all_match(query_api: DjangoQueryAPI) -> None:
    both = SessionFactory(tags=["prod", "eu", "x"])
    SessionFactory(tags=["prod"])
    SessionFactory(tags=[])
    assert session_ids(query_api.search_sessions(tags=["prod", "eu"])) == [both.id]


def test_search_sessions_created_bounds_are_inclusive(query_api: DjangoQueryAPI) -> None:
    sessions = [SessionFactory(created_at=at(n), updated_at=at(n)) for n in range(5)]
    page = query_api.search_sessions(
        created_after=at(1), created_before=at(3), order_by="created_at_asc"
    )
    assert session_ids(page) == [s.id for s in sessions[1:4]]


def test_search_sessions_accepts_bounds_in_any_time_zone(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory(created_at=at(0))
    plus_two = dt.timezone(dt.timedelta(hours=2))
    page = query_api.search_sessions(created_after=at(0).astimezone(plus_two))
    assert session_ids(page) == [session.id]


def test_search_sessions_excludes_soft_deleted_unless_asked(query_api: DjangoQueryAPI) -> None:
    live = SessionFactory(updated_at=at(1))
    deleted = SessionFactory(updated_at=at(2), deleted_at=at(3))
    assert session_ids(query_api.search_sessions()) == [live.id]
    assert session_ids(query_api.search_sessions(include_deleted=True)) == [deleted.id, live.id]


def test_search_sessions_total_count_ignores_limit_and_cursor(query_api: DjangoQueryAPI) -> None:
    for n in range(7):
        SessionFactory(updated_at=at(n))
    first = query_api.search_sessions(limit=3)
    second = query_api.search_sessions(limit=3, cursor=first.cursor)
    assert (len(first.sessions), first.total_count) == (3, 7)
    assert (len(second.sessions), second.total_count) == (3, 7)


def test_search_sessions_total_count_is_none_without_total(query_api: DjangoQueryAPI) -> None:
    SessionFactory()
    assert query_api.search_sessions(with_total=False).total_count is None


def test_search_sessions_returns_core_sessions(query_api: DjangoQueryAPI) -> None:
    row = SessionFactory(metadata={"k": 1}, tags=["a"], created_at=at(0), updated_at=at(1))
    (session,) = query_api.search_sessions().sessions
    assert session == row.to_domain()


def test_search_sessions_uses_the_default_limit_from_settings(
    query_api: DjangoQueryAPI, settings: Any
) -> None:
    settings.AGENT_SESSIONS = {"QUERY_DEFAULT_LIMIT": 2}
    for n in range(3):
        SessionFactory(updated_at=at(n))
    page = query_api.search_sessions()
    assert len(page.sessions) == 2
    assert page.cursor is not None


# --------------------------------------------------------------------------- paging


@pytest.mark.parametrize("order_by", ["updated_at_desc", "created_at_desc", "created_at_asc"])
def test_session_pages_cover_every_match_once_in_order(
    query_api: DjangoQueryAPI, order_by: str
) -> None:
    # Ties on the timestamps make the id tie-break part of every page boundary.
    for n in range(11):
        SessionFactory(created_at=at(n // 3), updated_at=at(n // 4))
    everything = session_ids(query_api.search_sessions(order_by=order_by, limit=100))
    pages = walk(query_api.search_sessions, order_by=order_by, limit=3)
    assert [len(p.sessions) for p in pages] == [3, 3, 3, 2]
    assert [sid for p in pages for sid in session_ids(p)] == everything


def test_last_page_has_no_cursor_even_when_full(query_api: DjangoQueryAPI) -> None:
    for n in range(4):
        SessionFactory(updated_at=at(n))
    first = query_api.search_sessions(limit=2)
    last = query_api.search_sessions(limit=2, cursor=first.cursor)
    assert first.cursor is not None
    assert len(last.sessions) == 2
    assert last.cursor is None


def test_empty_search_has_no_cursor(query_api: DjangoQueryAPI) -> None:
    page = query_api.search_sessions()
    assert (page.sessions, page.cursor, page.total_count) == ([], None, 0)


def test_paging_is_stable_when_sessions_are_inserted_between_pages(
    query_api: DjangoQueryAPI,
) -> None:
    originals = [SessionFactory(created_at=at(n), updated_at=at(n)).id for n in range(9)]
    seen: list[str] = []
    page = query_api.search_sessions(limit=4)
    seen += session_ids(page)
    while page.cursor is not None:
        # Newer sessions land before the cursor: an OFFSET would repeat rows.
        SessionFactory(created_at=at(100), updated_at=at(100 + len(seen)))
        page = query_api.search_sessions(limit=4, cursor=page.cursor)
        seen += session_ids(page)
    assert seen == list(reversed(originals))


def test_paging_ascending_sees_rows_inserted_after_the_cursor_exactly_once(
    query_api: DjangoQueryAPI,
) -> None:
    expected = [SessionFactory(created_at=at(n)).id for n in range(5)]
    seen: list[str] = []
    page = query_api.search_sessions(order_by="created_at_asc", limit=2)
    seen += session_ids(page)
    while page.cursor is not None:
        if len(expected) < 8:
            expected.append(SessionFactory(created_at=at(50 + len(expected))).id)
        page = query_api.search_sessions(order_by="created_at_asc", limit=2, cursor=page.cursor)
        seen += session_ids(page)
    assert seen == expected


def test_cursor_keeps_working_with_the_same_filters(query_api: DjangoQueryAPI) -> None:
    for n in range(5):
        SessionFactory(status="active", updated_at=at(n))
        SessionFactory(status="failed", updated_at=at(n))
    pages = walk(query_api.search_sessions, status="active", limit=2)
    assert sum(len(p.sessions) for p in pages) == 5
    assert {s.status for p in pages for s in p.sessions} == {"active"}


@pytest.mark.parametrize("limit", [0, -1, 1001, "10", 2.5, True, [10]])
def test_limit_outside_one_to_the_cap_is_refused(query_api: DjangoQueryAPI, limit: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        query_api.search_sessions(limit=limit)
    assert (exc.value.code, exc.value.field) == ("validation_error", "limit")


def test_the_limit_cap_follows_settings(query_api: DjangoQueryAPI, settings: Any) -> None:
    settings.AGENT_SESSIONS = {"QUERY_MAX_LIMIT": 5}
    assert query_api.search_runs(limit=5).runs == []
    with pytest.raises(ValidationError):
        query_api.search_runs(limit=6)


def test_a_default_limit_above_the_cap_is_held_to_the_cap(
    query_api: DjangoQueryAPI, settings: Any
) -> None:
    settings.AGENT_SESSIONS = {"QUERY_MAX_LIMIT": 2}
    for n in range(3):
        SessionFactory(updated_at=at(n))
        EventFactory(session_id="ses_capped", sequence_number=n + 1)
    sessions = query_api.search_sessions()
    assert len(sessions.sessions) == 2
    assert sessions.cursor is not None
    assert len(query_api.search_events().events) == 2


def test_limit_of_one_thousand_is_accepted(query_api: DjangoQueryAPI) -> None:
    assert query_api.search_events(limit=1000).events == []


# --------------------------------------------------------------------------- runs


def test_search_runs_orders_by_started_at_desc_by_default(query_api: DjangoQueryAPI) -> None:
    runs = [RunFactory(started_at=at(n)) for n in range(3)]
    assert [r.id for r in query_api.search_runs().runs] == [r.id for r in reversed(runs)]
    page = query_api.search_runs(order_by="started_at_asc")
    assert [r.id for r in page.runs] == [r.id for r in runs]


def test_search_runs_orders_by_total_tokens(query_api: DjangoQueryAPI) -> None:
    small = RunFactory(token_usage={"total_tokens": 10})
    big = RunFactory(token_usage={"total_tokens": 500})
    none = RunFactory(token_usage={})
    page = query_api.search_runs(order_by="token_usage_desc")
    assert [r.id for r in page.runs] == [big.id, small.id, none.id]


def test_search_runs_pages_through_total_tokens_order(query_api: DjangoQueryAPI) -> None:
    runs = [RunFactory(token_usage={"total_tokens": n % 3}) for n in range(8)]
    pages = walk(query_api.search_runs, order_by="token_usage_desc", limit=3)
    seen = [r.id for p in pages for r in p.runs]
    expected = sorted(runs, key=lambda r: (r.token_usage["total_tokens"], r.id), reverse=True)
    assert seen == [r.id for r in expected]


def test_search_runs_filters_by_session_provider_and_status(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory()
    match = RunFactory(session_id=session.id, provider="claude", status="completed")
    RunFactory(session_id=session.id, provider="codex", status="completed")
    RunFactory(session_id=session.id, provider="claude", status="failed")
    RunFactory(provider="claude", status="completed")
    page = query_api.search_runs(session_id=session.id, provider="claude", status="completed")
    assert [r.id for r in page.runs] == [match.id]


def test_search_runs_started_bounds_are_inclusive(query_api: DjangoQueryAPI) -> None:
    runs = [RunFactory(started_at=at(n)) for n in range(5)]
    page = query_api.search_runs(started_after=at(1), started_before=at(3))
    assert [r.id for r in page.runs] == [r.id for r in reversed(runs[1:4])]


def test_search_runs_min_tokens_is_inclusive_and_missing_counts_as_zero(
    query_api: DjangoQueryAPI,
) -> None:
    RunFactory(token_usage={"total_tokens": 99})
    exact = RunFactory(token_usage={"total_tokens": 100})
    more = RunFactory(token_usage={"total_tokens": 250.5})
    RunFactory(token_usage={"input_tokens": 1000})
    RunFactory(token_usage={"total_tokens": "lots"})
    page = query_api.search_runs(min_tokens=100)
    assert {r.id for r in page.runs} == {exact.id, more.id}
    assert len(query_api.search_runs(min_tokens=0).runs) == 5


@pytest.mark.parametrize("min_tokens", [-1, "5", 1.5])
def test_search_runs_refuses_bad_min_tokens(query_api: DjangoQueryAPI, min_tokens: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        query_api.search_runs(min_tokens=min_tokens)
    assert exc.value.field == "min_tokens"


def test_search_runs_rejects_unknown_status(query_api: DjangoQueryAPI) -> None:
    with pytest.raises(ValidationError) as exc:
        query_api.search_runs(status="paused")
    assert exc.value.code == "invalid_status"


# --------------------------------------------------------------------------- events


def test_search_events_orders_by_sequence_then_session_then_id(
    query_api: DjangoQueryAPI,
) -> None:
    EventFactory(id="evt_3", session_id="ses_b", sequence_number=1)
    EventFactory(id="evt_1", session_id="ses_a", sequence_number=2)
    EventFactory(id="evt_2", session_id="ses_a", sequence_number=1)
    assert [e.id for e in query_api.search_events().events] == ["evt_2", "evt_3", "evt_1"]


def test_search_events_orders_by_timestamp(query_api: DjangoQueryAPI) -> None:
    late = EventFactory(timestamp=at(5))
    early = EventFactory(timestamp=at(1))
    assert [e.id for e in query_api.search_events(order_by="timestamp_asc").events] == [
        early.id,
        late.id,
    ]
    assert [e.id for e in query_api.search_events(order_by="timestamp_desc").events] == [
        late.id,
        early.id,
    ]


@pytest.mark.parametrize("order_by", ["sequence_asc", "timestamp_asc", "timestamp_desc"])
def test_event_pages_cover_every_match_once_in_order(
    query_api: DjangoQueryAPI, order_by: str
) -> None:
    for n in range(10):
        EventFactory(session_id=f"ses_{n % 3}", sequence_number=n // 3 + 1, timestamp=at(n // 4))
    everything = [e.id for e in query_api.search_events(order_by=order_by).events]
    pages = walk(query_api.search_events, order_by=order_by, limit=4)
    assert [e.id for p in pages for e in p.events] == everything
    assert len(everything) == 10


def test_search_events_list_filters_are_any_of(query_api: DjangoQueryAPI) -> None:
    a = EventFactory(session_id="ses_a", run_id="run_1", type="message_sent", provider="claude")
    b = EventFactory(session_id="ses_b", run_id="run_2", type="tool_call_started", provider="amp")
    EventFactory(session_id="ses_c", run_id="run_3", type="run_started", provider="codex")

    def found(**filters: Any) -> set[str]:
        return {e.id for e in query_api.search_events(**filters).events}

    assert found(session_ids=["ses_a", "ses_b"]) == {a.id, b.id}
    assert found(run_ids=["run_1", "run_2"]) == {a.id, b.id}
    assert found(types=["message_sent", "tool_call_started"]) == {a.id, b.id}
    assert found(providers=["claude", "amp"]) == {a.id, b.id}


def test_search_events_filters_combine(query_api: DjangoQueryAPI) -> None:
    match = EventFactory(session_id="ses_a", type="message_sent", correlation_id="c-1")
    EventFactory(session_id="ses_a", type="message_sent", correlation_id="c-2")
    EventFactory(session_id="ses_b", type="message_sent", correlation_id="c-1")
    page = query_api.search_events(
        session_ids=["ses_a"], types=["message_sent"], correlation_id="c-1"
    )
    assert [e.id for e in page.events] == [match.id]


def test_search_events_time_bounds_are_inclusive(query_api: DjangoQueryAPI) -> None:
    events = [EventFactory(timestamp=at(n)) for n in range(5)]
    page = query_api.search_events(since=at(1), until=at(3), order_by="timestamp_asc")
    assert [e.id for e in page.events] == [e.id for e in events[1:4]]


def test_search_events_default_limit_is_the_event_default(
    query_api: DjangoQueryAPI, settings: Any
) -> None:
    settings.AGENT_SESSIONS = {"QUERY_EVENT_DEFAULT_LIMIT": 3, "QUERY_DEFAULT_LIMIT": 1}
    for _ in range(4):
        EventFactory()
    assert len(query_api.search_events().events) == 3


def test_search_events_rejects_unknown_type(query_api: DjangoQueryAPI) -> None:
    with pytest.raises(ValidationError) as exc:
        query_api.search_events(types=["message_sent", "message_exploded"])
    assert exc.value.code == "invalid_event_type"


def test_count_events_counts_every_match(query_api: DjangoQueryAPI) -> None:
    for n in range(5):
        EventFactory(session_id="ses_a", type="message_sent" if n % 2 else "run_started")
    EventFactory(session_id="ses_b", type="message_sent")
    assert query_api.count_events() == 6
    assert query_api.count_events(session_ids=["ses_a"], types=["message_sent"]) == 2


def test_count_events_rejects_unknown_type(query_api: DjangoQueryAPI) -> None:
    with pytest.raises(ValidationError) as exc:
        query_api.count_events(types=["nope"])
    assert exc.value.code == "invalid_event_type"
