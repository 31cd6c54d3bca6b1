"""DjangoAgentsSession: the OpenAI Agents SDK ``Session`` protocol on the asm_* tables.

The first group mirrors the behaviour of the SDK's reference ``SQLiteSession``
(its own session tests); the rest covers what the asm tables add: event types,
the asm session row, counter monotonicity, atomic pops across processes, and a
real ``Runner.run`` with a local model.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from agents import Agent, Runner, set_tracing_disabled
from agents.memory import Session as SdkSession
from agents.memory.session_settings import SessionSettings

from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.errors import ValidationError
from agent_sessions.integrations.openai_agents import DjangoAgentsSession, event_type_for_item
from agent_sessions.store import DjangoSessionStore
from tests.integration_helpers import (
    backend_connections,
    run_in_processes,
    settled_backend_connections,
)
from tests.openai_agents_support import EchoModel

pytestmark = pytest.mark.django_db(transaction=True)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


@pytest.fixture
def session() -> DjangoAgentsSession:
    return DjangoAgentsSession("conv_1")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def stored_events(session_id: str) -> list[m.Event]:
    return list(m.Event.objects.filter(session_id=session_id).order_by("sequence_number"))


# --------------------------------------------------------------------------- SQLiteSession parity


def test_implements_the_sdk_session_protocol(session: DjangoAgentsSession) -> None:
    assert isinstance(session, SdkSession)
    assert session.session_id == "conv_1"


def test_items_read_back_in_the_order_added(session: DjangoAgentsSession) -> None:
    run(session.add_items([user("Hello"), assistant("Hi there!")]))
    run(session.add_items([user("How are you?")]))
    assert run(session.get_items()) == [user("Hello"), assistant("Hi there!"), user("How are you?")]


def test_new_session_has_no_items(session: DjangoAgentsSession) -> None:
    assert run(session.get_items()) == []


def test_get_items_with_limit_returns_the_latest_in_order(session: DjangoAgentsSession) -> None:
    run(session.add_items([user(str(n)) for n in range(5)]))
    assert run(session.get_items(limit=2)) == [user("3"), user("4")]
    assert run(session.get_items(limit=10)) == [user(str(n)) for n in range(5)]
    assert run(session.get_items(limit=0)) == []


def test_session_settings_limit_is_the_default_limit() -> None:
    session = DjangoAgentsSession("conv_limited", session_settings=SessionSettings(limit=1))
    run(session.add_items([user("a"), user("b")]))
    assert run(session.get_items()) == [user("b")]
    assert run(session.get_items(limit=2)) == [user("a"), user("b")]


def test_pop_item_removes_and_returns_the_latest(session: DjangoAgentsSession) -> None:
    run(session.add_items([user("a"), assistant("b")]))
    assert run(session.pop_item()) == assistant("b")
    assert run(session.get_items()) == [user("a")]


def test_pop_item_on_an_empty_session_returns_none(session: DjangoAgentsSession) -> None:
    assert run(session.pop_item()) is None


def test_clear_session_removes_every_item(session: DjangoAgentsSession) -> None:
    run(session.add_items([user("a"), user("b")]))
    run(session.clear_session())
    assert run(session.get_items()) == []


def test_adding_no_items_writes_nothing(session: DjangoAgentsSession) -> None:
    run(session.add_items([]))
    assert not m.Session.objects.filter(id="conv_1").exists()


def test_sessions_are_isolated_from_each_other() -> None:
    one, two = DjangoAgentsSession("conv_a"), DjangoAgentsSession("conv_b")
    run(one.add_items([user("for a")]))
    run(two.add_items([user("for b")]))
    assert run(one.get_items()) == [user("for a")]
    assert run(two.clear_session()) is None
    assert run(one.get_items()) == [user("for a")]


def test_two_instances_share_one_session() -> None:
    run(DjangoAgentsSession("conv_shared").add_items([user("x")]))
    assert run(DjangoAgentsSession("conv_shared").get_items()) == [user("x")]


# --------------------------------------------------------------------------- on the asm tables


def test_first_use_creates_the_asm_session() -> None:
    session = DjangoAgentsSession("conv_new", agent_id="support-bot", metadata={"team": "x"})
    run(session.add_items([user("hi")]))
    row = m.Session.objects.get(id="conv_new")
    assert (row.agent_id, row.status) == ("support-bot", "pending")
    assert row.metadata == {"framework": "openai-agents", "team": "x"}


def test_an_existing_asm_session_is_kept(session: DjangoAgentsSession) -> None:
    m.Session.objects.create(
        id="conv_1",
        agent_id="elixir-agent",
        status="active",
        created_at="2024-01-01T00:00:00Z",
        updated_at="2024-01-01T00:00:00Z",
    )
    run(session.add_items([user("hi")]))
    row = m.Session.objects.get(id="conv_1")
    assert (row.agent_id, row.status) == ("elixir-agent", "active")
    assert row.updated_at.year > 2024


def test_items_are_events_in_sequence_with_the_full_item(session: DjangoAgentsSession) -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c1", "output": "42"}
    run(session.add_items([user("q"), call, output, assistant("a")]))
    events = stored_events("conv_1")
    assert [(e.sequence_number, e.type) for e in events] == [
        (1, "message_sent"),
        (2, "tool_call_started"),
        (3, "tool_call_completed"),
        (4, "message_received"),
    ]
    assert events[1].data == {"item": call}


@pytest.mark.parametrize(
    ("item", "event_type"),
    [
        ({"role": "system", "content": "s"}, "message_sent"),
        ({"type": "message", "role": "assistant", "content": []}, "message_received"),
        ({"type": "computer_call_output", "call_id": "c"}, "tool_call_completed"),
        ({"type": "mcp_call", "id": "m"}, "tool_call_started"),
        ({"type": "mcp_approval_request", "id": "r"}, "tool_approval_requested"),
        ({"type": "mcp_approval_response", "approve": True}, "tool_approval_granted"),
        ({"type": "mcp_approval_response", "approve": False}, "tool_approval_denied"),
        ({"type": "reasoning", "id": "r", "summary": []}, "message_received"),
    ],
)
def test_event_type_for_item(item: dict[str, Any], event_type: str) -> None:
    assert event_type_for_item(item) == event_type


def test_clear_keeps_the_counter_monotonic(session: DjangoAgentsSession) -> None:
    run(session.add_items([user("a"), user("b")]))
    run(session.clear_session())
    run(session.add_items([user("c")]))
    assert [e.sequence_number for e in stored_events("conv_1")] == [3]


def test_pop_leaves_other_events_of_the_session_alone(session: DjangoAgentsSession) -> None:
    run(session.add_items([user("a")]))
    from agent_sessions.core import Event
    from agent_sessions.store import DjangoSessionStore

    DjangoSessionStore().append_event(Event.new("run_started", "conv_1"))
    assert run(session.pop_item()) == user("a")
    assert [e.type for e in stored_events("conv_1")] == ["run_started"]


def test_an_item_the_database_cannot_store_is_refused_whole(session: DjangoAgentsSession) -> None:
    with pytest.raises(ValidationError):
        run(session.add_items([user("fine"), user("nul\x00")]))
    assert run(session.get_items()) == []


def _pop_all(session_id: str) -> list[str]:
    session = DjangoAgentsSession(session_id)
    popped = []
    while (item := asyncio.run(session.pop_item())) is not None:
        popped.append(item["content"])
    return popped


def test_concurrent_pops_from_processes_never_return_the_same_item(
    session: DjangoAgentsSession,
) -> None:
    run(session.add_items([user(str(n)) for n in range(60)]))
    results = run_in_processes(_pop_all, [("conv_1",)] * 3)
    popped = [text for result in results for text in result]
    assert sorted(popped, key=int) == [str(n) for n in range(60)]
    assert all(result == sorted(result, key=int, reverse=True) for result in results)


@pytest.mark.postgres_only
def test_single_item_appends_wake_a_long_polling_reader(session: DjangoAgentsSession) -> None:
    async def scenario() -> list[Any]:
        await session.add_items([user("first")])  # creates the session row
        waiting = asyncio.ensure_future(
            DjangoSessionStore().aget_events("conv_1", after=1, wait_timeout_ms=20_000)
        )
        await asyncio.sleep(0.1)  # the reader is now waiting in its worker thread
        await session.add_items([user("wake")])
        return await asyncio.wait_for(waiting, timeout=10)

    events = run(scenario())
    assert [(e.sequence_number, e.data["item"]) for e in events] == [(2, user("wake"))]


@pytest.mark.postgres_only
def test_aclose_closes_the_private_connection(session: DjangoAgentsSession) -> None:
    async def scenario() -> tuple[int, int]:
        for n in range(5):
            await session.add_items([user(str(n))])
        # Counted from a worker thread, whose own connection counts in both.
        while_open = await run_in_worker(backend_connections)
        await session.aclose()
        return while_open, await run_in_worker(settled_backend_connections, while_open - 1)

    while_open, after_aclose = run(scenario())
    assert after_aclose == while_open - 1
    assert run(session.get_items()) == [user(str(n)) for n in range(5)]


@pytest.mark.postgres_only
def test_no_connection_outlives_the_event_loop() -> None:
    sessions = [DjangoAgentsSession(f"conv_{n}") for n in range(6)]

    async def scenario() -> None:
        for _ in range(3):  # concurrent single-item appends: several pooled connections
            await asyncio.gather(*(s.add_items([user("hi")]) for s in sessions))

    run(scenario())
    # Only the test's own connection is left (worker threads close theirs too).
    assert settled_backend_connections(1) == 1
    assert m.Event.objects.count() == 18


def test_importing_without_the_extra_names_the_pip_command() -> None:
    code = (
        "import sys, django; sys.modules['agents'] = None; django.setup()\n"
        "import agent_sessions.integrations.openai_agents"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pip install django-agent-sessions[openai-agents]" in result.stderr


# --------------------------------------------------------------------------- Runner.run


def test_runner_run_stores_the_conversation_in_asm_events() -> None:
    set_tracing_disabled(True)
    model = EchoModel()
    agent = Agent(name="echo", instructions="Echo.", model=model)
    session = DjangoAgentsSession("conv_runner")

    first = run(Runner.run(agent, "hello", session=session))
    second = run(Runner.run(agent, "again", session=session))

    assert (first.final_output, second.final_output) == ("echo: hello", "echo: again")
    # The second turn was sent the first turn's history, read back from the database.
    assert [i.get("role") for i in model.seen_inputs[1]] == ["user", "assistant", "user"]
    events = stored_events("conv_runner")
    assert [(e.sequence_number, e.type) for e in events] == [
        (1, "message_sent"),
        (2, "message_received"),
        (3, "message_sent"),
        (4, "message_received"),
    ]
    assert events[3].data["item"]["content"][0]["text"] == "echo: again"
