"""DjangoAgentsSession against the behaviours the OpenAI Agents SDK's own session tests check.

Written from reading the SDK's ``tests/memory/test_session.py``,
``test_session_limit.py``, ``test_session_context_wrapper.py`` and
``tests/extensions/memory/test_sqlalchemy_session.py`` (SDK 0.24): each test
here checks one behaviour those check, against our adapter, through the SDK's
own ``Runner`` (``run``, ``run_sync`` and ``run_streamed``) and its
deterministic ``agents.testing.ScriptedModel``. Deliberate differences are
listed in docs/integrations/openai-agents.md. Also: the run context
(``wrapper``), and the runs and token usage the adapter records.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, function_tool, set_tracing_disabled
from agents.memory.session import _session_accepts_wrapper
from agents.memory.session_settings import SessionSettings
from agents.run_context import RunContextWrapper
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.usage import Usage
from django.core.checks import run_checks

from agent_sessions import models as m
from agent_sessions.errors import ValidationError
from agent_sessions.integrations.openai_agents import DjangoAgentsSession
from agent_sessions.query import DjangoQueryAPI

pytestmark = pytest.mark.django_db(transaction=True)

RUNNER_METHODS = ["run", "run_sync", "run_streamed"]
USAGE = Usage(requests=1, input_tokens=100, output_tokens=20, total_tokens=120)


@pytest.fixture(autouse=True)
def _no_tracing() -> None:
    set_tracing_disabled(True)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def run_agent(method: str, agent: Agent[Any], input: Any, **kwargs: Any) -> Any:
    """One agent run through ``Runner.<method>``, as the SDK's tests parametrize it."""
    if method == "run":
        return asyncio.run(Runner.run(agent, input, **kwargs))
    if method == "run_sync":
        return Runner.run_sync(agent, input, **kwargs)

    async def streamed() -> Any:
        result = Runner.run_streamed(agent, input, **kwargs)
        async for _ in result.stream_events():
            pass
        return result

    return asyncio.run(streamed())


def scripted(*texts: str) -> ScriptedModel:
    return ScriptedModel([[assistant_message(text)] for text in texts], default_usage=USAGE)


def text_of(item: Any) -> Any:
    content = item.get("content")
    return content if isinstance(content, str) else content[0]["text"]


# --------------------------------------------------------------------------- memory through Runner


@pytest.mark.parametrize("method", RUNNER_METHODS)
def test_the_second_turn_sees_the_first_turn(method: str) -> None:
    model = scripted("San Francisco", "California")
    agent = Agent(name="test", model=model)
    session = DjangoAgentsSession("conv_memory")
    run_agent(method, agent, "What city is the Golden Gate Bridge in?", session=session)
    result = run_agent(method, agent, "What state is it in?", session=session)
    assert result.final_output == "California"
    assert [text_of(i) for i in model.calls[-1].input] == [
        "What city is the Golden Gate Bridge in?",
        "San Francisco",
        "What state is it in?",
    ]


@pytest.mark.parametrize("method", RUNNER_METHODS)
def test_different_sessions_do_not_share_history(method: str) -> None:
    model = scripted("I like cats.", "I like dogs.", "?")
    agent = Agent(name="test", model=model)
    one, two = DjangoAgentsSession("conv_cats"), DjangoAgentsSession("conv_dogs")
    run_agent(method, agent, "Cats?", session=one)
    run_agent(method, agent, "Dogs?", session=two)
    run_agent(method, agent, "What did I ask?", session=two)
    assert [text_of(i) for i in model.calls[-1].input] == [
        "Dogs?",
        "I like dogs.",
        "What did I ask?",
    ]


@pytest.mark.parametrize("method", RUNNER_METHODS)
def test_list_input_is_appended_to_the_session(method: str) -> None:
    session = DjangoAgentsSession("conv_list")
    run_agent(
        method, Agent(name="t", model=scripted("ok")), [user("a"), user("b")], session=session
    )
    items = asyncio.run(session.get_items())
    assert [text_of(i) for i in items] == ["a", "b", "ok"]


@pytest.mark.parametrize("method", RUNNER_METHODS)
def test_a_session_input_callback_prepares_the_model_input(method: str) -> None:
    session = DjangoAgentsSession("conv_callback")
    asyncio.run(session.add_items([user("Hello there."), {"role": "assistant", "content": "Hi."}]))
    model = scripted("I'm a bot")

    def only_user_messages(history: list[Any], new_input: list[Any]) -> list[Any]:
        return [item for item in history if item.get("role") == "user"] + new_input

    run_agent(
        method,
        Agent(name="t", model=model),
        [user("What is your name?")],
        session=session,
        run_config=RunConfig(session_input_callback=only_user_messages),
    )
    assert model.calls[-1].input == [user("Hello there."), user("What is your name?")]


@pytest.mark.parametrize("method", RUNNER_METHODS)
def test_a_callback_repeating_history_does_not_grow_the_session(method: str) -> None:
    session = DjangoAgentsSession("conv_repeat")
    agent = Agent(name="t", model=scripted("one", "two"))

    def repeat_first(history: list[Any], new_input: list[Any]) -> list[Any]:
        return [*history, history[0], *new_input] if history else new_input

    config = RunConfig(session_input_callback=repeat_first)
    run_agent(method, agent, "first", session=session, run_config=config)
    run_agent(method, agent, "second", session=session, run_config=config)
    items = asyncio.run(session.get_items())
    assert [text_of(i) for i in items] == ["first", "one", "second", "two"]


def test_a_failing_add_items_propagates_from_a_streamed_run() -> None:
    session = DjangoAgentsSession("conv_fail")
    with pytest.raises(ValidationError):
        run_agent("run_streamed", Agent(name="t", model=scripted("x")), "nul\x00", session=session)


# --------------------------------------------------------------------------- direct operations


def test_unicode_and_sql_lookalikes_round_trip() -> None:
    session = DjangoAgentsSession("conv_unicode")
    texts = [
        "こんにちは 😊👍",
        "Привет, мир",
        "O'Reilly; DROP TABLE asm_events; --",
        'quotes " and \\ backslashes',
        "%s %(name)s {} ?",
    ]
    asyncio.run(session.add_items([user(text) for text in texts]))
    assert [i["content"] for i in asyncio.run(session.get_items())] == texts


def test_concurrent_add_items_keep_every_item() -> None:
    session = DjangoAgentsSession("conv_concurrent")

    async def scenario() -> None:
        await asyncio.gather(*(session.add_items([user(str(n))]) for n in range(20)))

    asyncio.run(scenario())
    items = asyncio.run(session.get_items())
    assert sorted(int(i["content"]) for i in items) == list(range(20))


def test_pop_item_returns_the_latest_even_when_added_in_one_call() -> None:
    session = DjangoAgentsSession("conv_ties")
    asyncio.run(session.add_items([user("a"), user("b"), user("c")]))
    assert asyncio.run(session.pop_item()) == user("c")
    assert asyncio.run(session.get_items()) == [user("a"), user("b")]


def test_pop_from_one_session_leaves_the_other() -> None:
    one, two = DjangoAgentsSession("conv_p1"), DjangoAgentsSession("conv_p2")
    asyncio.run(one.add_items([user("1")]))
    asyncio.run(two.add_items([user("2")]))
    assert asyncio.run(one.pop_item()) == user("1")
    assert asyncio.run(two.get_items()) == [user("2")]


def test_get_items_limit_larger_than_the_history_returns_everything() -> None:
    session = DjangoAgentsSession("conv_exhausted")
    asyncio.run(session.add_items([user("a"), user("b")]))
    assert asyncio.run(session.get_items(limit=5)) == [user("a"), user("b")]


# --------------------------------------------------------------------------- session settings


def test_session_settings_default_to_no_limit() -> None:
    assert DjangoAgentsSession("conv_s").session_settings == SessionSettings()


def test_session_settings_given_as_a_dict_are_coerced() -> None:
    session = DjangoAgentsSession("conv_s", session_settings={"limit": 2})
    assert isinstance(session.session_settings, SessionSettings)
    assert session.session_settings.limit == 2
    asyncio.run(session.add_items([user("a"), user("b"), user("c")]))
    assert asyncio.run(session.get_items()) == [user("b"), user("c")]


def test_session_settings_with_an_unknown_key_raise_type_error() -> None:
    with pytest.raises(TypeError, match="Unknown session"):
        DjangoAgentsSession("conv_s", session_settings={"limit": 2, "max_items": 3})


def test_an_explicit_limit_overrides_the_settings() -> None:
    session = DjangoAgentsSession("conv_s", session_settings=SessionSettings(limit=1))
    asyncio.run(session.add_items([user("a"), user("b")]))
    assert asyncio.run(session.get_items()) == [user("b")]
    assert asyncio.run(session.get_items(limit=2)) == [user("a"), user("b")]


@pytest.mark.parametrize("method", RUNNER_METHODS)
@pytest.mark.parametrize("settings_value", [{"limit": 2}, SessionSettings(limit=2)])
def test_a_dict_session_settings_works_through_runner(method: str, settings_value: Any) -> None:
    session = DjangoAgentsSession("conv_dict_run", session_settings=settings_value)
    model = scripted("r1", "r2", "r3")
    agent = Agent(name="t", model=model)
    for text in ("m1", "m2", "m3"):
        run_agent(method, agent, text, session=session)
    assert [text_of(i) for i in model.calls[-1].input] == ["m2", "r2", "m3"]


@pytest.mark.parametrize("method", RUNNER_METHODS)
@pytest.mark.parametrize(("limit", "expected"), [(2, ["m3", "r3", "m4"]), (0, ["m4"])])
def test_run_config_session_settings_limit_the_history(
    method: str, limit: int, expected: list[str]
) -> None:
    session = DjangoAgentsSession("conv_run_limit")
    model = scripted("r1", "r2", "r3", "r4")
    agent = Agent(name="t", model=model)
    for text in ("m1", "m2", "m3"):
        run_agent(method, agent, text, session=session)
    config = RunConfig(session_settings=SessionSettings(limit=limit))
    run_agent(method, agent, "m4", session=session, run_config=config)
    assert [text_of(i) for i in model.calls[-1].input] == expected


@pytest.mark.parametrize("method", RUNNER_METHODS)
def test_no_limit_or_a_larger_limit_gives_the_whole_history(method: str) -> None:
    session = DjangoAgentsSession("conv_run_all")
    model = scripted("r1", "r2", "r3")
    agent = Agent(name="t", model=model)
    run_agent(method, agent, "m1", session=session)
    run_agent(method, agent, "m2", session=session)
    config = RunConfig(session_settings=SessionSettings(limit=100))
    run_agent(method, agent, "m3", session=session, run_config=config)
    assert [text_of(i) for i in model.calls[-1].input] == ["m1", "r1", "m2", "r2", "m3"]


@pytest.mark.parametrize("method", RUNNER_METHODS)
def test_a_limit_boundary_drops_an_output_whose_call_was_cut_off(method: str) -> None:
    session = DjangoAgentsSession("conv_tool_pair")
    answer = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
    }
    history = [
        user("What is the weather?"),
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        answer,
    ]
    asyncio.run(session.add_items(history))
    assert asyncio.run(session.get_items(limit=2)) == history[-2:]
    model = scripted("Tomorrow too.")
    config = RunConfig(session_settings=SessionSettings(limit=2))
    run_agent(method, Agent(name="t", model=model), "Tomorrow?", session=session, run_config=config)
    assert model.calls[-1].input == [answer, user("Tomorrow?")]


# --------------------------------------------------------------------------- run context (wrapper)


class RecordingSession(DjangoAgentsSession):
    """Remembers the run context each call was routed with."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[Any] = []

    def using_for(self, wrapper: RunContextWrapper[Any] | None) -> str | None:
        self.seen.append(wrapper)
        return super().using_for(wrapper)


class TenantSession(DjangoAgentsSession):
    """The documented pattern: refuse a run whose tenant does not own the conversation."""

    def using_for(self, wrapper: RunContextWrapper[Any] | None) -> str | None:
        if wrapper is not None and not self.session_id.startswith(f"{wrapper.context}:"):
            raise PermissionError("not this tenant's conversation")
        return self.using


def test_all_four_methods_accept_the_run_context() -> None:
    assert _session_accepts_wrapper(DjangoAgentsSession("conv_w"))


@pytest.mark.parametrize("method", RUNNER_METHODS)
def test_runner_passes_its_run_context_to_every_call(method: str) -> None:
    session = RecordingSession("conv_wrapped")
    result = run_agent(
        method, Agent(name="t", model=scripted("ok")), "hi", session=session, context="acme"
    )
    assert session.seen  # get_items and add_items at least
    assert all(wrapper is result.context_wrapper for wrapper in session.seen)
    assert {wrapper.context for wrapper in session.seen} == {"acme"}


def test_direct_calls_pass_no_run_context() -> None:
    session = RecordingSession("conv_direct")
    asyncio.run(session.add_items([user("a")]))
    asyncio.run(session.pop_item())
    asyncio.run(session.clear_session())
    asyncio.run(session.get_items())
    assert session.seen == [None, None, None, None]


def test_a_tenant_check_in_using_for_refuses_another_tenants_run() -> None:
    agent = Agent(name="t", model=scripted("ok", "ok"))
    run_agent("run", agent, "hi", session=TenantSession("acme:c1"), context="acme")
    with pytest.raises(PermissionError):
        run_agent("run", agent, "hi", session=TenantSession("acme:c1"), context="globex")
    assert m.Event.objects.filter(session_id="acme:c1").count() == 2


def test_every_method_takes_the_run_context_by_keyword() -> None:
    session = RecordingSession("conv_kw")
    wrapper = RunContextWrapper(context="acme")
    asyncio.run(session.add_items([user("a"), user("b")], wrapper=wrapper))
    assert asyncio.run(session.get_items(1, wrapper=wrapper)) == [user("b")]
    assert asyncio.run(session.pop_item(wrapper=wrapper)) == user("b")
    asyncio.run(session.clear_session(wrapper=wrapper))
    assert session.seen == [wrapper] * 4


# --------------------------------------------------------------------------- runs and usage


@function_tool
def weather() -> str:
    """The weather."""
    return "sunny"


@pytest.mark.parametrize("method", RUNNER_METHODS)
def test_a_run_is_recorded_with_its_usage(method: str) -> None:
    session = DjangoAgentsSession("conv_usage", model="gpt-4o")
    model = ScriptedModel(
        [[function_call("weather", {}, call_id="c1")], [assistant_message("It is sunny.")]],
        default_usage=USAGE,
    )
    run_agent(method, Agent(name="t", model=model, tools=[weather]), "Weather?", session=session)
    (run,) = m.Run.objects.filter(session_id="conv_usage")
    assert (run.status, run.provider, run.provider_metadata["model"]) == (
        "completed",
        "openai",
        "gpt-4o",
    )
    assert run.token_usage == {"input_tokens": 200, "output_tokens": 40, "total_tokens": 240}
    assert run.turn_count == 2
    assert run.ended_at is not None
    summary = DjangoQueryAPI().get_usage_summary(session_id="conv_usage")
    assert (summary["total_tokens"], summary["run_count"]) == (240, 1)
    cost = DjangoQueryAPI().get_cost_summary(
        session_id="conv_usage",
        pricing_table={"openai": {"default": {"input": 1e-6, "output": 2e-6}}},
    )
    assert cost["total_cost_usd"] == pytest.approx(200e-6 + 80e-6)


def test_each_run_is_its_own_asm_run() -> None:
    session = DjangoAgentsSession("conv_two_runs")
    agent = Agent(name="t", model=scripted("a", "b"))
    run_agent("run", agent, "1", session=session)
    run_agent("run", agent, "2", session=session)
    runs = m.Run.objects.filter(session_id="conv_two_runs")
    assert [r.token_usage["total_tokens"] for r in runs] == [120, 120]


def test_recording_runs_can_be_turned_off(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"INTEGRATIONS_RECORD_RUNS": False}
    run_agent("run", Agent(name="t", model=scripted("a")), "1", session=DjangoAgentsSession("c"))
    assert not m.Run.objects.exists()
    assert m.Event.objects.filter(session_id="c").count() == 2


def test_a_bad_record_runs_setting_is_a_system_check_error(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"INTEGRATIONS_RECORD_RUNS": "yes"}
    assert [e.id for e in run_checks() if e.id.startswith("agent_sessions")] == [
        "agent_sessions.E015"
    ]
