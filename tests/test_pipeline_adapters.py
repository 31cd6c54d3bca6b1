"""The event pipeline on the framework adapters' write paths, fast paths included (§12)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from google.adk.events.event import Event as AdkEvent
from google.adk.events.event_actions import EventActions
from google.genai import types
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import empty_checkpoint

from agent_sessions import signals
from agent_sessions.core import Event
from agent_sessions.integrations.adk import DjangoSessionService
from agent_sessions.integrations.langchain import DjangoChatMessageHistory
from agent_sessions.integrations.langgraph import DjangoCheckpointSaver
from agent_sessions.integrations.openai_agents import DjangoAgentsSession

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("redacting"),
]

SECRET = "ghp_" + "R2d2C3po" * 4 + "BB8x"


@pytest.fixture
def redacting(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"REDACTION": {"enabled": True, "replacement": "categorized"}}


@pytest.fixture
def persisted() -> Iterator[list[Event]]:
    seen: list[Event] = []

    def receive(event: Event, **kwargs: Any) -> None:
        seen.append(event)

    signals.event_persisted.connect(receive, weak=False, dispatch_uid="adapters-test")
    yield seen
    signals.event_persisted.disconnect(dispatch_uid="adapters-test")


def stored_text(session_id: str) -> str:
    """Every stored event of the session as the database returns it (JSON as text)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CAST(data AS TEXT), CAST(metadata AS TEXT) FROM asm_events"
            " WHERE session_id = %s ORDER BY sequence_number",
            [session_id],
        )
        return " ".join(f"{data} {metadata}" for data, metadata in cursor.fetchall())


def test_openai_agents_single_items(persisted: list[Event]) -> None:
    session = DjangoAgentsSession("conv_redact_1")

    async def add_one_by_one() -> None:
        # The first add creates the asm session; the next ones take the fast path
        # (one statement on a private async connection) on PostgreSQL.
        for n in range(3):
            await session.add_items([{"role": "user", "content": f"{n} {SECRET}"}])

    asyncio.run(add_one_by_one())
    text = stored_text("conv_redact_1")
    assert SECRET not in text
    assert "[REDACTED:github_pat]" in text
    items = asyncio.run(session.get_items())
    assert items == [{"role": "user", "content": f"{n} [REDACTED:github_pat]"} for n in range(3)]
    assert [event.sequence_number for event in persisted] == [1, 2, 3]
    assert persisted[2].data["item"]["content"] == "2 [REDACTED:github_pat]"


def test_openai_agents_batch(persisted: list[Event]) -> None:
    session = DjangoAgentsSession("conv_redact_2")
    items = [{"role": "user", "content": f"{n} {SECRET}"} for n in range(3)]
    asyncio.run(session.add_items(items))
    text = stored_text("conv_redact_2")
    assert text.count("[REDACTED:github_pat]") == 3
    assert SECRET not in text
    assert [event.sequence_number for event in persisted] == [1, 2, 3]


def test_langchain_history() -> None:
    history = DjangoChatMessageHistory("chat_redact")
    history.add_message(HumanMessage(content=f"my token is {SECRET}"))
    history.add_messages([HumanMessage(content=SECRET), HumanMessage(content="fine")])
    text = stored_text("chat_redact")
    assert text.count("[REDACTED:github_pat]") == 2
    assert SECRET not in text
    assert [m.content for m in history.messages] == [
        "my token is [REDACTED:github_pat]",
        "[REDACTED:github_pat]",
        "fine",
    ]


def adk_text_event(text: str, **fields: Any) -> AdkEvent:
    content = types.Content(role="user", parts=[types.Part(text=text)])
    return AdkEvent(invocation_id="inv", author="user", content=content, **fields)


@pytest.mark.parametrize("fast_path", [True, False])
def test_adk_append_event(fast_path: bool, persisted: list[Event]) -> None:
    service = DjangoSessionService(fast_path=fast_path)

    async def scenario() -> Any:
        session = await service.create_session(app_name="app", user_id="u1")
        await service.append_event(session, adk_text_event(f"key {SECRET}"))
        # App-scoped state needs a transaction of several statements.
        shared = EventActions(state_delta={"app:seen": True})
        await service.append_event(session, adk_text_event(SECRET, actions=shared))
        return await service.get_session(app_name="app", user_id="u1", session_id=session.id)

    session = asyncio.run(scenario())
    assert [e.content.parts[0].text for e in session.events] == [
        "key [REDACTED:github_pat]",
        "[REDACTED:github_pat]",
    ]
    # The asm session id the adapter stores the ADK session under.
    asm_session_id = persisted[0].session_id
    assert asm_session_id.endswith(session.id)
    assert [(e.session_id, e.sequence_number) for e in persisted] == [
        (asm_session_id, 1),
        (asm_session_id, 2),
    ]
    text = stored_text(asm_session_id)
    assert text.count("[REDACTED:github_pat]") == 2
    assert SECRET not in text


def test_langgraph_checkpointer_put(persisted: list[Event]) -> None:
    saver = DjangoCheckpointSaver()
    config: Any = {"configurable": {"thread_id": "graph_redact", "checkpoint_ns": ""}}
    messages: list[Any] = []
    for n in range(2):
        # One put per new message, as a graph's loop makes them (one statement on PostgreSQL).
        messages = [*messages, HumanMessage(content=f"{n} {SECRET}", id=f"m{n}")]
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"messages": messages}
        checkpoint["channel_versions"] = {"messages": saver.get_next_version(None, None)}
        config = saver.put(config, checkpoint, {"source": "loop", "step": n}, {"messages": 1})
    text = stored_text("graph_redact")
    # Each message event holds the text twice: data.content and the message itself.
    assert text.count("[REDACTED:github_pat]") == 4
    assert SECRET not in text
    assert [(e.type, e.sequence_number) for e in persisted] == [
        ("message_sent", 1),
        ("workspace_snapshot_taken", 2),
        ("message_sent", 3),
        ("workspace_snapshot_taken", 4),
    ]
    assert persisted[2].data["content"] == "1 [REDACTED:github_pat]"
