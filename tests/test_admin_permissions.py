"""Exact permissions, logged actions on the write database, deep pages, indexed search (#14)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agent_sessions import models as m
from agent_sessions.admin import actions as admin_actions
from agent_sessions.admin.paginator import EstimatedCountPaginator
from agent_sessions.admin.sessions import SessionAdmin
from agent_sessions.errors import StorageError
from tests.factories import EventFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
VIEWS = ("view_session", "view_run", "view_event")
COMBINATIONS = [
    frozenset(combo) for size in range(4) for combo in itertools.combinations(VIEWS, size)
]


def staff(django_user_model: Any, codenames: frozenset[str]) -> Client:
    user = django_user_model.objects.create_user(
        username="staff-" + "-".join(sorted(codenames)), password="pw", is_staff=True
    )
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="agent_sessions", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def url(name: str, *args: str) -> str:
    return reverse(f"admin:agent_sessions_{name}", args=[quote(a) for a in args])


@pytest.fixture
def history() -> dict[str, Any]:
    session = SessionFactory()
    run = RunFactory(
        session_id=session.id, provider="claude", token_usage={"input_tokens": 7}, cost_usd=0.5
    )
    event = EventFactory(
        session_id=session.id,
        run_id=run.id,
        sequence_number=1,
        data={"content": "secret-event-data"},
    )
    return {"session": session, "run": run, "event": event}


@pytest.mark.parametrize("perms", COMBINATIONS, ids=lambda p: "+".join(sorted(p)) or "none")
def test_event_and_run_data_only_for_users_who_may_view_them(
    django_user_model: Any, history: dict[str, Any], perms: frozenset[str]
):
    client = staff(django_user_model, perms)
    session, run, event = history["session"], history["run"], history["event"]
    may_session, may_run, may_event = (p in perms for p in VIEWS)

    page = client.get(url("session_change", session.id))
    conversation = client.get(url("session_conversation", session.id))
    raw = client.get(url("event_raw", event.id))
    run_page = client.get(url("run_change", run.id))
    exported = client.post(
        url("session_changelist"),
        {"action": "export_sessions_json", "_selected_action": [session.id]},
    )

    assert page.status_code == (200 if may_session else 403)
    if may_session:
        body = page.content.decode()
        assert ("secret-event-data" in body) is may_event
        assert ('id="asm-timeline"' in body) is may_event
        assert ('id="asm-runs"' in body) is may_run
        assert ('id="asm-stat-cost"' in body) is may_run
    assert conversation.status_code == (200 if may_session and may_event else 403)
    if conversation.status_code == 200:
        assert ('id="asm-run-summary"' in conversation.content.decode()) is may_run
    assert raw.status_code == (200 if may_event else 403)
    assert run_page.status_code == (200 if may_run else 403)
    exports = exported.status_code == 200 and exported.get("Content-Type", "").startswith(
        "application/x-ndjson"
    )
    assert exports is (may_session and may_run and may_event)


# --------------------------------------------------------------------------- actions


def post_action(client: Client, action: str, ids: list[str], query: str = "") -> Any:
    return client.post(
        url("session_changelist") + query,
        {"action": action, "_selected_action": ids, "index": 0},
    )


def test_soft_delete_and_restore_are_recorded_in_the_history(admin_client: Client, admin_user: Any):
    session = SessionFactory()

    post_action(admin_client, "soft_delete_sessions", [session.id])
    post_action(admin_client, "restore_sessions", [session.id], query="?deleted=yes")
    history = admin_client.get(url("session_history", session.id)).content.decode()

    entries = LogEntry.objects.filter(object_id=session.id).order_by("action_time", "id")
    assert [(e.action_flag, e.user_id) for e in entries] == [(CHANGE, admin_user.pk)] * 2
    assert [e.change_message for e in entries] == [
        "Soft-deleted (deleted_at set).",
        "Restored (deleted_at cleared).",
    ]
    assert "Soft-deleted (deleted_at set)." in history


def test_only_changed_sessions_are_logged(admin_client: Client):
    live, gone = SessionFactory(), SessionFactory(deleted_at=dt.datetime.now(UTC))

    post_action(admin_client, "soft_delete_sessions", [live.id, gone.id], query="?deleted=all")

    assert list(LogEntry.objects.values_list("object_id", flat=True)) == [live.id]


def test_actions_pick_and_write_rows_on_the_write_database(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
):
    asked: list[tuple[Any, Any]] = []

    def db_for_write(using: Any, model: Any) -> str:
        asked.append((using, model))
        return "default"

    monkeypatch.setattr(admin_actions, "db_for_write", db_for_write)
    session = SessionFactory()

    post_action(admin_client, "soft_delete_sessions", [session.id])

    assert asked == [(None, m.Session)]
    assert m.Session.objects.get(pk=session.id).deleted_at is not None


def test_actions_write_through_the_one_write_path(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
):
    operations: list[str] = []
    real_run_write = admin_actions.run_write

    def run_write(alias: str, operation: str, work: Any, **kwargs: Any) -> Any:
        operations.append(operation)
        return real_run_write(alias, operation, work, **kwargs)

    monkeypatch.setattr(admin_actions, "run_write", run_write)
    session = SessionFactory()

    post_action(admin_client, "soft_delete_sessions", [session.id])
    post_action(admin_client, "restore_sessions", [session.id], query="?deleted=yes")

    assert operations == ["admin soft_delete_sessions", "admin restore_sessions"]


def test_a_failing_action_reports_the_error_instead_of_a_server_error(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
):
    def run_write(alias: str, operation: str, work: Any, **kwargs: Any) -> Any:
        raise StorageError("storage_error", "the database went away")

    monkeypatch.setattr(admin_actions, "run_write", run_write)
    session = SessionFactory()

    response = post_action(admin_client, "soft_delete_sessions", [session.id])
    page = admin_client.get(url("session_changelist")).content.decode()

    assert response.status_code == 302
    assert "Soft-delete failed: the database went away" in page
    assert m.Session.objects.get(pk=session.id).deleted_at is None
    assert not LogEntry.objects.exists()


# --------------------------------------------------------------------------- deep pages


def test_a_deep_page_of_a_filtered_list_keeps_its_filters(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(EstimatedCountPaginator, "count_cap", 3)
    monkeypatch.setattr(SessionAdmin, "list_per_page", 2)
    start = dt.datetime(2025, 1, 1, tzinfo=UTC)
    failed = [
        SessionFactory(status="failed", created_at=start + dt.timedelta(minutes=n))
        for n in range(12)
    ]
    SessionFactory.create_batch(3, status="active")

    page5 = admin_client.get(url("session_changelist"), {"status": "failed", "p": "5"})
    beyond = admin_client.get(url("session_changelist"), {"status": "failed", "p": "40"})

    assert page5.status_code == 200
    newest_first = [s.id for s in reversed(failed)]
    assert [s.id for s in page5.context["cl"].result_list] == newest_first[8:10]
    assert beyond.status_code == 200
    assert [s.id for s in beyond.context["cl"].result_list] == newest_first[10:12]


# --------------------------------------------------------------------------- indexed search


def plan_of(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.postgres_only
@pytest.mark.parametrize("column", ["session_id", "run_id"])
def test_event_search_by_an_exact_id_is_an_index_condition(admin_client: Client, column: str):
    session = SessionFactory()
    run = RunFactory(session_id=session.id)
    for n in range(1, 30):
        EventFactory(session_id=session.id, run_id=run.id, sequence_number=n)
    EventFactory.create_batch(30)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE asm_events")
    term = session.id if column == "session_id" else run.id

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url("event_changelist"), {"q": term})

    assert len(response.context["cl"].result_list) == 29
    listing = [
        q["sql"] for q in queries if "ORDER BY" in q["sql"] and '"asm_events"."type"' in q["sql"]
    ]
    assert listing
    plan = plan_of(listing[0])
    assert f"Index Cond: (({column})::text =" in plan or f"Index Cond: ({column} =" in plan, plan
    assert f"Filter: (({column})::text" not in plan, plan
    assert "Seq Scan" not in plan, plan
