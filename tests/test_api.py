"""Contract tests of ``agent_sessions.urls`` (CONTRACT §13), in-process, on both databases.

The views read in worker threads with their own connections, so the tests
commit their data (``transaction=True``). The multi-process tests against a
real ASGI server are in ``test_api_server.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.core.checks import run_checks
from django.db import connection, connections
from django.test import AsyncClient, Client
from django.urls import reverse

from agent_sessions.api import reading
from agent_sessions.archive import read_archive
from agent_sessions.core import Event, Run, Session
from agent_sessions.store import DjangoSessionStore
from tests.factories import EventFactory, SessionFactory

pytestmark = pytest.mark.django_db(transaction=True)

UTC = dt.UTC


# --------------------------------------------------------------------------- helpers


def allow_all(request: Any, session_id: str | None) -> bool:
    """An API_PERMISSION that lets everybody in."""
    return True


def deny_secret(request: Any, session_id: str | None) -> bool:
    """An API_PERMISSION that refuses one session id (whether it exists or not)."""
    return session_id != "ses_secret"


SEEN_BY_PERMISSION: list[str | None] = []


def record_session_id(request: Any, session_id: str | None) -> bool:
    SEEN_BY_PERMISSION.append(session_id)
    return True


def url(name: str, *args: str) -> str:
    return reverse(f"agent_sessions:{name}", args=args)


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


def sse_frames(raw: bytes) -> list[dict[str, str]]:
    """Parse an SSE body into frames (dicts of field → value; comments under ``":"``)."""
    frames = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        frame: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            frame[name or ":"] = value[1:] if value.startswith(" ") else value
        frames.append(frame)
    return frames


def event_frames(raw: bytes) -> list[dict[str, str]]:
    return [frame for frame in sse_frames(raw) if "id" in frame]


@pytest.fixture
def viewer(db: Any) -> User:
    user = User.objects.create_user("viewer", password="password")
    user.user_permissions.add(Permission.objects.get(codename="view_event"))
    return user


@pytest.fixture
def client(viewer: User) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


@pytest.fixture
def short_streams(settings: Any) -> Any:
    """Streams that end after a second, with a fast heartbeat."""
    settings.AGENT_SESSIONS = {"STREAM_MAX_SECONDS": 1, "STREAM_HEARTBEAT_SECONDS": 0.2}
    return settings


@pytest.fixture
def session() -> Session:
    session = Session.new("support-bot", tags=["prod"])
    DjangoSessionStore().save_session(session)
    return session


def append(session_id: str, count: int, **fields: Any) -> list[Event]:
    store = DjangoSessionStore()
    return [
        store.append_event(Event.new(fields.pop("type", "message_sent"), session_id, **fields))
        for _ in range(count)
    ]


# --------------------------------------------------------------------------- access


@pytest.mark.parametrize("name", ["session-detail", "event-list", "event-stream", "session-export"])
def test_anonymous_users_are_refused_with_403_and_no_data(name: str, session: Session) -> None:
    append(session.id, 1, data={"secret": "s3cret"})
    response = Client().get(url(name, session.id))
    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert b"s3cret" not in response.content
    assert session.id.encode() not in response.content


def test_the_session_list_refuses_anonymous_users(session: Session) -> None:
    response = Client().get(url("session-list"))
    assert response.status_code == 403
    assert session.id.encode() not in response.content


def test_a_user_without_view_event_is_refused(session: Session) -> None:
    client = Client()
    client.force_login(User.objects.create_user("nobody"))
    assert client.get(url("session-detail", session.id)).status_code == 403


def test_a_superuser_is_allowed(admin_client: Client, session: Session) -> None:
    assert admin_client.get(url("session-detail", session.id)).status_code == 200


def test_the_permission_callable_gets_the_session_id_or_none(
    settings: Any, session: Session
) -> None:
    settings.AGENT_SESSIONS = {"API_PERMISSION": "tests.test_api.record_session_id"}
    SEEN_BY_PERMISSION.clear()
    Client().get(url("session-list"))
    Client().get(url("event-list", session.id))
    assert [None, session.id] == SEEN_BY_PERMISSION


def test_a_refused_session_is_403_whether_it_exists_or_not(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"API_PERMISSION": "tests.test_api.deny_secret"}
    missing = Client().get(url("event-list", "ses_secret"))
    SessionFactory(id="ses_secret")
    existing = Client().get(url("event-list", "ses_secret"))
    assert missing.status_code == existing.status_code == 403
    assert missing.content == existing.content


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "head", "options"])
def test_only_get_is_allowed(client: Client, method: str, session: Session) -> None:
    response = getattr(client, method)(url("event-list", session.id))
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    if method != "head":  # a HEAD response has no body
        assert error_of(response)["code"] == "method_not_allowed"


# --------------------------------------------------------------------------- sessions


def test_session_list_pages_with_a_cursor(client: Client) -> None:
    created = [SessionFactory(agent_id="pager") for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"agent_id": "pager", "limit": 2, "order_by": "created_at_asc"}
        if cursor:
            query["cursor"] = cursor
        body = client.get(url("session-list"), query).json()
        assert set(body) == {"results", "next_cursor"}
        seen.extend(item["id"] for item in body["results"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [s.id for s in sorted(created, key=lambda s: (s.created_at, s.id))]


def test_session_list_filters_with_the_filterset_parameters(client: Client) -> None:
    wanted = SessionFactory(status="active", tags=["prod", "eu"])
    SessionFactory(status="active", tags=["prod"])
    SessionFactory(status="completed", tags=["prod", "eu"])
    SessionFactory(status="active", tags=["prod", "eu"], deleted_at=dt.datetime.now(UTC))
    body = client.get(url("session-list") + "?status=active&status=paused&tags=prod&tags=eu")
    assert [item["id"] for item in body.json()["results"]] == [wanted.id]


def test_session_list_includes_soft_deleted_sessions_on_request(client: Client) -> None:
    gone = SessionFactory(deleted_at=dt.datetime.now(UTC))
    ids = [
        s["id"]
        for s in client.get(url("session-list"), {"include_deleted": "true"}).json()["results"]
    ]
    assert gone.id in ids


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ({"status": "bogus"}, "invalid_status", "status"),
        ({"limit": "0"}, "validation_error", "limit"),
        ({"limit": "100000"}, "validation_error", "limit"),
        ({"limit": "ten"}, "validation_error", "limit"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor", "cursor"),
        ({"order_by": "random"}, "validation_error", "order_by"),
        ({"created_after": "yesterday"}, "validation_error", "created_after"),
        ({"agent_id": "x" * 300}, "validation_error", "agent_id"),
    ],
)
def test_session_list_refuses_bad_parameters_with_400(
    client: Client, query: dict[str, str], code: str, field: str
) -> None:
    response = client.get(url("session-list"), query)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == code
    assert error["details"]["field"] == field


def test_session_detail_has_the_session_its_runs_and_stats(
    client: Client, session: Session
) -> None:
    store = DjangoSessionStore()
    run = Run.new(session.id, provider="claude", token_usage={"input_tokens": 3})
    store.save_run(run)
    append(session.id, 2, run_id=run.id)
    body = client.get(url("session-detail", session.id)).json()
    assert body["session"] == session.to_dict()
    assert [r["id"] for r in body["runs"]] == [run.id]
    assert body["stats"]["event_count"] == 2
    assert body["stats"]["providers_used"] == ["claude"]
    assert body["stats"]["token_totals"]["input_tokens"] == 3


def test_session_detail_of_an_unknown_session_is_404(client: Client) -> None:
    response = client.get(url("session-detail", "ses_missing"))
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "session_not_found"
    assert error["details"] == {"session_id": "ses_missing"}
    assert error["message"]


def test_an_overlong_session_id_is_400(client: Client) -> None:
    for name in ("session-detail", "event-list", "event-stream", "session-export"):
        response = client.get(url(name, "s" * 300))
        assert response.status_code == 400, name
        assert error_of(response)["details"]["field"] == "session_id"


# --------------------------------------------------------------------------- events


def test_events_after_limit_and_last_sequence(client: Client, session: Session) -> None:
    events = append(session.id, 5)
    body = client.get(url("event-list", session.id), {"after": 1, "limit": 2}).json()
    assert [e["sequence_number"] for e in body["events"]] == [2, 3]
    assert body["events"][0] == events[1].to_dict()
    assert body["last_sequence"] == 3
    rest = client.get(url("event-list", session.id), {"after": body["last_sequence"]}).json()
    assert [e["sequence_number"] for e in rest["events"]] == [4, 5]
    assert rest["last_sequence"] == 5


def test_events_filter_by_run_and_type(client: Client, session: Session) -> None:
    append(session.id, 1, type="tool_call_started", run_id="run_a")
    append(session.id, 1, type="message_sent", run_id="run_a")
    append(session.id, 1, type="tool_call_started", run_id="run_b")
    append(session.id, 1, type="tool_call_failed", run_id="run_a")
    query = "?run_id=run_a&type=tool_call_started&type=tool_call_failed"
    body = client.get(url("event-list", session.id) + query).json()
    assert [e["sequence_number"] for e in body["events"]] == [1, 4]
    comma = client.get(url("event-list", session.id) + "?type=tool_call_started,message_sent")
    assert [e["sequence_number"] for e in comma.json()["events"]] == [1, 2, 3]


def test_a_filtered_read_that_matches_nothing_still_advances_last_sequence(
    client: Client, session: Session
) -> None:
    append(session.id, 3, type="message_sent")
    body = client.get(url("event-list", session.id), {"type": "tool_call_failed"}).json()
    assert body == {"events": [], "last_sequence": 3}


def test_events_of_a_session_without_a_session_row_are_readable(client: Client) -> None:
    orphan = EventFactory(session_id="ses_orphan", sequence_number=1)
    body = client.get(url("event-list", "ses_orphan")).json()
    assert [e["id"] for e in body["events"]] == [orphan.id]


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ({"type": "no_such_type"}, "invalid_event_type", "type"),
        ({"after": "-1"}, "validation_error", "after"),
        ({"after": "1e3"}, "validation_error", "after"),
        ({"after": "99999999999999999999999"}, "validation_error", "after"),
        ({"limit": "0"}, "validation_error", "limit"),
        ({"limit": "1001"}, "validation_error", "limit"),
        ({"wait_timeout_ms": "soon"}, "validation_error", "wait_timeout_ms"),
        ({"run_id": "r" * 300}, "validation_error", "run_id"),
        ({"run_id": "run\x00"}, "validation_error", "run_id"),
    ],
)
def test_events_refuse_bad_parameters_with_400(
    client: Client, session: Session, query: dict[str, str], code: str, field: str
) -> None:
    response = client.get(url("event-list", session.id), query)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["details"]["field"]) == (code, field)


def test_events_of_an_unknown_session_are_404(client: Client) -> None:
    response = client.get(url("event-list", "ses_missing"))
    assert response.status_code == 404
    assert error_of(response)["code"] == "session_not_found"


def _append_later(session_id: str, delay: float, **fields: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        try:
            append(session_id, 1, **fields)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_long_poll_returns_when_a_matching_event_is_appended(
    client: Client, session: Session
) -> None:
    append(session.id, 1)
    other = _append_later(session.id, 0.2, type="message_received")
    wanted = _append_later(session.id, 0.6, type="tool_call_started")
    start = time.monotonic()
    body = client.get(
        url("event-list", session.id),
        {"after": 1, "type": "tool_call_started", "wait_timeout_ms": 20_000},
    ).json()
    elapsed = time.monotonic() - start
    other.join()
    wanted.join()
    assert [e["type"] for e in body["events"]] == ["tool_call_started"]
    assert body["last_sequence"] == 3
    assert elapsed < 10, "woken by the append, not by the timeout"


def test_long_poll_is_capped_by_the_setting(
    client: Client, session: Session, settings: Any
) -> None:
    settings.AGENT_SESSIONS = {"API_LONG_POLL_MAX_MS": 300}
    start = time.monotonic()
    body = client.get(url("event-list", session.id), {"wait_timeout_ms": 600_000}).json()
    assert body == {"events": [], "last_sequence": 0}
    assert time.monotonic() - start < 5


# --------------------------------------------------------------------------- export


def test_export_streams_json_lines_that_read_back_as_an_archive(
    client: Client, session: Session, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(reading, "EXPORT_PAGE_SIZE", 3)
    store = DjangoSessionStore()
    runs = [
        Run.new(
            session.id, started_at=dt.datetime(2025, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=n)
        )
        for n in range(4)
    ]
    for run in reversed(runs):
        store.save_run(run)
    events = append(session.id, 7, data={"text": "line\nbreak ü"})
    response = client.get(url("session-export", session.id))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/jsonl")
    assert response.streaming
    body = b"".join(response.streaming_content)
    path = tmp_path / "export.jsonl"
    path.write_bytes(body)
    records = list(read_archive(path))
    assert [kind for kind, _ in records] == ["session"] + ["run"] * 4 + ["event"] * 7
    assert records[0][1] == session
    assert [r.id for _, r in records[1:5]] == [run.id for run in runs]
    assert [r for _, r in records[5:]] == events
    assert len(body.splitlines()) == 12


def test_export_of_an_unknown_session_is_404(client: Client) -> None:
    response = client.get(url("session-export", "ses_missing"))
    assert response.status_code == 404
    assert error_of(response)["code"] == "session_not_found"


# --------------------------------------------------------------------------- stream


def test_stream_frames_carry_sequence_type_and_one_line_json(
    client: Client, session: Session, short_streams: Any
) -> None:
    events = append(session.id, 2, data={"text": "two\nlines"}, run_id="run_1")
    response = client.get(url("event-stream", session.id))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    frames = event_frames(b"".join(response.streaming_content))
    assert [f["id"] for f in frames] == ["1", "2"]
    assert [f["event"] for f in frames] == ["message_sent"] * 2
    data = json.loads(frames[0]["data"])
    assert list(data) == [
        "id", "type", "session_id", "run_id", "sequence_number",
        "timestamp", "data", "metadata", "provider", "correlation_id",
    ]  # fmt: skip
    assert data["id"] == events[0].id
    assert data["data"] == {"text": "two\nlines"}


def test_stream_resumes_after_last_event_id_before_after(
    client: Client, session: Session, short_streams: Any
) -> None:
    append(session.id, 5)
    response = client.get(url("event-stream", session.id) + "?after=1", HTTP_LAST_EVENT_ID="3")
    assert [f["id"] for f in event_frames(b"".join(response.streaming_content))] == ["4", "5"]
    response = client.get(url("event-stream", session.id) + "?after=4")
    assert [f["id"] for f in event_frames(b"".join(response.streaming_content))] == ["5"]


def test_stream_filters_by_run_and_type(
    client: Client, session: Session, short_streams: Any
) -> None:
    append(session.id, 1, type="tool_call_started", run_id="run_a")
    append(session.id, 1, type="tool_call_started", run_id="run_b")
    append(session.id, 1, type="message_sent", run_id="run_a")
    response = client.get(url("event-stream", session.id) + "?run_id=run_a&type=tool_call_started")
    assert [f["id"] for f in event_frames(b"".join(response.streaming_content))] == ["1"]


def test_stream_sends_keepalive_comments_and_a_retry_delay(
    client: Client, session: Session, short_streams: Any
) -> None:
    frames = sse_frames(b"".join(client.get(url("event-stream", session.id)).streaming_content))
    assert frames[0]["retry"] == "2000"
    assert sum(1 for f in frames if f.get(":") == "keepalive") >= 2


def test_stream_tails_events_appended_while_it_runs(
    client: Client, session: Session, short_streams: Any
) -> None:
    thread = _append_later(session.id, 0.3)
    body = b"".join(client.get(url("event-stream", session.id)).streaming_content)
    thread.join()
    assert [f["id"] for f in event_frames(body)] == ["1"]


@pytest.mark.parametrize(
    ("headers", "query", "field"),
    [
        ({"HTTP_LAST_EVENT_ID": "abc"}, "", "Last-Event-ID"),
        ({}, "?after=x", "after"),
        ({}, "?type=nope", "type"),
    ],
)
def test_stream_refuses_bad_positions_and_filters_with_400(
    client: Client, session: Session, headers: dict[str, str], query: str, field: str
) -> None:
    response = client.get(url("event-stream", session.id) + query, **headers)
    assert response.status_code == 400
    assert error_of(response)["details"]["field"] == field


def test_stream_of_an_unknown_session_is_404(client: Client) -> None:
    response = client.get(url("event-stream", "ses_missing"))
    assert response.status_code == 404
    assert error_of(response)["code"] == "session_not_found"


async def _read_async_stream(response: Any, count: int) -> list[dict[str, str]]:
    raw = b""
    async for chunk in response.streaming_content:
        raw += chunk
        if len(event_frames(raw)) >= count:
            break
    return event_frames(raw)


def test_under_asgi_the_stream_is_an_async_iterator(
    viewer: User, session: Session, short_streams: Any
) -> None:
    import asyncio

    append(session.id, 2)

    async def scenario() -> list[dict[str, str]]:
        client = AsyncClient()
        await client.aforce_login(viewer)
        try:
            response = await client.get(url("event-stream", session.id))
            assert response.is_async
            return await _read_async_stream(response, 2)
        finally:
            # The login ran in asgiref's thread-sensitive thread; close its connection.
            await sync_to_async(connections.close_all)()

    assert [f["id"] for f in asyncio.run(scenario())] == ["1", "2"]


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("value", "error_id"),
    [
        ({"API_PERMISSION": "tests.test_api.no_such_callable"}, "agent_sessions.E020"),
        ({"API_PERMISSION": "tests.test_api.SEEN_BY_PERMISSION"}, "agent_sessions.E020"),
        ({"API_PERMISSION": 3}, "agent_sessions.E020"),
        ({"STREAM_HEARTBEAT_SECONDS": 0}, "agent_sessions.E021"),
        ({"STREAM_HEARTBEAT_SECONDS": float("nan")}, "agent_sessions.E021"),
        ({"STREAM_MAX_SECONDS": -1}, "agent_sessions.E021"),
        ({"API_LONG_POLL_MAX_MS": 1.5}, "agent_sessions.E022"),
        ({"STREAM_RETRY_MS": True}, "agent_sessions.E022"),
    ],
)
def test_bad_api_settings_are_system_check_errors(
    settings: Any, value: dict[str, Any], error_id: str
) -> None:
    settings.AGENT_SESSIONS = value
    assert error_id in {message.id for message in run_checks()}


def test_api_settings_pass_the_checks(settings: Any) -> None:
    settings.AGENT_SESSIONS = {
        "API_PERMISSION": "tests.test_api.allow_all",
        "STREAM_HEARTBEAT_SECONDS": 0.5,
        "STREAM_MAX_SECONDS": None,
        "API_LONG_POLL_MAX_MS": 1000,
        "STREAM_RETRY_MS": 500,
    }
    assert not [m for m in run_checks() if m.id and m.id.startswith("agent_sessions.E02")]


def test_streams_at_the_same_place_share_one_read(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from agent_sessions.api import sse
    from agent_sessions.api.reading import EventFilter, event_store

    append(session.id, 3)
    reads: list[int] = []
    real = sse.read_batch

    def counting(*args: Any) -> sse.Batch:
        reads.append(args[-1])
        return real(*args)

    monkeypatch.setattr(sse, "read_batch", counting)

    def state(position: int) -> sse.StreamState:
        return sse.StreamState(
            store=event_store(),
            alias="default",
            session_id=session.id,
            event_filter=EventFilter(),
            position=position,
            heartbeat=15,
            max_seconds=None,
            retry_ms=1000,
        )

    async def scenario() -> list[sse.Batch]:
        return await asyncio.gather(*(sse._shared_batch(state(p)) for p in (0, 0, 0, 0, 2)))

    batches = asyncio.run(scenario())
    assert sorted(reads) == [0, 2], "one read per position, not per stream"
    assert [len(b.window.events) for b in batches] == [3, 3, 3, 3, 1]
    assert batches[0].frames.count(b"event: message_sent\n") == 3
    assert not sse._inflight
