"""Async twins of DjangoQueryAPI and DjangoMaintenance: the same results as the sync calls.

Each test runs twice through the ``query``/``maintenance`` fixtures: once
calling the sync methods, once their ``a``-prefixed twins.
"""

from __future__ import annotations

import datetime as dt
import inspect

import pytest

from agent_sessions import core
from agent_sessions.errors import NotFoundError, ValidationError
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.retention import RetentionPolicy
from agent_sessions.store import DjangoSessionStore
from tests.integration_helpers import Api

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["sync", "async"])
def query(request: pytest.FixtureRequest) -> Api:
    return Api(DjangoQueryAPI(), request.param)


@pytest.fixture(params=["sync", "async"])
def maintenance(request: pytest.FixtureRequest) -> Api:
    return Api(DjangoMaintenance(), request.param)


@pytest.fixture
def conversation() -> core.Session:
    """A stored session with a completed run and three events."""
    store = DjangoSessionStore()
    session = core.Session.new("agent-q", status="active", tags=["vip"])
    run = core.Run.new(
        session.id, status="completed", provider="claude", token_usage={"total_tokens": 7}
    )
    events = [core.Event.new("message_sent", session.id, run_id=run.id) for _ in range(3)]
    store.flush(session=session, run=run, events=events)
    return session


@pytest.mark.parametrize("cls", [DjangoQueryAPI, DjangoMaintenance])
def test_every_public_method_has_a_coroutine_twin(cls: type) -> None:
    for name, method in vars(cls).items():
        if (
            inspect.isfunction(method)
            and not inspect.iscoroutinefunction(method)
            and name[0] != "_"
        ):
            twin = getattr(cls, f"a{name}")
            assert inspect.iscoroutinefunction(twin), name
            assert inspect.signature(twin) == inspect.signature(method), name


def test_search_sessions_finds_by_tag(query: Api, conversation: core.Session) -> None:
    page = query.search_sessions(tags=["vip"])
    assert [s.id for s in page.sessions] == [conversation.id]
    assert page.total_count == 1


def test_session_stats_count_events_and_runs(query: Api, conversation: core.Session) -> None:
    stats = query.get_session_stats(conversation.id)
    assert (stats["event_count"], stats["run_count"]) == (3, 1)


def test_stats_of_a_missing_session_raise_not_found(query: Api) -> None:
    with pytest.raises(NotFoundError):
        query.get_session_stats("ses_missing")


def test_count_events_matches_search_events(query: Api, conversation: core.Session) -> None:
    page = query.search_events(session_ids=[conversation.id], limit=2)
    assert len(page.events) == 2
    assert query.count_events(session_ids=[conversation.id]) == 3


def test_a_tampered_cursor_is_refused(query: Api) -> None:
    with pytest.raises(ValidationError) as info:
        query.search_runs(cursor="not-a-cursor")
    assert info.value.code == "invalid_cursor"


def test_export_session_holds_runs_and_events(query: Api, conversation: core.Session) -> None:
    exported = query.export_session(conversation.id)
    assert (len(exported["runs"]), len(exported["events"])) == (1, 3)


def test_health_check_of_consistent_data_is_empty(
    maintenance: Api, conversation: core.Session
) -> None:
    assert maintenance.health_check() == []


def test_dry_run_soft_delete_counts_without_changing(maintenance: Api) -> None:
    store = DjangoSessionStore()
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    store.save_session(
        core.Session.new("agent-m", status="completed", created_at=old, updated_at=old)
    )
    policy = RetentionPolicy()
    assert maintenance.soft_delete_expired_sessions(policy, dry_run=True) == 1
    report = maintenance.execute(policy)
    assert report.sessions_soft_deleted == 1
    assert report.errors == []
