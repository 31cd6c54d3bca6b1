"""DjangoSessionService: Google ADK's BaseSessionService on the asm_* tables.

Mirrors the documented behaviour of ADK's reference ``InMemorySessionService``
(create/get/list/delete, state scopes, ``GetSessionConfig``, partial events),
plus the asm mapping and concurrent appends from two processes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import pytest
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.integrations.adk import DjangoSessionService, asm_session_id
from agent_sessions.store import DjangoSessionStore
from tests.integration_helpers import (
    backend_connections,
    run_in_processes,
    settled_backend_connections,
)

pytestmark = pytest.mark.django_db(transaction=True)

APP, USER = "my_app", "user_1"
#: The asm session id of the ADK session "s1" of APP and USER.
S1 = asm_session_id(APP, USER, "s1")


@pytest.fixture
def service() -> DjangoSessionService:
    return DjangoSessionService()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def text_event(text: str, *, author: str = "user", **fields: Any) -> Event:
    role = "user" if author == "user" else "model"
    content = types.Content(role=role, parts=[types.Part(text=text)])
    return Event(invocation_id="inv", author=author, content=content, **fields)


def create(service: DjangoSessionService, **kwargs: Any) -> Any:
    return run(service.create_session(app_name=APP, user_id=USER, **kwargs))


def get(service: DjangoSessionService, session_id: str, **kwargs: Any) -> Any:
    return run(service.get_session(app_name=APP, user_id=USER, session_id=session_id, **kwargs))


def texts(session: Any) -> list[str]:
    return [e.content.parts[0].text for e in session.events]


def test_created_session_reads_back(service: DjangoSessionService) -> None:
    session = create(service, state={"k": "v"}, session_id="s1")
    got = get(service, "s1")
    assert (got.id, got.app_name, got.user_id, got.state) == ("s1", APP, USER, {"k": "v"})
    assert got.last_update_time == pytest.approx(session.last_update_time)


def test_generated_session_ids_are_unique(service: DjangoSessionService) -> None:
    assert create(service).id != create(service).id


def test_creating_an_existing_id_raises_already_exists(service: DjangoSessionService) -> None:
    create(service, session_id="s1")
    with pytest.raises(AlreadyExistsError):
        create(service, session_id="s1")


def test_missing_session_is_none(service: DjangoSessionService) -> None:
    assert get(service, "nope") is None


def test_a_session_is_not_visible_to_another_user_or_app(service: DjangoSessionService) -> None:
    create(service, session_id="s1")
    other_user = service.get_session(app_name=APP, user_id="u2", session_id="s1")
    other_app = service.get_session(app_name="app2", user_id=USER, session_id="s1")
    assert run(other_user) is None
    assert run(other_app) is None


def test_appended_events_read_back_in_order(service: DjangoSessionService) -> None:
    session = create(service, session_id="s1")
    for text in ["a", "b", "c"]:
        run(service.append_event(session, text_event(text)))
    got = get(service, "s1")
    assert texts(got) == ["a", "b", "c"]
    assert got.events[0].id == session.events[0].id
    assert got.last_update_time == pytest.approx(session.events[-1].timestamp)


def test_num_recent_events_returns_the_latest(service: DjangoSessionService) -> None:
    session = create(service, session_id="s1")
    for text in "abcd":
        run(service.append_event(session, text_event(text)))
    assert texts(get(service, "s1", config=GetSessionConfig(num_recent_events=2))) == ["c", "d"]
    assert texts(get(service, "s1", config=GetSessionConfig(num_recent_events=0))) == []


def test_after_timestamp_keeps_events_at_or_after_it(service: DjangoSessionService) -> None:
    session = create(service, session_id="s1")
    base = time.time()
    for offset, text in enumerate("abc"):
        run(service.append_event(session, text_event(text, timestamp=base + offset)))
    got = get(service, "s1", config=GetSessionConfig(after_timestamp=base + 1))
    assert texts(got) == ["b", "c"]


def test_partial_events_are_not_stored(service: DjangoSessionService) -> None:
    session = create(service, session_id="s1")
    run(service.append_event(session, text_event("partial", partial=True)))
    assert get(service, "s1").events == []


def test_state_deltas_go_to_their_scopes_and_temp_is_not_stored(
    service: DjangoSessionService,
) -> None:
    session = create(service, session_id="s1")
    delta = {"sk": 1, "app:ak": 2, "user:uk": 3, "temp:tk": 4}
    event = text_event("x", actions=EventActions(state_delta=delta))
    run(service.append_event(session, event))
    assert session.state == delta
    assert get(service, "s1").state == {"sk": 1, "app:ak": 2, "user:uk": 3}
    other = create(service, session_id="s2")
    assert other.state == {"app:ak": 2, "user:uk": 3}
    assert run(service.get_user_state(app_name=APP, user_id=USER)) == {"uk": 3}


def test_initial_state_scopes_are_shared(service: DjangoSessionService) -> None:
    create(service, session_id="s1", state={"app:a": 1, "user:u": 2, "s": 3})
    assert create(service, session_id="s2").state == {"app:a": 1, "user:u": 2}


def test_list_sessions_by_user_and_for_the_app(service: DjangoSessionService) -> None:
    create(service, session_id="s1")
    create(service, session_id="s2")
    run(service.create_session(app_name=APP, user_id="u2", session_id="s3"))
    run(service.create_session(app_name="other", user_id=USER, session_id="s4"))
    mine = run(service.list_sessions(app_name=APP, user_id=USER)).sessions
    everyone = run(service.list_sessions(app_name=APP)).sessions
    assert sorted(s.id for s in mine) == ["s1", "s2"]
    assert sorted(s.id for s in everyone) == ["s1", "s2", "s3"]
    assert all(s.events == [] for s in everyone)


def test_list_sessions_is_oldest_update_first(service: DjangoSessionService) -> None:
    first, second = create(service, session_id="s1"), create(service, session_id="s2")
    run(service.append_event(first, text_event("later")))
    listed = run(service.list_sessions(app_name=APP, user_id=USER)).sessions
    assert [s.id for s in listed] == [second.id, first.id]


def test_delete_session_removes_it_and_its_events(service: DjangoSessionService) -> None:
    session = create(service, session_id="s1")
    run(service.append_event(session, text_event("a")))
    run(service.delete_session(app_name=APP, user_id=USER, session_id="s1"))
    assert get(service, "s1") is None
    assert not m.Event.objects.filter(session_id=S1).exists()
    run(service.delete_session(app_name=APP, user_id=USER, session_id="s1"))


def test_appending_to_a_deleted_session_raises_not_found(service: DjangoSessionService) -> None:
    session = create(service, session_id="s1")
    run(service.delete_session(app_name=APP, user_id=USER, session_id="s1"))
    with pytest.raises(SessionNotFoundError):
        run(service.append_event(session, text_event("a")))


def test_sessions_and_events_map_onto_asm_rows(service: DjangoSessionService) -> None:
    session = create(service, session_id="s1", state={"s": 1})
    call = types.Part(function_call=types.FunctionCall(name="f", args={}))
    reply = types.Part(function_response=types.FunctionResponse(name="f", response={"r": 1}))
    run(service.append_event(session, text_event("q")))
    run(service.append_event(session, Event(author="bot", content=types.Content(parts=[call]))))
    run(service.append_event(session, Event(author="bot", content=types.Content(parts=[reply]))))
    run(service.append_event(session, text_event("a", author="bot")))
    row = m.Session.objects.get(id=S1)
    assert (row.agent_id, row.metadata["adk_user_id"], row.context) == (APP, USER, {"s": 1})
    events = m.Event.objects.filter(session_id=S1).order_by("sequence_number")
    assert [(e.sequence_number, e.type) for e in events] == [
        (1, "message_sent"),
        (2, "tool_call_started"),
        (3, "tool_call_completed"),
        (4, "message_received"),
    ]


def _append_many(session_id: str, label: str, count: int) -> None:
    service = DjangoSessionService()
    session = asyncio.run(service.get_session(app_name=APP, user_id=USER, session_id=session_id))
    for n in range(count):
        delta = {f"{label}_last": n}
        event = text_event(f"{label}{n}", actions=EventActions(state_delta=delta))
        asyncio.run(service.append_event(session, event))


def test_concurrent_appends_from_two_processes_keep_every_event_in_order(
    service: DjangoSessionService,
) -> None:
    create(service, session_id="s1")
    run_in_processes(_append_many, [("s1", "p", 25), ("s1", "q", 25)])
    got = get(service, "s1")
    numbers = list(
        m.Event.objects.filter(session_id=S1)
        .order_by("sequence_number")
        .values_list("sequence_number", flat=True)
    )
    assert numbers == list(range(1, 51))
    for label in "pq":
        assert [t for t in texts(got) if t[0] == label] == [f"{label}{n}" for n in range(25)]
        assert got.state[f"{label}_last"] == 24


def _append_shared_state(session_id: str, label: str, count: int) -> None:
    service = DjangoSessionService()
    session = asyncio.run(service.get_session(app_name=APP, user_id=USER, session_id=session_id))
    for n in range(count):
        delta = {f"app:{label}": n, f"user:{label}": n, label: n}
        event = text_event(f"{label}{n}", actions=EventActions(state_delta=delta))
        asyncio.run(service.append_event(session, event))


def test_concurrent_shared_state_deltas_from_two_processes_are_all_applied(
    service: DjangoSessionService,
) -> None:
    create(service, session_id="s1")
    create(service, session_id="s2")
    run_in_processes(_append_shared_state, [("s1", "p", 15), ("s2", "q", 15)])
    for session_id, label in (("s1", "p"), ("s2", "q")):
        got = get(service, session_id)
        assert len(got.events) == 15
        assert got.state[label] == 14
        assert got.state["app:p"] == got.state["app:q"] == 14
        assert got.state["user:p"] == got.state["user:q"] == 14


def test_an_append_wakes_a_long_polling_reader_of_the_session(
    service: DjangoSessionService,
) -> None:
    session = create(service, session_id="s1")
    store = DjangoSessionStore()

    async def scenario() -> list[Any]:
        waiting = asyncio.ensure_future(store.aget_events(S1, wait_timeout_ms=20_000))
        await asyncio.sleep(0.1)  # the reader is now waiting in its worker thread
        await service.append_event(session, text_event("wake"))
        return await asyncio.wait_for(waiting, timeout=10)

    events = asyncio.run(scenario())
    assert [e.data["adk_event"]["content"]["parts"][0]["text"] for e in events] == ["wake"]


@pytest.mark.postgres_only
def test_aclose_closes_the_private_connection(service: DjangoSessionService) -> None:
    session = create(service, session_id="s1")

    async def scenario() -> tuple[int, int]:
        for n in range(5):
            await service.append_event(session, text_event(f"e{n}"))
        # Counted from a worker thread, whose own connection counts in both.
        while_open = await run_in_worker(backend_connections)
        await service.aclose()
        return while_open, await run_in_worker(settled_backend_connections, while_open - 1)

    while_open, after_aclose = run(scenario())
    assert after_aclose == while_open - 1
    assert texts(get(service, "s1")) == [f"e{n}" for n in range(5)]


@pytest.mark.postgres_only
def test_no_connection_outlives_the_event_loop(service: DjangoSessionService) -> None:
    sessions = [create(service, session_id=f"s{n}") for n in range(6)]

    async def scenario() -> None:
        for n in range(3):  # concurrent appends: several pooled connections
            await asyncio.gather(
                *(
                    service.append_event(
                        s, text_event(f"e{n}", actions=EventActions(state_delta={"n": n}))
                    )
                    for s in sessions
                )
            )

    run(scenario())
    # Only the test's own connection is left (worker threads close theirs too).
    assert settled_backend_connections(1) == 1
    assert all(get(service, s.id).state["n"] == 2 for s in sessions)


def test_importing_without_the_extra_names_the_pip_command() -> None:
    code = (
        "import sys, django; sys.modules['google.adk'] = None; django.setup()\n"
        "import agent_sessions.integrations.adk"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pip install django-agent-sessions[adk]" in result.stderr


@pytest.mark.postgres_only
def test_an_append_finds_the_session_row_by_primary_key_whatever_the_statistics() -> None:
    # Statistics are those of a near-empty table (no ANALYZE): a plan may then
    # prefer the agent_id index, and walk every version of every session of
    # the app on each append. The owner check must leave it nothing to use.
    from django.db import connection

    from agent_sessions.integrations import pgsql

    params = {
        "id": "evt_x",
        "type": "message_sent",
        "timestamp": datetime(2026, 1, 1),
        "session_id": "adk:app:u:s",
        "run_id": None,
        "data": "{}",
        "metadata": "{}",
        "schema_version": 1,
        "provider": None,
        "correlation_id": None,
        "now": datetime(2026, 1, 1),
        "updated_at": datetime(2026, 1, 1),
        "state_delta": "{}",
        "app_name": "app",
        "user_id": "u",
    }
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + pgsql._APPEND_ADK_EVENT, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "asm_sessions_pkey" in plan
    assert "asm_sessions_agent_id_index" not in plan
