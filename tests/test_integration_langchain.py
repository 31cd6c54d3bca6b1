"""DjangoChatMessageHistory: LangChain's BaseChatMessageHistory on the asm_* tables.

Mirrors the documented behaviour of LangChain's reference
``InMemoryChatMessageHistory`` (add, read back in order, clear, async
variants), plus the round-trip of every message field and the event mapping.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from agent_sessions import models as m
from agent_sessions.errors import ValidationError
from agent_sessions.integrations.langchain import DjangoChatMessageHistory
from agent_sessions.query import DjangoQueryAPI

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def history() -> DjangoChatMessageHistory:
    return DjangoChatMessageHistory("chat_1")


def test_new_history_is_empty(history: DjangoChatMessageHistory) -> None:
    assert history.messages == []


def test_messages_read_back_in_the_order_added(history: DjangoChatMessageHistory) -> None:
    history.add_user_message("hi")
    history.add_ai_message("hello")
    history.add_messages([HumanMessage("more"), AIMessage("sure")])
    assert [(m.type, m.content) for m in history.messages] == [
        ("human", "hi"),
        ("ai", "hello"),
        ("human", "more"),
        ("ai", "sure"),
    ]


def test_round_trip_keeps_type_content_id_and_additional_kwargs(
    history: DjangoChatMessageHistory,
) -> None:
    sent = [
        SystemMessage("be brief", id="m1"),
        HumanMessage(content=[{"type": "text", "text": "hi"}], id="m2", name="ann"),
        AIMessage(
            "calling",
            id="m3",
            additional_kwargs={"refusal": None, "extra": {"k": [1, 2]}},
            tool_calls=[{"name": "f", "args": {"x": 1}, "id": "call_1"}],
            response_metadata={"model": "fake"},
        ),
        ToolMessage("42", tool_call_id="call_1", id="m4"),
    ]
    history.add_messages(sent)
    assert history.messages == sent


def test_clear_removes_the_messages(history: DjangoChatMessageHistory) -> None:
    history.add_user_message("hi")
    history.clear()
    assert history.messages == []


def test_async_variants_behave_like_the_sync_ones(history: DjangoChatMessageHistory) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        await history.aadd_messages([HumanMessage("a"), AIMessage("b")])
        before = [m.content for m in await history.aget_messages()]
        await history.aclear()
        return before, [m.content for m in await history.aget_messages()]

    assert asyncio.run(scenario()) == (["a", "b"], [])


def test_histories_with_different_ids_are_separate() -> None:
    DjangoChatMessageHistory("chat_a").add_user_message("a")
    assert DjangoChatMessageHistory("chat_b").messages == []
    assert [m.content for m in DjangoChatMessageHistory("chat_a").messages] == ["a"]


def test_messages_are_typed_events_of_the_asm_session(history: DjangoChatMessageHistory) -> None:
    history.add_messages([HumanMessage("q"), AIMessage("a"), ToolMessage("r", tool_call_id="c")])
    events = m.Event.objects.filter(session_id="chat_1").order_by("sequence_number")
    assert [(e.sequence_number, e.type) for e in events] == [
        (1, "message_sent"),
        (2, "message_received"),
        (3, "tool_call_completed"),
    ]
    assert m.Session.objects.get(id="chat_1").agent_id == "langchain"


def test_clear_keeps_the_counter_monotonic(history: DjangoChatMessageHistory) -> None:
    history.add_user_message("a")
    history.clear()
    history.add_user_message("b")
    numbers = m.Event.objects.filter(session_id="chat_1").values_list("sequence_number", flat=True)
    assert list(numbers) == [2]


def test_a_message_the_database_cannot_store_is_refused(
    history: DjangoChatMessageHistory,
) -> None:
    with pytest.raises(ValidationError):
        history.add_messages([HumanMessage("ok"), HumanMessage("nul\x00")])
    assert history.messages == []


def test_importing_without_the_extra_names_the_pip_command() -> None:
    code = (
        "import sys, django; sys.modules['langchain_core'] = None; django.setup()\n"
        "import agent_sessions.integrations.langchain"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pip install django-agent-sessions[langchain]" in result.stderr


def test_a_turn_with_usage_is_recorded_as_a_run(history: DjangoChatMessageHistory) -> None:
    usage = {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}
    reply = AIMessage(
        "hi",
        usage_metadata=usage,
        response_metadata={"model_name": "claude-haiku-4-5", "model_provider": "claude"},
    )
    history.add_messages([HumanMessage("hello"), reply])
    history.add_messages([HumanMessage("no model call here")])
    (run,) = m.Run.objects.filter(session_id="chat_1")
    assert (run.status, run.provider, run.provider_metadata["model"]) == (
        "completed",
        "claude",
        "claude-haiku-4-5",
    )
    assert run.token_usage == usage
    cost = DjangoQueryAPI().get_cost_summary(session_id="chat_1")
    assert cost["total_cost_usd"] == pytest.approx(12 * 0.8e-6 + 3 * 4e-6)
