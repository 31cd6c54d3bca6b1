"""The admin as a debugger in a real browser: Chromium via Playwright (issue 14).

A superuser walks the conversation view of a two-run session with tool calls,
a failed tool, an error and a policy violation, watches the live tail receive
an event appended meanwhile (and not while paused), scrolls a long JSON
payload on an event page, and reads the lists at 1,024, 1,400 and 1,920 px
wide. Staff users with partial view permissions see only what they may.
Screenshots of every step go to ``artifacts/screenshots/<backend>/``
(git-ignored; ``ASM_SCREENSHOT_DIR`` overrides the folder).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db import connection
from django.urls import reverse
from playwright.sync_api import Browser, Page, expect

from agent_sessions.core import Event
from agent_sessions.store import DjangoSessionStore
from tests.browser.test_admin_browser import browser, log_in  # noqa: F401 - shared fixtures
from tests.factories import EventFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db(transaction=True)

UTC = dt.UTC
WIDTHS = (1024, 1400, 1920)
START = dt.datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def screenshots() -> Path:
    default = Path(settings.BASE_DIR) / "artifacts" / "screenshots"
    folder = Path(os.environ.get("ASM_SCREENSHOT_DIR", default)) / connection.vendor
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 - the shared fixture's argument
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def debug_session() -> dict[str, Any]:
    """Two runs: a search tool answered, a deploy tool failing, an error, a policy violation."""
    session = SessionFactory(agent_id="support-bot", status="failed")
    first = RunFactory(
        session_id=session.id,
        status="completed",
        provider="claude",
        provider_metadata={"model": "claude-sonnet-4-5"},
        token_usage={"input_tokens": 1200, "output_tokens": 300},
        started_at=START,
    )
    second = RunFactory(
        session_id=session.id,
        status="failed",
        provider="codex",
        provider_metadata={"model": "gpt-4o"},
        token_usage={"input_tokens": 800, "output_tokens": 50},
        cost_usd=0.0021,
        started_at=START + dt.timedelta(minutes=5),
    )
    long_line = "".join(f"word{n} " for n in range(6000))
    history = [
        (first, "message_sent", {"role": "user", "content": "Find order 42\nand ship it."}),
        (first, "message_received", {"role": "assistant", "content": "Looking it up."}),
        (
            first,
            "tool_call_started",
            {"tool_name": "orders.find", "tool_call_id": "c1", "tool_input": {"id": 42}},
        ),
        (
            first,
            "tool_call_completed",
            {
                "tool_name": "orders.find",
                "tool_call_id": "c1",
                "tool_output": {"id": 42, "notes": long_line, "trace": "line 1\nline 2\nline 3"},
            },
        ),
        (first, "token_usage_updated", {"input_tokens": 1200, "output_tokens": 300}),
        (second, "tool_call_started", {"tool_name": "shipping.create", "tool_call_id": "c2"}),
        (
            second,
            "tool_call_failed",
            {
                "tool_name": "shipping.create",
                "tool_call_id": "c2",
                "error_message": "carrier API timed out",
            },
        ),
        (second, "error_occurred", {"error_message": "run aborted after tool failure"}),
        (
            second,
            "policy_violation",
            {"policy": "no-prod-writes", "kind": "tool", "details": {"tool": "shipping.create"}},
        ),
        (second, "run_failed", {"error_message": "gave up"}),
    ]
    events = [
        EventFactory(
            session_id=session.id,
            run_id=run.id,
            sequence_number=n,
            type=event_type,
            data=data,
            timestamp=START + dt.timedelta(seconds=3 * n),
            provider=run.provider,
        )
        for n, (run, event_type, data) in enumerate(history, 1)
    ]
    # The store continues the counter where the fixture's rows end.
    from agent_sessions.models import SessionSequence

    SessionSequence.objects.create(session_id=session.id, last_sequence=len(events))
    return {"session": session, "first": first, "second": second, "events": events}


def conversation_url(base: str, session_id: str) -> str:
    return base + reverse("admin:agent_sessions_session_conversation", args=[quote(session_id)])


def no_horizontal_overflow(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_conversation_view_pairs_tools_highlights_errors_and_tails_live(
    live_server: Any, admin_user: Any, debug_session: dict[str, Any], page: Page, screenshots: Path
) -> None:
    session = debug_session["session"]
    log_in(page, live_server.url, admin_user)
    page.goto(conversation_url(live_server.url, session.id))

    entries = page.locator("#asm-transcript li.asm-entry")
    expect(entries).to_have_count(10)
    expect(page.locator("#asm-transcript li.asm-run-header")).to_have_count(2)
    expect(page.locator("#asm-run-summary tbody tr")).to_have_count(2)
    # Priced from the table (claude-sonnet-4-5) and stored (0.0021).
    expect(page.locator("#asm-run-summary")).to_contain_text("0.008100")
    expect(page.locator("#asm-run-summary")).to_contain_text("0.002100")
    expect(entries.nth(0)).to_contain_text("Find order 42\nand ship it.")
    expect(page.locator("#seq-3")).to_contain_text("result at #4")
    expect(page.locator("#seq-6")).to_contain_text("failed at #7")
    expect(page.locator("#asm-transcript li.asm-error")).to_have_count(3)
    expect(page.locator("#asm-transcript li.asm-policy")).to_have_count(1)
    expect(page.locator("#seq-5")).to_contain_text("1200 in · 300 out")
    page.screenshot(path=screenshots / "10-conversation.png", full_page=True)

    # Filters: only errors, then only the second run.
    page.check("#asm-filters input[value=errors]")
    page.click("#asm-filters input[type=submit]")
    expect(entries).to_have_count(4)
    page.goto(conversation_url(live_server.url, session.id) + f"?run={debug_session['second'].id}")
    expect(entries).to_have_count(5)
    page.screenshot(path=screenshots / "11-conversation-one-run.png", full_page=True)

    # Live tail: an event appended now appears without a reload; none while paused.
    page.goto(conversation_url(live_server.url, session.id))
    expect(page.locator("#asm-live-status")).to_contain_text("watching", timeout=10_000)
    store = DjangoSessionStore()
    store.append_event(
        Event.new("message_received", session.id, data={"role": "assistant", "content": "Live!"})
    )
    expect(page.locator("#seq-11")).to_contain_text("Live!", timeout=10_000)
    page.screenshot(path=screenshots / "12-live-tail-received.png", full_page=True)
    page.click("#asm-live-toggle")
    expect(page.locator("#asm-live-status")).to_have_text("Paused.")
    store.append_event(Event.new("message_sent", session.id, data={"content": "while paused"}))
    page.wait_for_timeout(1500)
    expect(page.locator("#seq-12")).to_have_count(0)
    page.click("#asm-live-toggle")
    expect(page.locator("#seq-12")).to_contain_text("while paused", timeout=10_000)
    page.screenshot(path=screenshots / "13-live-tail-resumed.png", full_page=True)


def test_a_long_json_payload_wraps_and_scrolls_on_its_event_page(
    live_server: Any, admin_user: Any, debug_session: dict[str, Any], page: Page, screenshots: Path
) -> None:
    event = debug_session["events"][3]
    log_in(page, live_server.url, admin_user)
    page.goto(
        live_server.url + reverse("admin:agent_sessions_event_change", args=[quote(event.id)])
    )

    data = page.locator(".asm-json").first
    expect(data).to_contain_text("line 1\nline 2")
    sizes = data.evaluate(
        "el => ({sw: el.scrollWidth, cw: el.clientWidth, sh: el.scrollHeight, ch: el.clientHeight})"
    )
    assert sizes["sw"] <= sizes["cw"] + 1  # wrapped: nothing hidden to the right
    assert sizes["sh"] > sizes["ch"]  # long: it scrolls
    assert no_horizontal_overflow(page)
    data.evaluate("el => { el.scrollTop = el.scrollHeight / 2; }")
    assert data.evaluate("el => el.scrollTop") > 0
    page.screenshot(path=screenshots / "20-long-json-scrolled.png", full_page=True)

    page.click("button.asm-copy")
    expect(page.locator(".asm-copy-status")).to_have_text("Copied.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert f'"id": "{event.id}"' in copied


@pytest.mark.parametrize("width", WIDTHS)
def test_lists_and_the_conversation_fit_the_screen(
    live_server: Any,
    admin_user: Any,
    debug_session: dict[str, Any],
    page: Page,
    screenshots: Path,
    width: int,
) -> None:
    session = debug_session["session"]
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, live_server.url, admin_user)
    views = {
        "runs": reverse("admin:agent_sessions_run_changelist"),
        "events": reverse("admin:agent_sessions_event_changelist") + f"?session_id={session.id}",
        "session": reverse("admin:agent_sessions_session_change", args=[quote(session.id)]),
        "conversation": reverse(
            "admin:agent_sessions_session_conversation", args=[quote(session.id)]
        ),
    }
    for name, path in views.items():
        page.goto(live_server.url + path)
        page.screenshot(path=screenshots / f"30-{name}-{width}.png", full_page=True)
        assert no_horizontal_overflow(page), f"{name} overflows at {width} px"
    # The runs list keeps tokens, cost and dates on screen.
    page.goto(live_server.url + views["runs"])
    for column in ("column-tokens", "column-cost", "column-started", "column-ended"):
        box = page.locator(f"#result_list th.{column}").bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= width


def staff_user(django_user_model: Any, *codenames: str) -> Any:
    user = django_user_model.objects.create_user(
        username="staff-" + "-".join(codenames), password="password", is_staff=True
    )
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="agent_sessions", codename__in=codenames)
    )
    return user


@pytest.mark.parametrize(
    "codenames",
    [("view_session",), ("view_session", "view_event"), ("view_session", "view_run", "view_event")],
    ids=["session-only", "session+event", "session+run+event"],
)
def test_staff_see_only_what_their_view_permissions_allow(
    live_server: Any,
    django_user_model: Any,
    debug_session: dict[str, Any],
    page: Page,
    screenshots: Path,
    codenames: tuple[str, ...],
) -> None:
    session = debug_session["session"]
    user = staff_user(django_user_model, *codenames)
    may_event, may_run = "view_event" in codenames, "view_run" in codenames
    log_in(page, live_server.url, user)

    page.goto(
        live_server.url + reverse("admin:agent_sessions_session_change", args=[quote(session.id)])
    )
    expect(page.locator("#asm-timeline")).to_have_count(1 if may_event else 0)
    expect(page.locator("#asm-runs")).to_have_count(1 if may_run else 0)
    expect(page.locator("#content")).not_to_contain_text(
        "carrier API timed out" if not may_event else "\x00"
    )
    page.screenshot(path=screenshots / f"40-permissions-{'+'.join(codenames)}.png", full_page=True)

    response = page.goto(conversation_url(live_server.url, session.id))
    assert response is not None
    assert response.status == (200 if may_event else 403)
    if may_event:
        expect(page.locator("#asm-run-summary")).to_have_count(1 if may_run else 0)
        expect(page.locator("#seq-7")).to_contain_text("carrier API timed out")
