"""The admin as a debugger: the conversation view, previews, links and raw JSON (issue 14)."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from google.adk.events.event import Event as AdkEvent
from google.genai import types
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage, message_to_dict

from agent_sessions import models as m
from agent_sessions.admin import previews
from agent_sessions.admin.previews import parse_prefix
from agent_sessions.integrations.adk import event_type_for_adk_event
from agent_sessions.integrations.langchain import event_type_for_message
from agent_sessions.integrations.openai_agents import event_type_for_item
from tests.factories import EventFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
START = dt.datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def conversation(session_id: str) -> str:
    return reverse("admin:agent_sessions_session_conversation", args=[quote(session_id)])


def append(session: m.Session, seq: int, type: str, data: dict[str, Any], **fields: Any) -> Any:
    return EventFactory(
        session_id=session.id,
        sequence_number=seq,
        type=type,
        data=data,
        timestamp=START + dt.timedelta(seconds=seq * 2),
        **fields,
    )


def entries(response: Any) -> list[Any]:
    return list(response.context["page"]["entries"])


def blocks(response: Any) -> list[tuple[str, str, str]]:
    return [
        (block.kind, block.role or block.tool_name, block.text)
        for entry in entries(response)
        for block in entry.blocks
    ]


# --------------------------------------------------------------------------- plain ASM events


@pytest.fixture
def debugged() -> dict[str, Any]:
    """A two-run session with messages, a paired tool call, a failed tool, an error, a policy."""
    session = SessionFactory(agent_id="support-bot")
    first = RunFactory(
        session_id=session.id,
        provider="claude",
        provider_metadata={"model": "claude-sonnet-4-5"},
        token_usage={"input_tokens": 1000, "output_tokens": 100},
        started_at=START,
    )
    second = RunFactory(session_id=session.id, provider="amp", started_at=START + dt.timedelta(1))
    append(
        session,
        1,
        "message_sent",
        {"role": "user", "content": "line one\nline two"},
        run_id=first.id,
    )
    append(
        session,
        2,
        "tool_call_started",
        {"tool_name": "search", "tool_call_id": "c1", "tool_input": {"q": "x"}},
        run_id=first.id,
    )
    append(
        session,
        3,
        "tool_call_completed",
        {"tool_name": "search", "tool_call_id": "c1", "tool_output": "found"},
        run_id=first.id,
    )
    append(
        session,
        4,
        "token_usage_updated",
        {"input_tokens": 1000, "output_tokens": 100},
        run_id=first.id,
    )
    append(session, 5, "tool_call_started", {"tool_name": "deploy"}, run_id=second.id)
    append(
        session,
        6,
        "tool_call_failed",
        {"tool_name": "deploy", "error_message": "denied"},
        run_id=second.id,
    )
    append(session, 7, "error_occurred", {"error_message": "boom <b>"}, run_id=second.id)
    append(session, 8, "policy_violation", {"policy": "no-prod", "kind": "tool"}, run_id=second.id)
    return {"session": session, "first": first, "second": second}


def test_conversation_reads_messages_with_roles_and_newlines(
    admin_client: Client, debugged: dict[str, Any]
):
    response = admin_client.get(conversation(debugged["session"].id))

    assert response.status_code == 200
    assert ("message", "user", "line one\nline two") in blocks(response)
    assert "line one\nline two</pre>" in response.content.decode()


def test_conversation_is_oldest_first_with_elapsed_time_between_events(
    admin_client: Client, debugged: dict[str, Any]
):
    response = admin_client.get(conversation(debugged["session"].id))

    listed = entries(response)
    assert [e.event.sequence_number for e in listed] == list(range(1, 9))
    assert listed[0].elapsed == ""
    assert listed[1].elapsed == "+2.0 s"


def test_tool_calls_are_paired_with_their_results_and_failures(
    admin_client: Client, debugged: dict[str, Any]
):
    listed = entries(admin_client.get(conversation(debugged["session"].id)))

    call, result = listed[1].blocks[0], listed[2].blocks[0]
    deploy, failure = listed[4].blocks[0], listed[5].blocks[0]
    assert (call.kind, call.pair["sequence_number"], call.pair["failed"]) == ("tool_call", 3, False)
    assert result.pair["sequence_number"] == 2
    assert (deploy.pair["sequence_number"], deploy.pair["failed"]) == (6, True)
    assert failure.is_error
    assert "denied" in failure.text


def test_errors_and_policy_events_are_highlighted_and_escaped(
    admin_client: Client, debugged: dict[str, Any]
):
    response = admin_client.get(conversation(debugged["session"].id))

    highlights = {e.event.sequence_number: e.highlight for e in entries(response)}
    assert (highlights[6], highlights[7], highlights[8]) == ("asm-error", "asm-error", "asm-policy")
    assert highlights[1] == ""
    body = response.content.decode()
    assert "boom &lt;b&gt;" in body
    assert "boom <b>" not in body


def test_tokens_and_cost_per_run_and_per_turn(admin_client: Client, debugged: dict[str, Any]):
    response = admin_client.get(conversation(debugged["session"].id))

    runs = {run["id"]: run for run in response.context["runs"]}
    turn = entries(response)[3]
    # claude-sonnet-4-5: 3e-6 per input token, 15e-6 per output token.
    assert runs[debugged["first"].id]["cost"] == pytest.approx(0.0045)
    assert runs[debugged["first"].id]["cost_source"] == "pricing"
    assert turn.tokens == {"input_tokens": 1000, "output_tokens": 100}
    assert turn.cost == pytest.approx(0.0045)


def test_each_event_links_to_its_page_and_its_raw_json(
    admin_client: Client, debugged: dict[str, Any]
):
    response = admin_client.get(conversation(debugged["session"].id))

    body = response.content.decode()
    for entry in entries(response):
        event_page = reverse("admin:agent_sessions_event_change", args=[quote(entry.event.id)])
        assert f'href="{event_page}"' in body
        assert f'href="{event_page.replace("/change/", "/raw/")}"' in body


def test_conversation_filters_by_run_and_type_group(admin_client: Client, debugged: dict[str, Any]):
    url = conversation(debugged["session"].id)

    by_run = admin_client.get(url, {"run": debugged["second"].id})
    errors = admin_client.get(url, {"show": "errors"})
    by_type = admin_client.get(url, {"type": "message_sent"})

    assert [e.event.sequence_number for e in entries(by_run)] == [5, 6, 7, 8]
    assert [e.event.sequence_number for e in entries(errors)] == [6, 7, 8]
    assert [e.event.sequence_number for e in entries(by_type)] == [1]


# --------------------------------------------------------------------------- navigation


@pytest.fixture
def long_session() -> m.Session:
    session = SessionFactory()
    for n in range(1, 131):
        append(session, n, "message_received", {"content": f"message {n}"})
    return session


def shown(response: Any) -> list[int]:
    return [e.event.sequence_number for e in entries(response)]


def test_the_newest_page_is_shown_first(admin_client: Client, long_session: m.Session):
    response = admin_client.get(conversation(long_session.id))

    assert shown(response) == list(range(81, 131))
    assert response.context["page"]["older_url"] == "?before=81"
    assert response.context["page"]["newer_url"] is None


def test_oldest_older_newer_and_jump_to_a_sequence_number(
    admin_client: Client, long_session: m.Session
):
    url = conversation(long_session.id)

    oldest = admin_client.get(url, {"after": "0"})
    older = admin_client.get(url, {"before": "81"})
    newer = admin_client.get(url, {"after": "50"})
    jump = admin_client.get(url, {"at": "77"})

    assert shown(oldest) == list(range(1, 51))
    assert oldest.context["page"]["older_url"] is None
    assert oldest.context["page"]["newer_url"] == "?after=50"
    assert shown(older) == list(range(31, 81))
    assert older.context["page"]["newer_url"] == "?after=80"
    assert shown(newer) == list(range(51, 101))
    assert shown(jump) == list(range(77, 127))


def test_paging_keeps_the_filters(admin_client: Client, long_session: m.Session):
    response = admin_client.get(conversation(long_session.id), {"show": "messages"})

    assert response.context["page"]["older_url"] == "?show=messages&before=81"


def test_pages_are_read_by_keyset_without_offset(admin_client: Client, long_session: m.Session):
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(conversation(long_session.id), {"before": "60"})

    event_queries = [q["sql"] for q in queries if "asm_events" in q["sql"]]
    assert event_queries
    assert not any("OFFSET" in sql.upper() for sql in event_queries)


@pytest.mark.parametrize(
    "params",
    [
        {"before": "x"},
        {"after": "-1"},
        {"at": "0"},
        {"at": "99999999999"},
        {"run": "a\x00"},
        {"type": "no_such"},
        {"show": "nope"},
        {"fragment": "1", "after": "zz"},
    ],
)
def test_malformed_conversation_parameters_never_fail(
    admin_client: Client, long_session: m.Session, params: dict[str, str]
):
    response = admin_client.get(conversation(long_session.id), params)

    assert response.status_code == 200


def test_live_tail_fragment_returns_only_newer_events(
    admin_client: Client, long_session: m.Session
):
    response = admin_client.get(conversation(long_session.id), {"fragment": "1", "after": "128"})

    payload = response.json()
    assert (payload["count"], payload["last"]) == (2, 130)
    assert 'id="seq-129"' in payload["html"]
    assert 'id="seq-128"' not in payload["html"]


def test_the_newest_page_tails_the_live_stream(admin_client: Client, long_session: m.Session):
    newest = admin_client.get(conversation(long_session.id))
    older = admin_client.get(conversation(long_session.id), {"before": "81"})

    stream = reverse("agent_sessions:event-stream", args=[long_session.id])
    assert newest.context["stream_url"] == stream
    assert f'data-stream-url="{stream}"' in newest.content.decode()
    assert 'data-live="1"' in newest.content.decode()
    assert 'data-live="0"' in older.content.decode()


def test_without_the_stream_urls_the_page_offers_a_refresh_link(
    admin_client: Client, long_session: m.Session, settings: Any
):
    settings.ROOT_URLCONF = "tests.urls_admin_only"

    body = admin_client.get(conversation(long_session.id)).content.decode()

    assert 'id="asm-refresh"' in body
    assert 'data-live="0"' in body


def test_orphan_events_have_a_conversation_and_unknown_sessions_a_404(admin_client: Client):
    EventFactory(session_id="ses_orphan", sequence_number=1, data={"content": "hi"})

    orphan = admin_client.get(conversation("ses_orphan"))
    missing = admin_client.get(conversation("ses_missing"))

    assert orphan.status_code == 200
    assert "No session row" in orphan.content.decode()
    assert missing.status_code == 404


# --------------------------------------------------------------------------- bounded previews


def test_a_page_never_loads_whole_payloads(admin_client: Client):
    session = SessionFactory()
    huge = "x" * 200_000
    for n in range(1, 4):
        append(session, n, "tool_call_completed", {"tool_name": "dump", "tool_output": huge})

    session_page = reverse("admin:agent_sessions_session_change", args=[quote(session.id)])
    with CaptureQueriesContext(connection) as queries:
        conv = admin_client.get(conversation(session.id))
        page = admin_client.get(session_page)

    bounded_uses = (
        'pg_column_size("asm_events"."data")',
        'left(("asm_events"."data")::text',
        'length("asm_events"."data")',
        'substr("asm_events"."data"',
    )
    for sql in (q["sql"] for q in queries if '"asm_events"' in q["sql"]):
        selected = sql.split(" FROM ")[0]
        for use in bounded_uses:
            selected = selected.replace(use, "")
        assert '"asm_events"."data"' not in selected, sql
    assert len(conv.content) < 60_000
    assert len(page.content) < 60_000
    assert all(e.cut for e in entries(conv))


def test_payloads_stored_above_the_limit_are_not_read_for_a_preview(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(previews, "PREVIEW_MAX_STORED_BYTES", 1000)
    session = SessionFactory()
    append(session, 1, "tool_call_started", {"tool_name": "dump", "tool_call_id": "c1"})
    append(
        session,
        2,
        "tool_call_completed",
        {"tool_call_id": "c1", "tool_output": os.urandom(4000).hex()},
    )

    response = admin_client.get(conversation(session.id))

    call, result = entries(response)
    assert (call.unread_size, result.unread_size.endswith("KB")) == ("", True)
    assert result.blocks[0].text == ""
    assert call.blocks[0].pair["sequence_number"] == 2
    assert "not previewed" in response.content.decode()


def test_parse_prefix_closes_what_the_cut_left_open():
    text = json.dumps({"role": "assistant", "content": "a\nlong text", "n": [1, 2]})

    value, cut = parse_prefix(text[: text.index("text") + 2])

    assert cut
    assert value == {"role": "assistant", "content": "a\nlong te…"}


def test_parse_prefix_of_a_whole_document_is_the_document():
    assert parse_prefix('{"a": [1, {"b": null}]}') == ({"a": [1, {"b": None}]}, False)


# --------------------------------------------------------------------------- adapter shapes


def test_openai_agents_items_read_as_a_conversation(admin_client: Client):
    session = SessionFactory()
    items = [
        {"role": "user", "content": "What's the weather?"},
        {
            "type": "function_call",
            "name": "weather",
            "call_id": "call_1",
            "arguments": '{"city": "Oslo"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21°C"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is sunny."}],
        },
    ]
    for n, item in enumerate(items, 1):
        append(session, n, str(event_type_for_item(item)), {"item": item})

    response = admin_client.get(conversation(session.id))

    assert blocks(response) == [
        ("message", "user", "What's the weather?"),
        ("tool_call", "weather", '{"city": "Oslo"}'),
        ("tool_result", "weather", "Sunny, 21°C"),
        ("message", "assistant", "It is sunny."),
    ]
    assert entries(response)[1].blocks[0].pair["sequence_number"] == 3


def test_langchain_messages_read_as_a_conversation(admin_client: Client):
    session = SessionFactory()
    messages = [
        HumanMessage("Add 2 and 3"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "t1"}]),
        ToolMessage("5", tool_call_id="t1"),
        AIMessage(
            "It is 5.", usage_metadata={"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
        ),
    ]
    for n, message in enumerate(messages, 1):
        data = {"message": message_to_dict(message)}
        append(session, n, str(event_type_for_message(message)), data)

    response = admin_client.get(conversation(session.id))

    assert blocks(response) == [
        ("message", "user", "Add 2 and 3"),
        ("tool_call", "add", '{"a": 2, "b": 3}'),
        ("tool_result", "add", "5"),
        ("message", "assistant", "It is 5."),
    ]
    assert entries(response)[3].tokens == {"input_tokens": 7, "output_tokens": 3}


def test_adk_events_read_as_a_conversation(admin_client: Client):
    session = SessionFactory()
    call = types.FunctionCall(id="f1", name="lookup", args={"id": 7})
    reply = types.FunctionResponse(id="f1", name="lookup", response={"error": "not found"})
    events = [
        AdkEvent(
            author="user",
            invocation_id="i",
            content=types.Content(role="user", parts=[types.Part(text="Find 7")]),
        ),
        AdkEvent(
            author="bot",
            invocation_id="i",
            content=types.Content(role="model", parts=[types.Part(function_call=call)]),
        ),
        AdkEvent(
            author="bot",
            invocation_id="i",
            content=types.Content(role="user", parts=[types.Part(function_response=reply)]),
        ),
        AdkEvent(author="bot", invocation_id="i", error_code="SAFETY", error_message="blocked"),
    ]
    for n, event in enumerate(events, 1):
        data = {"adk_event": event.model_dump(mode="json", exclude_none=True)}
        append(session, n, str(event_type_for_adk_event(event)), data)

    response = admin_client.get(conversation(session.id))

    kinds = [(kind, who) for kind, who, _ in blocks(response)]
    assert kinds == [
        ("message", "user"),
        ("tool_call", "lookup"),
        ("tool_result", "lookup"),
        ("error", ""),
    ]
    listed = entries(response)
    assert listed[1].blocks[0].pair == {**listed[1].blocks[0].pair, "sequence_number": 3}
    assert listed[2].blocks[0].is_error
    assert listed[3].highlight == "asm-error"


# --------------------------------------------------------------------------- links and raw JSON


def test_timeline_and_event_pages_link_ids(admin_client: Client, debugged: dict[str, Any]):
    session, run = debugged["session"], debugged["first"]
    event = m.Event.objects.get(session_id=session.id, sequence_number=1)
    run_page = reverse("admin:agent_sessions_run_change", args=[quote(run.id)])
    session_page = reverse("admin:agent_sessions_session_change", args=[quote(session.id)])

    timeline = admin_client.get(session_page).content.decode()
    event_page = admin_client.get(
        reverse("admin:agent_sessions_event_change", args=[quote(event.id)])
    ).content.decode()
    run_body = admin_client.get(run_page).content.decode()
    events_list = admin_client.get(
        reverse("admin:agent_sessions_event_changelist"), {"session_id": session.id}
    ).content.decode()

    assert f'href="{run_page}"' in timeline
    assert f'href="{run_page}"' in event_page
    assert f'href="{session_page}"' in event_page
    assert f'href="{session_page}"' in run_body
    assert f'href="{run_page}"' in events_list


def test_raw_json_downloads_the_stored_event(admin_client: Client):
    event = EventFactory(data={"text": "a\nb"}, metadata={"m": 1})
    url = reverse("admin:agent_sessions_event_raw", args=[quote(event.id)])

    download = admin_client.get(url)
    inline = admin_client.get(url, {"inline": "1"})

    assert "attachment" in download["Content-Disposition"]
    assert json.loads(download.content)["data"] == {"text": "a\nb"}
    assert "Content-Disposition" not in inline
    assert json.loads(inline.content)["id"] == event.id


def test_event_page_shows_newlines_as_line_breaks(admin_client: Client):
    event = EventFactory(data={"trace": "first\nsecond"})

    body = admin_client.get(
        reverse("admin:agent_sessions_event_change", args=[quote(event.id)])
    ).content.decode()

    assert "first\nsecond" in body
    assert "Copy raw JSON" in body


def test_runs_priced_by_the_pricing_table_show_their_cost(admin_client: Client):
    run = RunFactory(
        provider="codex",
        provider_metadata={"model": "gpt-4o"},
        token_usage={"input_tokens": 1000, "output_tokens": 1000},
    )

    body = admin_client.get(reverse("admin:agent_sessions_run_changelist")).content.decode()
    session_page = admin_client.get(
        reverse("admin:agent_sessions_session_change", args=[quote(run.session_id)])
    )

    # gpt-4o: 2.5e-6 input, 10e-6 output.
    assert "0.012500" in body
    assert session_page.context["asm_runs"][0]["cost"] == "0.012500"
    assert session_page.context["asm_cost"]["total_cost_usd"] == pytest.approx(0.0125)


def test_a_session_written_by_the_langchain_adapter_reads_as_a_conversation(
    admin_client: Client,
):
    from agent_sessions.integrations.langchain import DjangoChatMessageHistory

    history = DjangoChatMessageHistory("lc-session", provider="codex")
    history.add_messages(
        [
            HumanMessage("Add 2 and 3"),
            AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "t1"}]),
            ToolMessage("5", tool_call_id="t1"),
            AIMessage(
                "It is 5.",
                usage_metadata={"input_tokens": 70, "output_tokens": 30, "total_tokens": 100},
                response_metadata={"model_name": "gpt-4o"},
            ),
        ]
    )

    response = admin_client.get(conversation(history.session_id))

    assert [kind for kind, _, _ in blocks(response)] == [
        "message",
        "tool_call",
        "tool_result",
        "message",
    ]
    assert entries(response)[1].blocks[0].pair["sequence_number"] == 3
    runs = response.context["runs"]
    assert [run["token_usage"]["total_tokens"] for run in runs] == [100]
    assert runs[0]["cost"] is not None
