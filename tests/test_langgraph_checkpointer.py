"""DjangoCheckpointSaver: LangGraph's published conformance suite, and a LangChain 1.x agent.

``langgraph-checkpoint-conformance`` runs every capability the saver
implements (put, put_writes, get_tuple, list, delete_thread, and the
extended copy_thread, prune and delete_for_runs) against it, on the test
database. The rest checks what the asm tables add: the thread as an asm
session, its messages as ordinary events, runs and usage, retention.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import CapabilityReport

from agent_sessions import models as m
from agent_sessions.integrations.langchain import DjangoChatMessageHistory
from agent_sessions.integrations.langgraph import DjangoCheckpointSaver
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.retention import RetentionPolicy

pytestmark = pytest.mark.django_db(transaction=True)


@checkpointer_test(name="DjangoCheckpointSaver")
async def django_saver() -> AsyncIterator[DjangoCheckpointSaver]:
    yield DjangoCheckpointSaver()


def failures(report: CapabilityReport) -> dict[str, Any]:
    return {
        name: result.failures
        for name, result in report.results.items()
        if result.passed is not True
    }


def test_the_published_conformance_suite_passes_for_every_capability() -> None:
    report = asyncio.run(validate(django_saver))
    assert failures(report) == {}
    assert sorted(report.results) == [
        "copy_thread",
        "delete_for_runs",
        "delete_thread",
        "get_tuple",
        "list",
        "prune",
        "put",
        "put_writes",
    ]
    assert report.passed_all()
    # Every spec test ran: nothing skipped, none vacuous.
    assert sum(r.tests_passed for r in report.results.values()) == 81
    assert sum(r.tests_skipped for r in report.results.values()) == 0


def test_importing_without_the_extra_names_the_pip_command() -> None:
    code = (
        "import sys, django; sys.modules['langgraph'] = None; django.setup()\n"
        "import agent_sessions.integrations.langgraph"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pip install django-agent-sessions[langgraph]" in result.stderr


# --------------------------------------------------------------------------- a LangChain 1.x agent


class ScriptedChatModel(GenericFakeChatModel):
    """Answers with the scripted AI messages in turn and remembers what it was sent."""

    seen: list[list[Any]] = []

    def _generate(self, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def answer(text: str, input_tokens: int = 30, output_tokens: int = 5) -> AIMessage:
    return AIMessage(
        content=text,
        usage_metadata={
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
        response_metadata={"model_name": "gpt-4o-mini", "model_provider": "openai"},
    )


def agent_with(saver: DjangoCheckpointSaver, *answers: AIMessage) -> tuple[Any, Any]:
    model = ScriptedChatModel(messages=iter(answers))
    model.seen = []
    return create_agent(model, tools=[], checkpointer=saver), model


def ask(agent: Any, thread_id: str, text: str) -> Any:
    return agent.invoke(
        {"messages": [HumanMessage(text)]}, {"configurable": {"thread_id": thread_id}}
    )


def test_create_agent_keeps_the_conversation_across_turns() -> None:
    agent, model = agent_with(DjangoCheckpointSaver(), answer("Hi Ann."), answer("Ann."))
    ask(agent, "thread_1", "I am Ann.")
    result = ask(agent, "thread_1", "Who am I?")
    assert result["messages"][-1].content == "Ann."
    assert [m.content for m in model.seen[-1]] == ["I am Ann.", "Hi Ann.", "Who am I?"]


def test_a_new_saver_instance_resumes_the_thread() -> None:
    agent, _ = agent_with(DjangoCheckpointSaver(), answer("one"))
    ask(agent, "thread_2", "first")
    agent, model = agent_with(DjangoCheckpointSaver(), answer("two"))
    ask(agent, "thread_2", "second")
    assert [m.content for m in model.seen[-1]] == ["first", "one", "second"]


def test_the_messages_are_ordinary_asm_events_once_each() -> None:
    agent, _ = agent_with(DjangoCheckpointSaver(), answer("Hi Ann."), answer("Ann."))
    ask(agent, "thread_3", "I am Ann.")
    ask(agent, "thread_3", "Who am I?")
    session = m.Session.objects.get(id="thread_3")
    assert (session.agent_id, session.metadata) == ("langgraph", {"framework": "langgraph"})
    messages = m.Event.objects.filter(
        session_id="thread_3", type__in=["message_sent", "message_received"]
    ).order_by("sequence_number")
    assert [(e.type, e.data["role"], e.data["content"]) for e in messages] == [
        ("message_sent", "user", "I am Ann."),
        ("message_received", "assistant", "Hi Ann."),
        ("message_sent", "user", "Who am I?"),
        ("message_received", "assistant", "Ann."),
    ]
    assert not any("_validation_warnings" in e.metadata for e in messages)
    # LangChain's history adapter reads the same events.
    history = DjangoChatMessageHistory("thread_3").messages
    assert [h.content for h in history] == ["I am Ann.", "Hi Ann.", "Who am I?", "Ann."]
    assert m.Event.objects.filter(session_id="thread_3", type="workspace_snapshot_taken").exists()


def test_each_agent_run_is_recorded_with_its_usage() -> None:
    agent, _ = agent_with(DjangoCheckpointSaver(), answer("a", 30, 5), answer("b", 40, 6))
    ask(agent, "thread_4", "1")
    ask(agent, "thread_4", "2")
    runs = list(m.Run.objects.filter(session_id="thread_4").order_by("started_at"))
    assert [(r.status, r.provider, r.provider_metadata["model"]) for r in runs] == [
        ("completed", "openai", "gpt-4o-mini")
    ] * 2
    assert [r.token_usage["total_tokens"] for r in runs] == [35, 46]
    summary = DjangoQueryAPI().get_usage_summary(session_id="thread_4")
    assert (summary["total_input_tokens"], summary["total_output_tokens"]) == (70, 11)


def test_delete_thread_deletes_the_asm_session() -> None:
    saver = DjangoCheckpointSaver()
    agent, _ = agent_with(saver, answer("a"))
    ask(agent, "thread_5", "1")
    saver.delete_thread("thread_5")
    assert not m.Session.objects.filter(id="thread_5").exists()
    assert not m.Event.objects.filter(session_id="thread_5").exists()
    assert saver.get_tuple({"configurable": {"thread_id": "thread_5"}}) is None


def test_retention_prunes_old_checkpoints_and_the_thread_resumes_from_the_latest() -> None:
    saver = DjangoCheckpointSaver()
    agent, _ = agent_with(saver, answer("a"), answer("b"), answer("c"))
    for text in ("1", "2"):
        ask(agent, "thread_6", text)
    before = m.Event.objects.filter(session_id="thread_6").count()
    pruned = DjangoMaintenance().prune_session_events(
        "thread_6", RetentionPolicy(max_events_per_session=before - 3)
    )
    assert pruned == 3
    latest = saver.get_tuple({"configurable": {"thread_id": "thread_6"}})
    assert latest is not None
    assert [msg.content for msg in latest.checkpoint["channel_values"]["messages"]] == [
        "1",
        "a",
        "2",
        "b",
    ]
    result = ask(agent, "thread_6", "3")
    assert result["messages"][-1].content == "c"


def test_a_thread_deleted_by_another_saver_is_recreated_on_the_next_put(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agent_sessions.integrations.langgraph as langgraph_module

    monkeypatch.setattr(langgraph_module, "TOUCH_INTERVAL_SECONDS", 0.0)
    agent, _ = agent_with(DjangoCheckpointSaver(), answer("a"), answer("b"))
    ask(agent, "thread_7", "1")
    DjangoCheckpointSaver().delete_thread("thread_7")
    ask(agent, "thread_7", "2")
    assert m.Session.objects.get(id="thread_7").agent_id == "langgraph"


def test_a_put_after_the_counter_was_deleted_is_numbered_after_the_stored_events() -> None:
    # ASM's orphan clean-up may delete a session's counter while its events stay:
    # the next put must neither fail nor reuse a stored number.
    agent, _ = agent_with(DjangoCheckpointSaver(), answer("a"), answer("b"))
    ask(agent, "thread_8", "1")
    highest = m.Event.objects.filter(session_id="thread_8").order_by("-sequence_number")[0]
    m.SessionSequence.objects.filter(session_id="thread_8").delete()
    ask(agent, "thread_8", "2")
    numbers = list(
        m.Event.objects.filter(session_id="thread_8")
        .order_by("sequence_number")
        .values_list("sequence_number", flat=True)
    )
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) > highest.sequence_number
    latest = DjangoCheckpointSaver().get_tuple({"configurable": {"thread_id": "thread_8"}})
    assert latest is not None
    assert [msg.content for msg in latest.checkpoint["channel_values"]["messages"]] == [
        "1",
        "a",
        "2",
        "b",
    ]


def test_re_putting_a_checkpoint_id_with_other_values_replaces_it() -> None:
    saver = DjangoCheckpointSaver()
    config: Any = {"configurable": {"thread_id": "thread_9", "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"answer": 1}
    checkpoint["channel_versions"] = {"answer": saver.get_next_version(None, None)}
    metadata: Any = {"source": "loop", "step": 0}
    stored = saver.put(config, checkpoint, metadata, {"answer": 1})
    # The same id again, unchanged: nothing new is written.
    saver.put(config, checkpoint, metadata, {})
    assert m.Event.objects.filter(session_id="thread_9").count() == 1
    checkpoint = {**checkpoint, "channel_values": {"answer": 2}}
    saver.put(config, checkpoint, metadata, {"answer": 2})
    got = saver.get_tuple(stored)
    assert got is not None
    assert got.checkpoint["channel_values"] == {"answer": 2}
    assert m.Event.objects.filter(session_id="thread_9").count() == 1


def test_messages_put_by_several_savers_are_stored_once_and_counted_once() -> None:
    # Two processes (here: two savers) putting the same conversation: each message
    # is one event, and its usage is added to the run once.
    first, second = DjangoCheckpointSaver(), DjangoCheckpointSaver()
    config: Any = {"configurable": {"thread_id": "thread_10", "checkpoint_ns": ""}}
    messages = [HumanMessage("hi", id="m1"), answer("hello")]
    messages[1].id = "m2"
    for saver in (first, second):
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"messages": messages}
        checkpoint["channel_versions"] = {"messages": saver.get_next_version(None, None)}
        saver.put(
            config, checkpoint, {"source": "input", "step": -1, "run_id": "r1"}, {"messages": 1}
        )
    events = m.Event.objects.filter(session_id="thread_10", type__startswith="message_")
    assert events.count() == 2
    (run,) = m.Run.objects.filter(session_id="thread_10")
    assert run.token_usage["total_tokens"] == 35
