"""DjangoMemoryService: Google ADK's BaseMemoryService over search_text (CONTRACT §14).

Mirrors the documented behaviour of ADK's own memory services (memory is what
was added; search is scoped to one app's user; events without text are left
out; a bounded number of results, best first), plus what the asm tables
change: sessions of DjangoSessionService are remembered without a copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import pytest
from django.db import connection
from google.adk.events.event import Event
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.genai import types

from agent_sessions import models as m
from agent_sessions import search
from agent_sessions.errors import SearchUnavailableError, ValidationError
from agent_sessions.integrations import adk_memory
from agent_sessions.integrations.adk import DjangoSessionService
from agent_sessions.integrations.adk_mapping import MEMORY_MARK, memory_session_id
from agent_sessions.integrations.adk_memory import (
    MAX_QUERY_WORDS,
    DjangoMemoryService,
    memory_query,
)

pytestmark = pytest.mark.django_db(transaction=True)

APP, USER = "my_app", "user_1"


@pytest.fixture
def sessions() -> DjangoSessionService:
    return DjangoSessionService()


@pytest.fixture
def memory() -> DjangoMemoryService:
    return DjangoMemoryService()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def text_event(text: str, *, author: str = "user", **fields: Any) -> Event:
    role = "user" if author == "user" else "model"
    content = types.Content(role=role, parts=[types.Part(text=text)])
    return Event(invocation_id="inv", author=author, content=content, **fields)


def conversation(
    service: Any, *texts: str, app: str = APP, user: str = USER, session_id: str = "s1"
) -> Any:
    """A session of ``service`` holding ``texts`` (user and model turns alternating)."""
    session = run(service.create_session(app_name=app, user_id=user, session_id=session_id))
    for index, text in enumerate(texts):
        event = text_event(text, author="user" if index % 2 == 0 else "helper")
        run(service.append_event(session, event))
    return session


def found(memory: DjangoMemoryService, query: str, *, app: str = APP, user: str = USER) -> Any:
    return run(memory.search_memory(app_name=app, user_id=user, query=query)).memories


def texts(memories: Any) -> list[str]:
    return [entry.content.parts[0].text for entry in memories]


# --------------------------------------------------------------------------- what is memory


def test_a_stored_session_added_to_memory_is_found_without_a_copy(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    session = conversation(sessions, "I like to code in Python.", "Python is a fine choice.")
    events_before = m.Event.objects.count()
    run(memory.add_session_to_memory(session))

    assert m.Event.objects.count() == events_before
    assert not m.Session.objects.filter(metadata__adk_kind="memory").exists()
    assert sorted(texts(found(memory, "python"))) == [
        "I like to code in Python.",
        "Python is a fine choice.",
    ]


def test_a_session_not_added_is_not_memory(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    conversation(sessions, "I like to code in Python.")
    assert found(memory, "python") == []


def test_events_after_the_add_are_memory_only_once_added_again(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    session = conversation(sessions, "my dog is called Rex")
    run(memory.add_session_to_memory(session))
    # The turn in progress (what a preload query comes from) is not memory yet.
    run(sessions.append_event(session, text_event("what is my dog called?")))
    assert texts(found(memory, "dog")) == ["my dog is called Rex"]

    run(memory.add_session_to_memory(session))
    assert sorted(texts(found(memory, "dog"))) == ["my dog is called Rex", "what is my dog called?"]


def test_an_entry_carries_content_author_timestamp_and_ids(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    session = conversation(sessions, "question", "the answer is forty-two")
    run(memory.add_session_to_memory(session))

    (entry,) = found(memory, "answer")
    stored = session.events[1]
    assert entry.author == "helper"
    assert entry.content == stored.content
    assert datetime.fromisoformat(entry.timestamp).timestamp() == pytest.approx(stored.timestamp)
    assert entry.custom_metadata == {"session_id": "s1", "event_id": stored.id}
    assert m.Event.objects.filter(id=entry.id, session_id__startswith="adk:").exists()


def test_a_session_of_another_service_is_stored_once_and_found(
    memory: DjangoMemoryService,
) -> None:
    other = InMemorySessionService()  # type: ignore[no-untyped-call]
    session = conversation(other, "The ADK is a great toolkit.", "I agree, ADK rocks.")
    run(memory.add_session_to_memory(session))
    run(memory.add_session_to_memory(session))  # again: nothing stored twice

    row = m.Session.objects.get(id=memory_session_id(APP, USER, "s1"))
    assert (row.agent_id, row.metadata["adk_kind"], row.metadata["adk_user_id"]) == (
        APP,
        "memory",
        USER,
    )
    assert m.Event.objects.filter(session_id=row.id).count() == 2
    assert row.metadata[MEMORY_MARK] == 2
    assert len(found(memory, "adk")) == 2


def test_events_without_text_are_not_memories(memory: DjangoMemoryService) -> None:
    other = InMemorySessionService()  # type: ignore[no-untyped-call]
    session = run(other.create_session(app_name=APP, user_id=USER, session_id="s1"))
    call = types.Part(function_call=types.FunctionCall(name="weather", args={"city": "Paris"}))
    thought = types.Part(text="thinking about Paris", thought=True)
    for parts in ([call], [thought], None):
        content = types.Content(role="model", parts=parts) if parts else None
        run(other.append_event(session, Event(author="helper", content=content)))
    run(memory.add_session_to_memory(session))

    assert found(memory, "paris") == []
    assert not m.Event.objects.filter(session_id=memory_session_id(APP, USER, "s1")).exists()


def test_added_events_of_a_stored_session_are_remembered_in_place(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    session = conversation(sessions, "first turn about tea", "second turn about coffee")
    run(
        memory.add_events_to_memory(
            app_name=APP, user_id=USER, session_id="s1", events=session.events[:1]
        )
    )
    assert texts(found(memory, "tea coffee")) == ["first turn about tea"]
    assert not m.Session.objects.filter(metadata__adk_kind="memory").exists()


def test_events_added_without_a_session_are_found(memory: DjangoMemoryService) -> None:
    run(
        memory.add_events_to_memory(
            app_name=APP, user_id=USER, events=[text_event("I like to code in Python.")]
        )
    )
    assert texts(found(memory, "python")) == ["I like to code in Python."]
    assert m.Session.objects.filter(id=memory_session_id(APP, USER, "__unknown_session_id__"))


def test_a_deleted_session_is_forgotten(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    session = conversation(sessions, "my dog is called Rex")
    run(memory.add_session_to_memory(session))
    run(sessions.delete_session(app_name=APP, user_id=USER, session_id="s1"))
    assert found(memory, "dog") == []


# --------------------------------------------------------------------------- scope


def test_search_never_reaches_another_user_or_app(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    for app, user in [(APP, USER), (APP, "user_2"), ("other_app", USER), (APP, "user_1:x")]:
        session = conversation(sessions, f"secret of {app} {user}", app=app, user=user)
        run(memory.add_session_to_memory(session))
    other = InMemorySessionService()  # type: ignore[no-untyped-call]
    run(memory.add_session_to_memory(conversation(other, "secret elsewhere", user="user_2")))

    assert texts(found(memory, "secret")) == [f"secret of {APP} {USER}"]
    assert sorted(texts(found(memory, "secret", user="user_2"))) == [
        "secret elsewhere",
        f"secret of {APP} user_2",
    ]
    assert texts(found(memory, "secret", app="other_app")) == [f"secret of other_app {USER}"]
    assert found(memory, "secret", app="no_app") == []


# --------------------------------------------------------------------------- ranking, limits


def test_memories_come_best_first(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    session = conversation(
        sessions,
        "the train leaves at noon",
        "Paris has a fine museum",
        "the train to Paris leaves from the station",
    )
    run(memory.add_session_to_memory(session))
    got = texts(found(memory, "Which train goes to Paris?"))
    assert got[0] == "the train to Paris leaves from the station"
    assert sorted(got[1:]) == ["Paris has a fine museum", "the train leaves at noon"]


def test_a_search_returns_at_most_max_results(sessions: DjangoSessionService) -> None:
    memory = DjangoMemoryService(max_results=3)
    session = conversation(sessions, *[f"note {n} about tea" for n in range(7)])
    run(memory.add_session_to_memory(session))
    assert len(found(memory, "tea")) == 3


def test_many_sessions_are_searched_in_chunks_and_merged_by_rank(
    sessions: DjangoSessionService, memory: DjangoMemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adk_memory, "_SESSION_CHUNK", 2)
    for n, text in enumerate(["tea", "green tea and cake", "cake", "tea cake", "coffee"]):
        run(memory.add_session_to_memory(conversation(sessions, text, session_id=f"s{n}")))
    got = texts(found(memory, "tea cake"))
    assert sorted(got[:2]) == ["green tea and cake", "tea cake"]
    assert sorted(got[2:]) == ["cake", "tea"]


@pytest.mark.parametrize("query", ["", "   ", "the and or", "?!", "___"])
def test_a_query_without_words_finds_nothing(
    sessions: DjangoSessionService, memory: DjangoMemoryService, query: str
) -> None:
    run(memory.add_session_to_memory(conversation(sessions, "the and or ?! ___")))
    assert found(memory, query) == []


# --------------------------------------------------------------------------- hostile queries


@pytest.mark.parametrize(
    "query",
    [
        'dog" OR "',
        '"dog',
        "-dog",
        "dog*",
        "NEAR(dog cat)",
        "dog & !cat | (x",
        "dog:*",
        "body:dog",
        "dog'; DROP TABLE asm_events; --",
        "dog\\",
        "\U0001d521\U0001d52c\U0001d524 dog",  # fraktur letters: words of their own
    ],
)
def test_hostile_queries_search_their_words(
    sessions: DjangoSessionService, memory: DjangoMemoryService, query: str
) -> None:
    run(memory.add_session_to_memory(conversation(sessions, "my dog is called Rex")))
    assert texts(found(memory, query)) == ["my dog is called Rex"]


@pytest.mark.parametrize("query", ["dog\x00", "\x00", "dog \ud800"])
def test_a_query_no_text_can_hold_is_a_validation_error(
    memory: DjangoMemoryService, query: str
) -> None:
    with pytest.raises(ValidationError) as info:
        found(memory, query)
    assert info.value.code == "validation_error"


def test_a_very_long_query_is_truncated_not_refused(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    run(memory.add_session_to_memory(conversation(sessions, "my dog is called Rex")))
    assert texts(found(memory, "dog " + "x" * 10_000)) == ["my dog is called Rex"]
    assert texts(found(memory, "dog " + "filler " * 5_000)) == ["my dog is called Rex"]


def test_memory_query_keeps_the_first_distinct_words_within_the_limit() -> None:
    assert memory_query('What is "my" DOG called? dog-dog') == '"dog" OR "called"'
    long = memory_query(" ".join(f"word{n}" for n in range(1000)))
    assert long.count(" OR ") == MAX_QUERY_WORDS - 1
    assert long.startswith('"word0" OR "word1"')
    wide = memory_query(" ".join("w" * 90 + str(n) for n in range(20)), stop_words=())
    assert len(wide) <= search.MAX_QUERY_LENGTH
    assert search.parse_text_query(wide).alternatives
    assert memory_query("x" * 5000 + " dog") == '"dog"'


def test_memory_query_refuses_what_is_not_text() -> None:
    with pytest.raises(ValidationError):
        memory_query(None)
    with pytest.raises(ValidationError):
        memory_query(b"dog")


@pytest.mark.sqlite_only
def test_sqlite_without_fts5_is_a_search_unavailable_error(
    sessions: DjangoSessionService, memory: DjangoMemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(memory.add_session_to_memory(conversation(sessions, "my dog is called Rex")))
    search.remove_search_index(connection)
    monkeypatch.setattr("agent_sessions.query.fts5_available", lambda: False)
    try:
        with pytest.raises(SearchUnavailableError) as info:
            found(memory, "dog")
        assert info.value.code == "search_unavailable"
    finally:
        monkeypatch.undo()
        search.install_search_index(connection, "simple")


def test_a_bad_max_results_is_refused() -> None:
    for bad in (0, -1, True, "10"):
        with pytest.raises(ValueError, match="max_results"):
            DjangoMemoryService(max_results=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- as an agent tool


def test_preload_memory_gives_the_model_earlier_conversations(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    from google.adk.agents import LlmAgent
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_request import LlmRequest
    from google.adk.models.llm_response import LlmResponse
    from google.adk.runners import Runner
    from google.adk.tools.preload_memory_tool import PreloadMemoryTool

    prompts: list[str] = []

    class RecordingLlm(BaseLlm):
        """A local model: records what it was sent, answers "noted"."""

        async def generate_content_async(
            self, llm_request: LlmRequest, stream: bool = False
        ) -> AsyncGenerator[LlmResponse, None]:
            prompts.append(
                "\n".join(
                    part.text or "" for content in llm_request.contents for part in content.parts
                )
            )
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text="noted")]))

    async def remember(callback_context: Any) -> None:
        await callback_context.add_session_to_memory()

    agent = LlmAgent(
        name="helper",
        model=RecordingLlm(model="recording"),
        tools=[PreloadMemoryTool()],
        after_agent_callback=remember,
    )
    runner = Runner(app_name=APP, agent=agent, session_service=sessions, memory_service=memory)

    def turn(session_id: str, text: str) -> None:
        async def go() -> None:
            message = types.Content(role="user", parts=[types.Part(text=text)])
            async for _ in runner.run_async(
                user_id=USER, session_id=session_id, new_message=message
            ):
                pass

        run(go())

    run(sessions.create_session(app_name=APP, user_id=USER, session_id="monday"))
    turn("monday", "My sister Alba lives in Lisbon.")
    run(sessions.create_session(app_name=APP, user_id=USER, session_id="friday"))
    turn("friday", "Where does Alba live?")

    assert "<PAST_CONVERSATIONS>" not in prompts[0]
    past = prompts[1].split("<PAST_CONVERSATIONS>")[1].split("</PAST_CONVERSATIONS>")[0]
    assert "user: My sister Alba lives in Lisbon." in past
    # The question itself is this turn's, not a memory.
    assert "Where does Alba live?" not in past


def test_load_memory_answers_the_models_query(
    sessions: DjangoSessionService, memory: DjangoMemoryService
) -> None:
    from google.adk.agents import LlmAgent
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_request import LlmRequest
    from google.adk.models.llm_response import LlmResponse
    from google.adk.runners import Runner
    from google.adk.tools import load_memory

    run(memory.add_session_to_memory(conversation(sessions, "My sister Alba lives in Lisbon.")))
    recalled: list[Any] = []

    class ToolCallingLlm(BaseLlm):
        """A local model: asks load_memory first, then answers with what it was given."""

        async def generate_content_async(
            self, llm_request: LlmRequest, stream: bool = False
        ) -> AsyncGenerator[LlmResponse, None]:
            responses = [
                part.function_response
                for content in llm_request.contents
                for part in content.parts
                if part.function_response
            ]
            if not responses:
                call = types.FunctionCall(name="load_memory", args={"query": "Alba's city"})
                part = types.Part(function_call=call)
            else:
                # The tool's return value, as ADK hands it back: a LoadMemoryResponse.
                recalled.extend(responses[-1].response["result"].memories)
                part = types.Part(text="Lisbon")
            yield LlmResponse(content=types.Content(role="model", parts=[part]))

    agent = LlmAgent(name="helper", model=ToolCallingLlm(model="local"), tools=[load_memory])
    runner = Runner(app_name=APP, agent=agent, session_service=sessions, memory_service=memory)
    run(sessions.create_session(app_name=APP, user_id=USER, session_id="s2"))

    async def ask() -> None:
        message = types.Content(role="user", parts=[types.Part(text="Where does Alba live?")])
        async for _ in runner.run_async(user_id=USER, session_id="s2", new_message=message):
            pass

    run(ask())
    assert texts(recalled) == ["My sister Alba lives in Lisbon."]
    assert recalled[0].author == "user"
