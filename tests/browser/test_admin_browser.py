"""The admin in a real browser: Playwright driving Debian's chromium (issue 6).

A staff user logs in, filters the sessions, opens a session, reads its
timeline (and pages to older events), then opens an event. Screenshots of each
step go to ``artifacts/admin-browser/<backend>/`` (git-ignored; override with
``ASM_SCREENSHOT_DIR``).

Chromium comes from the system (``apt-get install chromium``, which
``scripts/test.sh`` does when it is missing), not from ``playwright install``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.factories import EventFactory, RunFactory, SessionFactory

CHROMIUM = os.environ.get("ASM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
UTC = dt.UTC

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def screenshots() -> Path:
    """Where this run's screenshots go (one folder per backend)."""
    default = Path(settings.BASE_DIR) / "artifacts" / "admin-browser"
    folder = Path(os.environ.get("ASM_SCREENSHOT_DIR", default)) / connection.vendor
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # made by the test meanwhile are still synchronous (pytest-django docs).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
        # The test body runs in Playwright's greenlet, whose context gets its own
        # database connections; close them, or dropping the test database fails.
        connections.close_all()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1680, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def history() -> dict[str, Any]:
    """A completed session with a run and 60 events, plus sessions it must not show with."""
    session = SessionFactory(
        agent_id="support-bot",
        status="completed",
        tags=["nightly"],
        metadata={"customer": "ACME <b>Corp</b>"},
    )
    SessionFactory(agent_id="other-bot", status="active")
    SessionFactory(agent_id="gone-bot", status="completed", deleted_at=dt.datetime.now(UTC))
    run = RunFactory(
        session_id=session.id,
        status="completed",
        provider="claude",
        token_usage={"input_tokens": 1200, "output_tokens": 300},
        cost_usd=0.0081,
    )
    start = dt.datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    events = [
        EventFactory(
            session_id=session.id,
            run_id=run.id,
            sequence_number=n,
            type="message_received" if n % 2 else "message_sent",
            timestamp=start + dt.timedelta(seconds=n),
            data={"content": f"message number {n}", "role": "assistant" if n % 2 else "user"},
            provider="claude",
        )
        for n in range(1, 61)
    ]
    return {"session": session, "run": run, "events": events}


def log_in(page: Page, base_url: str, user: Any) -> None:
    page.goto(f"{base_url}/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()


def test_staff_user_browses_sessions_timeline_and_an_event(
    live_server: Any, admin_user: Any, history: dict[str, Any], page: Page, screenshots: Path
) -> None:
    session = history["session"]
    log_in(page, live_server.url, admin_user)
    page.screenshot(path=screenshots / "01-admin-index.png")

    # Filter the sessions changelist by status.
    page.click("a[href='/admin/agent_sessions/session/']")
    page.click("#changelist-filter a[href='?status=completed']")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("support-bot")
    expect(page.locator("#result_list")).not_to_contain_text("gone-bot")
    page.screenshot(path=screenshots / "02-sessions-filtered.png", full_page=True)

    # Open the session: read-only fields, pretty JSON, runs, timeline newest first.
    rows.first.locator(f"a:text-is('{session.id}')").click()
    expect(page.locator("#content h2").first).to_contain_text(session.id)
    expect(page.locator(".asm-json").first).to_contain_text('"customer": "ACME <b>Corp</b>"')
    expect(page.locator("#asm-stat-events")).to_have_text("60")
    expect(page.locator("#asm-stat-runs")).to_have_text("1")
    expect(page.locator("#asm-runs tbody tr")).to_have_count(1)
    timeline = page.locator("#asm-timeline tr.asm-event")
    expect(timeline).to_have_count(50)
    expect(timeline.first).to_contain_text("message number 60")
    expect(timeline.last).to_contain_text("message number 11")
    page.screenshot(path=screenshots / "03-session-page.png", full_page=True)

    # Page to older events by sequence number.
    page.click("#asm-older")
    expect(timeline).to_have_count(10)
    expect(timeline.first).to_contain_text("message number 10")
    page.screenshot(path=screenshots / "04-timeline-older.png", full_page=True)

    # Open one event: data pretty-printed, read-only.
    timeline.filter(has_text="message number 7").locator("a").first.click()
    expect(page.locator("#content h2").first).to_contain_text("#7")
    expect(page.locator(".asm-json").first).to_contain_text('"content": "message number 7"')
    expect(page.locator("input[name=_save]")).to_have_count(0)
    page.screenshot(path=screenshots / "05-event.png", full_page=True)
