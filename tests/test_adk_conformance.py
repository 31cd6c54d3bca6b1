"""DjangoSessionService against the behaviours ADK's own session service tests check.

Written from reading ADK's ``tests/unittests/sessions/test_session_service.py``
(the contract its in-memory, SQLite and database services share) and the
2.13 ``InMemorySessionService``/``DatabaseSessionService``: each test checks one
of those behaviours against our service. Deliberate differences are listed in
docs/integrations/adk.md. Also: the (app, user, session id) identity on
``asm_sessions.id``, rows written by the earlier mapping, and recorded runs.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.integrations.adk import DjangoSessionService, asm_session_id
from agent_sessions.integrations.adk_mapping import app_state_id, user_state_id
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.store import DjangoSessionStore

pytestmark = pytest.mark.django_db(transaction=True)

APP = "my_app"


@pytest.fixture
def service() -> DjangoSessionService:
    return DjangoSessionService()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def user_event(text: str, *, invocation_id: str = "inv", **fields: Any) -> Event:
    content = types.Content(role="user", parts=[types.Part(text=text)])
    return Event(invocation_id=invocation_id, author="user", content=content, **fields)


def model_event(text: str, *, invocation_id: str = "inv", **fields: Any) -> Event:
    content = types.Content(role="model", parts=[types.Part(text=text)])
    return Event(invocation_id=invocation_id, author="agent", content=content, **fields)


def create(service: DjangoSessionService, user_id: str = "alice", **kwargs: Any) -> Any:
    return run(service.create_session(app_name=APP, user_id=user_id, **kwargs))


def get(service: DjangoSessionService, session_id: str, user_id: str = "alice", **kw: Any) -> Any:
    return run(service.get_session(app_name=APP, user_id=user_id, session_id=session_id, **kw))


# --------------------------------------------------------------------------- ADK's session tests


def test_get_of_a_missing_session_is_none(service: DjangoSessionService) -> None:
    assert get(service, "nope") is None


def test_created_session_reads_back_equal_with_its_events(service: DjangoSessionService) -> None:
    session = create(service, state={"k": "v"}, session_id="s")
    run(service.append_event(session, user_event("hi")))
    assert get(service, "s") == session


def test_create_and_list_sessions_per_user(service: DjangoSessionService) -> None:
    for n in range(5):
        create(service, session_id=f"s{n}", state={"n": n})
    listed = run(service.list_sessions(app_name=APP, user_id="alice")).sessions
    assert sorted((s.id, s.state["n"], s.events) for s in listed) == [
        (f"s{n}", n, []) for n in range(5)
    ]


def test_state_scopes_are_stored_and_temp_is_not(service: DjangoSessionService) -> None:
    s11 = create(service, session_id="s11", state={"key11": "value11"})
    create(service, session_id="s12", state={"key12": "value12"})
    create(service, user_id="bob", session_id="s2")
    delta = {"app:key": "value", "user:key1": "value1", "temp:key": "temp", "key11": "new"}
    run(service.append_event(s11, user_event("text", actions=EventActions(state_delta=delta))))
    assert (s11.state["app:key"], s11.state["key11"], s11.state["user:key1"]) == (
        "value",
        "new",
        "value1",
    )
    s12 = get(service, "s12")
    assert (s12.state["key12"], s12.state["user:key1"]) == ("value12", "value1")
    assert "temp:key" not in s12.state
    s2 = get(service, "s2", user_id="bob")
    assert s2.state.get("app:key") == "value"
    assert "user:key1" not in s2.state
    again = get(service, "s11")
    assert (again.state["key11"], again.state["user:key1"]) == ("new", "value1")
    assert "temp:key" not in again.state


def test_a_new_session_gets_the_persisted_shared_state(service: DjangoSessionService) -> None:
    s1 = create(service, session_id="s1", state={"key1": "value1"})
    delta = {"app:key": "value", "user:key1": "value1", "temp:key": "temp"}
    run(service.append_event(s1, user_event("text", actions=EventActions(state_delta=delta))))
    s2 = create(service, session_id="s2", state={})
    assert s2.state == {"app:key": "value", "user:key1": "value1"}


def test_bytes_in_events_round_trip(service: DjangoSessionService) -> None:
    session = create(service)
    content = types.Content(
        role="user", parts=[types.Part.from_bytes(data=b"\x89PNG\x00", mime_type="image/png")]
    )
    grounding = types.GroundingMetadata(search_entry_point=types.SearchEntryPoint(sdk_blob=b"blob"))
    event = Event(invocation_id="i", author="user", content=content, grounding_metadata=grounding)
    run(service.append_event(session, event))
    (stored,) = get(service, session.id).events
    assert (stored.content, stored.grounding_metadata) == (content, grounding)


def test_every_event_field_round_trips(service: DjangoSessionService) -> None:
    session = create(service)
    event = Event(
        invocation_id="invocation",
        author="user",
        content=types.Content(role="user", parts=[types.Part(text="test_text")]),
        turn_complete=True,
        partial=False,
        actions=EventActions(artifact_delta={"file": 0}, transfer_to_agent="agent", escalate=True),
        long_running_tool_ids={"tool1"},
        error_code="error_code",
        error_message="error_message",
        interrupted=True,
    )
    run(service.append_event(session, event))
    assert get(service, session.id) == session


def test_get_session_config_filters_events(service: DjangoSessionService) -> None:
    session = create(service)
    for n in range(5):
        run(service.append_event(session, user_event(str(n), timestamp=1000.0 + n)))
    recent = get(service, session.id, config=GetSessionConfig(num_recent_events=3))
    assert [e.timestamp for e in recent.events] == [1002.0, 1003.0, 1004.0]
    after = get(service, session.id, config=GetSessionConfig(after_timestamp=1003.0))
    assert [e.timestamp for e in after.events] == [1003.0, 1004.0]


# --------------------------------------------------------------------------- ids per (app, user)


def test_two_users_may_use_the_same_session_id(service: DjangoSessionService) -> None:
    create(service, user_id="alice", session_id="main", state={"who": "alice"})
    bob = create(service, user_id="bob", session_id="main", state={"who": "bob"})
    assert bob.id == "main"
    run(service.append_event(bob, user_event("bob's")))
    assert get(service, "main", user_id="alice").state["who"] == "alice"
    assert get(service, "main", user_id="alice").events == []
    assert [e.content.parts[0].text for e in get(service, "main", user_id="bob").events] == [
        "bob's"
    ]
    run(service.delete_session(app_name=APP, user_id="bob", session_id="main"))
    assert get(service, "main", user_id="alice") is not None


def test_two_apps_may_use_the_same_session_id(service: DjangoSessionService) -> None:
    run(service.create_session(app_name="a1", user_id="u", session_id="main"))
    run(service.create_session(app_name="a2", user_id="u", session_id="main"))
    assert m.Session.objects.filter(metadata__adk_session_id="main").count() == 2


def test_separator_lookalikes_in_ids_do_not_collide(service: DjangoSessionService) -> None:
    run(service.create_session(app_name="a", user_id="b:c", session_id="d"))
    run(service.create_session(app_name="a", user_id="b", session_id="c:d"))
    run(service.create_session(app_name="a:b", user_id="c", session_id="d"))
    assert asm_session_id("a", "b:c", "d") != asm_session_id("a", "b", "c:d")
    assert m.Session.objects.filter(metadata__adk_kind="session").count() == 3


def test_user_state_of_names_with_colons_is_kept_apart(service: DjangoSessionService) -> None:
    # Under the plain form adk-user-state:<app>:<user>, both pairs would be a:b:c.
    pairs = [("a:b", "c"), ("a", "b:c")]
    for app, user in pairs:
        session = run(
            service.create_session(
                app_name=app, user_id=user, state={"user:owner": f"{app}/{user}"}
            )
        )
        delta = EventActions(state_delta={"user:seen": f"{app}/{user}"})
        run(service.append_event(session, user_event("hi", actions=delta)))
    for app, user in pairs:
        state = run(service.get_user_state(app_name=app, user_id=user))
        assert state == {"owner": f"{app}/{user}", "seen": f"{app}/{user}"}
    assert user_state_id("a:b", "c") != user_state_id("a", "b:c")
    assert m.Session.objects.filter(metadata__adk_kind="user_state").count() == 2


def test_user_state_rows_of_names_without_colons_keep_their_ids(
    service: DjangoSessionService,
) -> None:
    # Rows written by earlier versions stay valid: the same id is computed.
    run(service.create_session(app_name=APP, user_id="u%1", state={"user:lang": "en"}))
    assert user_state_id(APP, "u%1") == f"adk-user-state:{APP}:u%1"
    assert m.Session.objects.get(id=f"adk-user-state:{APP}:u%1").context == {"lang": "en"}


def test_shared_state_rows_of_very_long_names_fit_the_column(service: DjangoSessionService) -> None:
    app, user = "a" * 250, "u:" * 120
    session = run(
        service.create_session(app_name=app, user_id=user, state={"app:x": 1, "user:y": 2, "z": 3})
    )
    assert session.state == {"app:x": 1, "user:y": 2, "z": 3}
    assert max(len(app_state_id(app)), len(user_state_id(app, user))) <= 255
    got = run(service.get_session(app_name=app, user_id=user, session_id=session.id))
    assert got.state == {"app:x": 1, "user:y": 2, "z": 3}


def test_very_long_ids_fit_the_column(service: DjangoSessionService) -> None:
    long_id = "x" * 250
    session = run(service.create_session(app_name=APP, user_id="u" * 200, session_id=long_id))
    assert session.id == long_id
    assert len(asm_session_id(APP, "u" * 200, long_id)) <= 255
    assert get(service, long_id, user_id="u" * 200).id == long_id


def test_creating_an_existing_id_for_the_same_user_raises(service: DjangoSessionService) -> None:
    create(service, session_id="main")
    with pytest.raises(AlreadyExistsError):
        create(service, session_id="main")


def test_padded_ids_are_normalised_on_every_call(service: DjangoSessionService) -> None:
    session = create(service, session_id="  padded  ")
    assert session.id == "padded"
    assert get(service, " padded\t").id == "padded"
    with pytest.raises(AlreadyExistsError):
        create(service, session_id="padded ")
    run(service.delete_session(app_name=APP, user_id="alice", session_id="\tpadded "))
    assert get(service, "padded") is None


@pytest.mark.parametrize("blank", ["", "   ", "\t\n", None])
def test_a_blank_session_id_generates_one(service: DjangoSessionService, blank: Any) -> None:
    session = create(service, session_id=blank)
    assert session.id.strip()
    assert session.id == session.id.strip()
    assert get(service, session.id) is not None


# --------------------------------------------------------------------------- state and events


def test_non_json_state_values_are_stored_in_json_form(service: DjangoSessionService) -> None:
    session = create(service, session_id="s")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    delta = {"when": when, "tags": {"b"}, "fn": len, "app:when": when, "user:tags": {"x"}}
    run(service.append_event(session, user_event("x", actions=EventActions(state_delta=delta))))
    got = get(service, "s")
    assert len(got.events) == 1
    assert got.state["when"] == got.state["app:when"] == "2026-01-02T03:04:05Z"
    assert (got.state["tags"], got.state["user:tags"]) == (["b"], ["x"])
    assert "built-in function len" in got.state["fn"]


def test_non_json_initial_state_is_stored_in_json_form(service: DjangoSessionService) -> None:
    create(service, session_id="s", state={"when": datetime(2026, 1, 2, tzinfo=UTC), "s": {1}})
    assert get(service, "s").state == {"when": "2026-01-02T00:00:00Z", "s": [1]}


def test_the_same_event_appended_twice_is_stored_once(service: DjangoSessionService) -> None:
    session = create(service, session_id="s")
    event = user_event("once", actions=EventActions(state_delta={"count": 1, "user:n": 1}))
    run(service.append_event(session, event))
    stale = get(service, "s")
    run(service.append_event(stale, event))
    run(service.append_event(session, event))
    got = get(service, "s")
    assert [e.id for e in got.events] == [event.id]
    assert len(session.events) == 1
    assert m.Event.objects.filter(session_id=asm_session_id(APP, "alice", "s")).count() == 1
    assert DjangoSessionStore().get_latest_sequence(asm_session_id(APP, "alice", "s")) == 1


def test_concurrent_redeliveries_store_the_event_once(service: DjangoSessionService) -> None:
    session = create(service, session_id="s")
    event = user_event("once")

    copies = [get(service, "s") for _ in range(4)]

    async def scenario() -> None:
        await asyncio.gather(*(service.append_event(copy, event) for copy in [session, *copies]))

    run(scenario())
    assert len(get(service, "s").events) == 1


def test_event_ids_are_per_session(service: DjangoSessionService) -> None:
    one, two = create(service, session_id="one"), create(service, session_id="two")
    event = user_event("shared id")
    run(service.append_event(one, event))
    run(service.append_event(two, event))
    assert len(get(service, "one").events) == len(get(service, "two").events) == 1


# --------------------------------------------------------------------------- earlier mapping


def _legacy_session(session_id: str, user_id: str, state: dict[str, Any]) -> None:
    """A session as the earlier mapping wrote it: asm id = ADK id, no adk_session_id."""
    DjangoSessionStore().save_session(
        core.Session.new(
            APP,
            id=session_id,
            context=state,
            metadata={"framework": "adk", "adk_kind": "session", "adk_user_id": user_id},
        )
    )


def test_sessions_of_the_earlier_mapping_are_still_read_and_appended(
    service: DjangoSessionService,
) -> None:
    _legacy_session("old", "alice", {"k": "v"})
    got = get(service, "old")
    assert (got.id, got.state) == ("old", {"k": "v"})
    run(service.append_event(got, user_event("more")))
    assert m.Event.objects.filter(session_id="old").count() == 1
    assert len(get(service, "old").events) == 1
    listed = run(service.list_sessions(app_name=APP, user_id="alice")).sessions
    assert [s.id for s in listed] == ["old"]
    with pytest.raises(AlreadyExistsError):
        create(service, session_id="old")
    assert get(service, "old", user_id="bob") is None
    run(service.delete_session(app_name=APP, user_id="alice", session_id="old"))
    assert not m.Session.objects.filter(id="old").exists()


# --------------------------------------------------------------------------- runs and usage


def usage(prompt: int, candidates: int) -> types.GenerateContentResponseUsageMetadata:
    return types.GenerateContentResponseUsageMetadata(
        prompt_token_count=prompt,
        candidates_token_count=candidates,
        total_token_count=prompt + candidates,
    )


def test_an_invocation_is_recorded_as_a_run_with_its_usage(
    service: DjangoSessionService,
) -> None:
    session = create(service, session_id="s")
    call = types.Part(function_call=types.FunctionCall(name="f", args={}))
    run(service.append_event(session, user_event("q", invocation_id="inv1")))
    tool_call = Event(
        invocation_id="inv1",
        author="agent",
        content=types.Content(role="model", parts=[call]),
        usage_metadata=usage(100, 10),
        model_version="gemini-2.5-flash",
    )
    run(service.append_event(session, tool_call))
    answer = model_event("a", invocation_id="inv1", usage_metadata=usage(150, 20))
    run(service.append_event(session, answer))
    run(service.append_event(session, answer))  # a re-delivery counts once
    (row,) = m.Run.objects.all()
    assert row.session_id == asm_session_id(APP, "alice", "s")
    assert (row.status, row.provider, row.provider_metadata["model"]) == (
        "completed",
        "google",
        "gemini-2.5-flash",
    )
    assert row.token_usage == {"input_tokens": 250, "output_tokens": 30, "total_tokens": 280}
    assert row.turn_count == 2
    summary = DjangoQueryAPI().get_usage_summary(provider="google")
    assert (summary["total_tokens"], summary["run_count"]) == (280, 1)


def test_an_error_event_fails_the_run(service: DjangoSessionService) -> None:
    session = create(service, session_id="s")
    run(service.append_event(session, model_event("x", error_code="SAFETY", error_message="no")))
    (row,) = m.Run.objects.all()
    assert (row.status, row.error) == ("failed", {"error_code": "SAFETY", "error_message": "no"})


def test_no_runs_are_recorded_when_turned_off(service: DjangoSessionService, settings: Any) -> None:
    settings.AGENT_SESSIONS = {"INTEGRATIONS_RECORD_RUNS": False}
    session = create(service, session_id="s")
    run(service.append_event(session, model_event("a", usage_metadata=usage(1, 1))))
    assert not m.Run.objects.exists()
    assert len(get(service, "s").events) == 1
