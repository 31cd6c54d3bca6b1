"""The Django admin: read-only, big-table-safe, never a 500 (issue 6)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agent_sessions import models as m
from agent_sessions.admin import actions as admin_actions
from agent_sessions.admin import sessions as session_admin
from agent_sessions.admin.paginator import EstimatedCountPaginator
from agent_sessions.archive import read_archive
from agent_sessions.core import EventType, RunStatus, SessionStatus
from tests.factories import ArtifactFactory, EventFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
MODELS = ("session", "run", "event", "artifact")


def changelist(model: str) -> str:
    return reverse(f"admin:agent_sessions_{model}_changelist")


def change_page(model: str, object_id: str) -> str:
    # The admin escapes ids in URLs ("_" itself among others), as its links do.
    return reverse(f"admin:agent_sessions_{model}_change", args=[quote(object_id)])


def delete_page(model: str, object_id: str) -> str:
    return reverse(f"admin:agent_sessions_{model}_delete", args=[quote(object_id)])


def events_of(session: m.Session, count: int, **fields: Any) -> list[m.Event]:
    """``count`` events 1..count of ``session``, one second apart."""
    start = dt.datetime(2025, 1, 1, tzinfo=UTC)
    return [
        EventFactory(
            session_id=session.id,
            sequence_number=n,
            timestamp=start + dt.timedelta(seconds=n),
            **fields,
        )
        for n in range(1, count + 1)
    ]


def staff_client(django_user_model: Any, *codenames: str) -> Client:
    """A logged-in staff (not superuser) client holding the given permissions."""
    user = django_user_model.objects.create_user(
        username=f"staff-{'-'.join(codenames) or 'none'}", password="pw", is_staff=True
    )
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="agent_sessions", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def post_action(client: Client, action: str, ids: list[str], query: str = "") -> Any:
    return client.post(
        changelist("session") + query,
        {"action": action, "_selected_action": ids, "index": 0},
    )


# --------------------------------------------------------------------------- sessions changelist


def test_session_changelist_shows_id_agent_status_tags_and_deleted_state(admin_client: Client):
    session = SessionFactory(agent_id="agent-007", status="active", tags=["nightly", "eu"])

    body = admin_client.get(changelist("session")).content.decode()

    for text in (session.id, "agent-007", "active", "nightly, eu"):
        assert text in body


def test_soft_deleted_sessions_are_hidden_unless_the_filter_asks(admin_client: Client):
    live = SessionFactory()
    gone = SessionFactory(deleted_at=dt.datetime.now(UTC))

    default = admin_client.get(changelist("session")).content.decode()
    deleted = admin_client.get(changelist("session"), {"deleted": "yes"}).content.decode()
    everything = admin_client.get(changelist("session"), {"deleted": "all"}).content.decode()

    assert live.id in default
    assert gone.id not in default
    assert gone.id in deleted
    assert live.id not in deleted
    assert live.id in everything
    assert gone.id in everything


def test_status_filter_offers_the_whole_vocabulary_without_reading_the_table(
    admin_client: Client,
):
    with CaptureQueriesContext(connection) as queries:
        body = admin_client.get(changelist("session")).content.decode()

    for status in SessionStatus:
        assert f"?status={status.value}" in body
    assert not any("DISTINCT" in q["sql"].upper() for q in queries)


def test_status_filter_narrows_the_list(admin_client: Client):
    active = SessionFactory(status="active")
    failed = SessionFactory(status="failed")

    body = admin_client.get(changelist("session"), {"status": "failed"}).content.decode()

    assert failed.id in body
    assert active.id not in body


@pytest.mark.parametrize("field", ["id", "agent_id", "tag"])
def test_session_search_matches_exact_id_agent_or_tag_only(admin_client: Client, field: str):
    wanted = SessionFactory(agent_id="agent-search", tags=["release-42"])
    other = SessionFactory(agent_id="agent-search-2", tags=["release-420"])
    term = {"id": wanted.id, "agent_id": "agent-search", "tag": "release-42"}[field]

    body = admin_client.get(changelist("session"), {"q": term}).content.decode()

    assert wanted.id in body
    assert other.id not in body


def test_changelists_never_count_the_whole_table(admin_client: Client):
    session = SessionFactory()
    events_of(session, 3)
    RunFactory(session_id=session.id)
    ArtifactFactory(session_id=session.id)

    for model in MODELS:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(changelist(model)).status_code == 200
        counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
        assert counts, model
        assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_a_list_longer_than_the_count_cap_says_more_than_the_cap(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(EstimatedCountPaginator, "count_cap", 3)
    SessionFactory.create_batch(5)

    body = admin_client.get(changelist("session")).content.decode()

    assert "more than 3" in body
    assert "4 results" not in body


@pytest.mark.postgres_only
def test_an_unfiltered_big_list_shows_an_estimated_count(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(EstimatedCountPaginator, "count_cap", 3)
    events_of(SessionFactory(), 5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE asm_events")

    body = admin_client.get(changelist("event")).content.decode()

    assert "about 5" in body


def test_facet_counts_cannot_be_switched_on_through_the_url(admin_client: Client):
    SessionFactory()

    with CaptureQueriesContext(connection) as queries:
        admin_client.get(changelist("session"), {"_facets": "1"})

    assert not any("FILTER (WHERE" in q["sql"].upper() for q in queries)


def test_event_changelist_does_not_load_data_or_metadata(admin_client: Client):
    events_of(SessionFactory(), 2, data={"big": "x" * 1000})

    with CaptureQueriesContext(connection) as queries:
        admin_client.get(changelist("event"))

    page_queries = [q["sql"] for q in queries if '"asm_events"."sequence_number"' in q["sql"]]
    assert page_queries
    for sql in page_queries:
        assert '"asm_events"."data"' not in sql
        assert '"asm_events"."metadata"' not in sql


# --------------------------------------------------------------------------- actions


def test_soft_delete_action_marks_sessions_deleted(admin_client: Client):
    session = SessionFactory()

    post_action(admin_client, "soft_delete_sessions", [session.id])

    assert m.Session.objects.get(pk=session.id).deleted_at is not None


def test_soft_delete_action_works_through_every_batch(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(admin_actions, "ACTION_BATCH_SIZE", 2)
    sessions = SessionFactory.create_batch(5)

    post_action(admin_client, "soft_delete_sessions", [s.id for s in sessions])

    assert not m.Session.objects.filter(deleted_at__isnull=True).exists()


def test_restore_action_clears_the_soft_delete(admin_client: Client):
    session = SessionFactory(deleted_at=dt.datetime.now(UTC))

    post_action(admin_client, "restore_sessions", [session.id], query="?deleted=yes")

    assert m.Session.objects.get(pk=session.id).deleted_at is None


def exported_lines(response: Any) -> list[dict[str, Any]]:
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


def test_export_action_streams_json_lines_serialised_with_to_dict(admin_client: Client):
    session = SessionFactory(metadata={"k": "v"})
    run = RunFactory(session_id=session.id)
    events = events_of(session, 2, run_id=run.id)

    response = post_action(admin_client, "export_sessions_json", [session.id])

    assert response.streaming
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert "attachment" in response["Content-Disposition"]
    assert exported_lines(response) == [
        {"kind": "session", "record": session.to_domain().to_dict()},
        {"kind": "run", "record": m.Run.objects.get(pk=run.id).to_domain().to_dict()},
        *(
            {"kind": "event", "record": m.Event.objects.get(pk=e.id).to_domain().to_dict()}
            for e in events
        ),
    ]


def test_export_of_several_sessions_is_one_stream_read_back_by_read_archive(
    admin_client: Client, tmp_path: Any
):
    first, second = SessionFactory(id="ses_a"), SessionFactory(id="ses_b")
    events_of(first, 3)
    events_of(second, 2)

    response = post_action(admin_client, "export_sessions_json", [second.id, first.id])
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"".join(response.streaming_content))

    records = [(kind, record.id) for kind, record in read_archive(path)]
    assert [r for r in records if r[0] == "session"] == [("session", "ses_a"), ("session", "ses_b")]
    assert sum(1 for kind, _ in records if kind == "event") == 5


def test_export_refuses_more_sessions_than_the_cap(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(session_admin, "EXPORT_MAX_SESSIONS", 1)
    sessions = SessionFactory.create_batch(2)

    response = post_action(admin_client, "export_sessions_json", [s.id for s in sessions])

    assert response.status_code == 302
    assert "Content-Disposition" not in response


def test_view_only_staff_can_export_but_cannot_soft_delete(django_user_model: Any):
    client = staff_client(django_user_model, "view_session", "view_run", "view_event")
    session = SessionFactory()

    exported = post_action(client, "export_sessions_json", [session.id])
    post_action(client, "soft_delete_sessions", [session.id])

    assert exported.status_code == 200
    assert exported["Content-Type"].startswith("application/x-ndjson")
    assert m.Session.objects.get(pk=session.id).deleted_at is None


def test_export_is_refused_without_view_permission(django_user_model: Any):
    client = staff_client(django_user_model)
    session = SessionFactory()

    response = post_action(client, "export_sessions_json", [session.id])

    assert response.status_code == 403


@pytest.mark.parametrize("model", MODELS)
def test_staff_without_view_permission_gets_403(django_user_model: Any, model: str):
    client = staff_client(django_user_model)
    session = SessionFactory()
    object_id = {
        "session": session.id,
        "run": RunFactory(session_id=session.id).id,
        "event": EventFactory(session_id=session.id).id,
        "artifact": ArtifactFactory(session_id=session.id).id,
    }[model]

    assert client.get(changelist(model)).status_code == 403
    assert client.get(change_page(model, object_id)).status_code == 403


# --------------------------------------------------------------------------- session page


def test_session_page_pretty_prints_json_escaped(admin_client: Client):
    session = SessionFactory(metadata={"note": "<script>alert(1)</script>", "n": 1})

    body = admin_client.get(change_page("session", session.id)).content.decode()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(1)" not in body
    assert "{\n  &quot;n&quot;: 1," in body


def test_session_page_is_read_only_and_refuses_saves(admin_client: Client):
    session = SessionFactory(status="active")

    page = admin_client.get(change_page("session", session.id)).content.decode()
    response = admin_client.post(change_page("session", session.id), {"status": "failed"})

    assert 'name="status"' not in page
    assert 'name="_save"' not in page
    assert response.status_code == 403
    assert m.Session.objects.get(pk=session.id).status == "active"


def test_session_page_timeline_shows_the_newest_50_events_newest_first(admin_client: Client):
    session = SessionFactory()
    events_of(session, 60)

    response = admin_client.get(change_page("session", session.id))

    shown = [item["event"].sequence_number for item in response.context["asm_timeline"]]
    assert shown == list(range(60, 10, -1))


def test_timeline_shows_event_times_in_utc_to_the_microsecond(admin_client: Client):
    session = SessionFactory()
    EventFactory(
        session_id=session.id,
        sequence_number=1,
        timestamp=dt.datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    )

    body = admin_client.get(change_page("session", session.id)).content.decode()

    assert "2025-05-06 07:08:09.123456" in body


def test_timeline_pages_to_older_events_by_sequence_number(admin_client: Client):
    session = SessionFactory()
    events_of(session, 60)
    first = admin_client.get(change_page("session", session.id))

    older_url = first.context["asm_timeline_older_url"]
    older = admin_client.get(change_page("session", session.id) + older_url)

    assert older_url == "?before_seq=11"
    shown = [item["event"].sequence_number for item in older.context["asm_timeline"]]
    assert shown == list(range(10, 0, -1))
    assert older.context["asm_timeline_older_url"] is None


def test_session_page_links_to_the_event_list_of_the_session(admin_client: Client):
    session = SessionFactory()

    body = admin_client.get(change_page("session", session.id)).content.decode()

    assert f"{changelist('event')}?session_id={session.id}" in body


def test_session_page_lists_at_most_50_runs(admin_client: Client):
    session = SessionFactory()
    for _ in range(52):
        RunFactory(session_id=session.id)

    response = admin_client.get(change_page("session", session.id))

    assert len(response.context["asm_runs"]) == 50
    assert response.context["asm_runs_truncated"] is True


def test_session_page_shows_stats_from_the_query_api(admin_client: Client):
    session = SessionFactory()
    RunFactory(
        session_id=session.id,
        provider="claude",
        token_usage={"input_tokens": 10, "output_tokens": 5},
        cost_usd=0.25,
    )
    events_of(session, 3)

    response = admin_client.get(change_page("session", session.id))

    stats = response.context["asm_stats"]
    assert (stats["event_count"], stats["run_count"]) == (3, 1)
    assert stats["providers_used"] == ["claude"]
    assert response.context["asm_cost"]["total_cost_usd"] == pytest.approx(0.25)
    assert "0.250000" in response.content.decode()


def test_sessions_are_editable_when_the_setting_allows(admin_client: Client, settings: Any):
    settings.AGENT_SESSIONS = {"ADMIN_ALLOW_EDIT": True}
    session = SessionFactory(status="active", agent_id="agent-1")

    admin_client.post(
        change_page("session", session.id),
        {"agent_id": "agent-1", "status": "failed", "metadata": "{}", "context": "{}"},
    )

    assert m.Session.objects.get(pk=session.id).status == "failed"


# --------------------------------------------------------------------------- events


def test_events_cannot_be_added_changed_or_deleted_even_by_superusers(admin_client: Client):
    event = EventFactory(type="message_sent")

    add = admin_client.get(reverse("admin:agent_sessions_event_add"))
    change = admin_client.post(change_page("event", event.id), {"type": "run_failed"})
    delete = admin_client.post(delete_page("event", event.id), {"post": "yes"})

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert m.Event.objects.get(pk=event.id).type == "message_sent"


def test_superusers_may_delete_events_when_the_setting_allows(
    admin_client: Client, django_user_model: Any, settings: Any
):
    settings.AGENT_SESSIONS = {"ADMIN_ALLOW_EVENT_DELETE": True}
    staff = staff_client(django_user_model, "view_event", "delete_event")
    kept, deleted = EventFactory(), EventFactory()

    refused = staff.post(delete_page("event", kept.id), {"post": 1})
    admin_client.post(delete_page("event", deleted.id), {"post": 1})

    assert refused.status_code == 403
    assert m.Event.objects.filter(pk=kept.id).exists()
    assert not m.Event.objects.filter(pk=deleted.id).exists()


def test_events_list_newest_activity_first(admin_client: Client):
    start = dt.datetime(2025, 1, 1, tzinfo=UTC)
    for n, session_id in enumerate(["ses_b", "ses_a", "ses_b", "ses_c"]):
        EventFactory(session_id=session_id, sequence_number=n, timestamp=start + dt.timedelta(n))

    response = admin_client.get(changelist("event"))

    listed = [(e.session_id, e.sequence_number) for e in response.context["cl"].result_list]
    assert listed == [("ses_c", 3), ("ses_b", 2), ("ses_a", 1), ("ses_b", 0)]


def test_a_sessions_event_list_is_newest_sequence_first(admin_client: Client):
    session = SessionFactory()
    events_of(session, 3)

    response = admin_client.get(changelist("event"), {"session_id": session.id})

    assert [e.sequence_number for e in response.context["cl"].result_list] == [3, 2, 1]


def test_events_cannot_be_sorted_by_an_unindexed_column_through_the_url(admin_client: Client):
    start = dt.datetime(2025, 1, 1, tzinfo=UTC)
    EventFactory(session_id="ses_a", sequence_number=1, type="tool_call_started", timestamp=start)
    EventFactory(
        session_id="ses_b", sequence_number=1, type="error_occurred", timestamp=start + HOUR
    )

    response = admin_client.get(changelist("event"), {"o": "1"})

    listed = [e.session_id for e in response.context["cl"].result_list]
    assert listed == ["ses_b", "ses_a"]


def test_event_type_filter_offers_every_event_type(admin_client: Client):
    body = admin_client.get(changelist("event")).content.decode()

    for event_type in EventType:
        assert f"?type={event_type.value}" in body


def test_event_type_filter_narrows_the_list(admin_client: Client):
    failed = EventFactory(type="run_failed")
    sent = EventFactory(type="message_sent")

    response = admin_client.get(changelist("event"), {"type": "run_failed"})

    assert [e.id for e in response.context["cl"].result_list] == [failed.id]
    assert sent.id not in response.content.decode()


@pytest.mark.parametrize("field", ["session_id", "run_id", "correlation_id"])
def test_event_search_matches_exact_session_run_or_correlation_id(admin_client: Client, field: str):
    wanted = EventFactory(run_id="run_search", correlation_id="corr-1")
    EventFactory(run_id="run_search_2", correlation_id="corr-10")
    term = getattr(wanted, field)

    response = admin_client.get(changelist("event"), {"q": term})

    assert [e.id for e in response.context["cl"].result_list] == [wanted.id]


def test_orphan_events_are_listed_and_viewable(admin_client: Client):
    orphan = EventFactory(session_id="ses_without_a_row", data={"x": 1})

    listing = admin_client.get(changelist("event"), {"session_id": "ses_without_a_row"})
    page = admin_client.get(change_page("event", orphan.id))

    assert [e.id for e in listing.context["cl"].result_list] == [orphan.id]
    assert page.status_code == 200
    assert "No session row" in page.content.decode()


def test_links_reach_ids_with_characters_the_admin_escapes(admin_client: Client):
    odd = SessionFactory(id="ses_2F/odd?id_5F")
    event = EventFactory(session_id=odd.id, sequence_number=1)

    listing = admin_client.get(changelist("event"), {"session_id": odd.id}).content.decode()
    session_href = f'href="{change_page("session", odd.id)}"'
    event_page = admin_client.get(change_page("event", event.id))

    assert session_href in listing
    assert admin_client.get(change_page("session", odd.id)).status_code == 200
    assert "No session row" not in event_page.content.decode()


def test_event_page_pretty_prints_data_and_metadata(admin_client: Client):
    event = EventFactory(data={"text": "<b>hi</b>", "n": 1}, metadata={"source": "cli"})

    body = admin_client.get(change_page("event", event.id)).content.decode()

    assert (
        "{\n  &quot;n&quot;: 1,\n  &quot;text&quot;: &quot;&lt;b&gt;hi&lt;/b&gt;&quot;\n}" in body
    )
    assert "&quot;source&quot;: &quot;cli&quot;" in body


# --------------------------------------------------------------------------- runs and artifacts


def test_run_changelist_shows_status_provider_tokens_and_cost(admin_client: Client):
    run = RunFactory(
        status="completed",
        provider="codex",
        token_usage={"input_tokens": 7, "output_tokens": 3},
        cost_usd=1.5,
    )

    response = admin_client.get(changelist("run"), {"status": "completed", "provider": "codex"})

    body = response.content.decode()
    assert [r.id for r in response.context["cl"].result_list] == [run.id]
    assert "codex" in body
    assert "7 in · 3 out" in body
    assert "1.5" in body


def test_run_status_filter_offers_every_run_status(admin_client: Client):
    body = admin_client.get(changelist("run")).content.decode()

    for status in RunStatus:
        assert f"?status={status.value}" in body


def test_artifact_changelist_shows_key_size_and_backend(admin_client: Client):
    artifact = ArtifactFactory(key="reports/r.txt", byte_size=1234, storage_backend="s3")

    body = admin_client.get(changelist("artifact")).content.decode()

    assert artifact.key in body
    assert "1234" in body
    assert "s3" in body


@pytest.mark.parametrize("model", ["run", "artifact"])
def test_runs_and_artifacts_are_read_only_by_default(admin_client: Client, model: str):
    obj = RunFactory(provider="amp") if model == "run" else ArtifactFactory(content_type="a/b")
    field, value = ("provider", "claude") if model == "run" else ("content_type", "c/d")

    response = admin_client.post(change_page(model, obj.pk), {field: value})

    assert response.status_code == 403
    assert getattr(type(obj).objects.get(pk=obj.pk), field) != value


def test_runs_are_editable_when_the_setting_allows(admin_client: Client, settings: Any):
    settings.AGENT_SESSIONS = {"ADMIN_ALLOW_EDIT": True}
    run = RunFactory(status="running", provider="amp")

    admin_client.post(
        change_page("run", run.id),
        {"status": "completed", "provider": "claude", "metadata": "{}", "provider_metadata": "{}"},
    )

    stored = m.Run.objects.get(pk=run.id)
    assert (stored.status, stored.provider) == ("completed", "claude")


# --------------------------------------------------------------------------- never a 500


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("session", {"status": "no-such-status"}),
        ("session", {"deleted": "maybe"}),
        ("session", {"p": "-3"}),
        ("session", {"p": "99999"}),
        ("session", {"p": "abc"}),
        ("session", {"o": "9.x"}),
        ("session", {"q": "nul\x00byte"}),
        ("session", {"q": "x" * 300}),
        ("session", {"status": "a\x00b"}),
        ("session", {"metadata__k": "1"}),
        ("session", {"created_at__gte": "not-a-date"}),
        ("event", {"type": "no_such_type"}),
        ("event", {"session_id": "nul\x00"}),
        ("event", {"sequence_number": "abc"}),
        ("event", {"data__x": "1"}),
        ("event", {"_facets": "1", "all": ""}),
        ("run", {"provider": "no-such-provider"}),
        ("run", {"min_tokens": "-1"}),
        ("artifact", {"deleted": "\x00"}),
    ],
)
def test_malformed_query_parameters_never_cause_a_server_error(
    admin_client: Client, model: str, params: dict[str, str]
):
    SessionFactory()

    response = admin_client.get(changelist(model), params)

    assert response.status_code in (200, 302, 400)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("object_id", ["missing", "nul\x00id", "x" * 300, "a/b?c"])
def test_bad_or_missing_ids_redirect_instead_of_failing(
    admin_client: Client, model: str, object_id: str
):
    response = admin_client.get(change_page(model, object_id))

    assert response.status_code == 302


@pytest.mark.parametrize("before_seq", ["abc", "-1", "0", "99999999999999999999", "\x00"])
def test_malformed_timeline_paging_shows_the_newest_events(admin_client: Client, before_seq: str):
    session = SessionFactory()
    events_of(session, 3)

    response = admin_client.get(change_page("session", session.id), {"before_seq": before_seq})

    assert response.status_code == 200
    assert [i["event"].sequence_number for i in response.context["asm_timeline"]] == [3, 2, 1]


@pytest.mark.django_db(transaction=True)
def test_export_streams_asynchronously_under_asgi(admin_user: Any):
    from asgiref.sync import sync_to_async
    from django.db import connections
    from django.test import AsyncClient

    session = SessionFactory()
    events_of(session, 3)

    async def scenario() -> tuple[bool, bytes]:
        client = AsyncClient()
        await client.aforce_login(admin_user)
        response = await client.post(
            changelist("session"),
            {"action": "export_sessions_json", "_selected_action": [session.id], "index": 0},
        )
        body = b"".join([part async for part in response.streaming_content])
        # The view ran in asgiref's sync thread: close its connection, or the
        # test database cannot be dropped.
        await sync_to_async(connections.close_all)()
        return response.is_async, body

    is_async, body = asyncio.run(scenario())

    assert is_async
    kinds = [json.loads(line)["kind"] for line in body.decode().splitlines()]
    assert kinds == ["session", "event", "event", "event"]
