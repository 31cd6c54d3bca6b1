"""``GET search?q=`` in ``agent_sessions.urls`` (CONTRACT §13 access rules, §14 search)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from tests.factories import EventFactory, SessionFactory

# The views read in worker threads with their own connections: commit the data.
pytestmark = pytest.mark.django_db(transaction=True)

UTC = dt.UTC
SEARCH = "agent_sessions:search"


@pytest.fixture
def client(db: Any) -> Client:
    user = User.objects.create_user("viewer", password="password")
    user.user_permissions.add(Permission.objects.get(codename="view_event"))
    client = Client()
    client.force_login(user)
    return client


def said(text: str, **fields: Any) -> Any:
    return EventFactory(data={"content": text}, **fields)


def test_search_returns_hits_with_rank_and_snippet(client: Client) -> None:
    event = said("the deploy failed on staging")
    said("unrelated")
    body = client.get(reverse(SEARCH), {"q": "deploy"}).json()
    assert body["next_cursor"] is None
    [hit] = body["results"]
    assert hit["event"]["id"] == event.id
    assert hit["event"]["data"] == {"content": "the deploy failed on staging"}
    assert hit["rank"] > 0
    assert "[[deploy]]" in hit["snippet"]


def test_search_pages_with_the_cursor(client: Client) -> None:
    for n in range(3):
        said("page me", timestamp=dt.datetime(2025, 1, 1, n, tzinfo=UTC))
    first = client.get(reverse(SEARCH), {"q": "page", "limit": 2}).json()
    second = client.get(
        reverse(SEARCH), {"q": "page", "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert len(first["results"]) == 2
    assert len(second["results"]) == 1
    assert second["next_cursor"] is None


def test_search_filters_with_the_event_filter_parameters(client: Client) -> None:
    session = SessionFactory(agent_id="agent-1")
    wanted = said("quota", session_id=session.id, type="error_occurred")
    said("quota", session_id=session.id, type="message_sent")
    said("quota", type="error_occurred")
    body = client.get(
        reverse(SEARCH),
        {"q": "quota", "session_ids": [session.id], "types": ["error_occurred"]},
    ).json()
    assert [hit["event"]["id"] for hit in body["results"]] == [wanted.id]
    by_agent = client.get(reverse(SEARCH), {"q": "quota", "agent_id": "agent-1"}).json()
    assert len(by_agent["results"]) == 2


def test_search_includes_deleted_sessions_only_when_asked(client: Client) -> None:
    gone = SessionFactory(deleted_at=dt.datetime(2025, 1, 1, tzinfo=UTC))
    said("archived words", session_id=gone.id)
    assert client.get(reverse(SEARCH), {"q": "archived"}).json()["results"] == []
    body = client.get(reverse(SEARCH), {"q": "archived", "include_deleted": "true"}).json()
    assert len(body["results"]) == 1


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({}, "validation_error", "q"),
        ({"q": ""}, "validation_error", "q"),
        ({"q": "x" * 1001}, "validation_error", "q"),
        ({"q": "nul\x00"}, "validation_error", "q"),
        ({"q": "x", "cursor": "garbage"}, "invalid_cursor", "cursor"),
        ({"q": "x", "types": ["nope"]}, "invalid_event_type", "types"),
        ({"q": "x", "limit": "many"}, "validation_error", "limit"),
        ({"q": "x", "since": "yesterday"}, "validation_error", "since"),
        ({"q": "x", "include_deleted": "maybe"}, "validation_error", "include_deleted"),
    ],
)
def test_bad_parameters_are_400_with_the_error_code(
    client: Client, params: dict[str, Any], code: str, field: str
) -> None:
    response = client.get(reverse(SEARCH), params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["details"]["field"] == field


def test_hostile_queries_are_answered_not_500(client: Client) -> None:
    said("alpha beta")
    for q in ['"unbalanced', "NEAR(alpha beta)", "alpha*", "a:b ^c", "()", "-x OR -y"]:
        response = client.get(reverse(SEARCH), {"q": q})
        assert response.status_code in (200, 400), (q, response.content)


def test_anonymous_users_are_refused(db: Any) -> None:
    said("secret")
    response = Client().get(reverse(SEARCH), {"q": "secret"})
    assert response.status_code == 403
    assert "secret" not in response.content.decode()


def test_a_user_without_view_event_is_refused(db: Any) -> None:
    client = Client()
    client.force_login(User.objects.create_user("nobody"))
    assert client.get(reverse(SEARCH), {"q": "x"}).status_code == 403


def test_only_get_is_allowed(client: Client) -> None:
    assert client.post(reverse(SEARCH), {"q": "x"}).status_code == 405


def test_a_dropped_index_answers_503_with_its_code(client: Client) -> None:
    from django.core.management import call_command

    said("anything")
    call_command("asm_search_index", "--drop", verbosity=0)
    try:
        response = client.get(reverse(SEARCH), {"q": "anything"})
    finally:
        call_command("asm_search_index", verbosity=0)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "search_unavailable"
    assert client.get(reverse(SEARCH), {"q": "anything"}).status_code == 200
