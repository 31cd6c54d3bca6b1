"""The example project's live page in a real browser (Chromium via Playwright, issue #13).

The example project runs under uvicorn on the test database. A user logs in
and opens ``/live/<session>/``; another process appends events; the server
ends every stream after a second (``STREAM_MAX_SECONDS``) and is killed and
restarted once. The browser's ``EventSource`` reconnects with
``Last-Event-ID`` each time, and the page must show every event exactly once,
in order (it counts anything shown twice in ``#duplicates``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from agent_sessions.core import Session
from agent_sessions.store import DjangoSessionStore
from tests.api_support import ROOT, AsgiServer, start_writer
from tests.browser.test_admin_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EVENTS = 40


@pytest.fixture
def screenshots() -> Path:
    default = Path(settings.BASE_DIR) / "artifacts" / "live-browser"
    folder = Path(os.environ.get("ASM_SCREENSHOT_DIR", default)) / connection.vendor
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def example_server() -> Iterator[AsgiServer]:
    server = AsgiServer(
        agent_sessions={"STREAM_MAX_SECONDS": 1, "STREAM_RETRY_MS": 200},
        settings_module="example_project.settings",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    # Playwright's sync API runs an event loop in this thread (see the admin browser test).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield page
        context.close()
        browser.close()
        connections.close_all()


def test_live_page_shows_every_event_exactly_once_across_dropped_connections(
    example_server: AsgiServer, page: Page, screenshots: Path
) -> None:
    session = Session.new("support-bot", status="active")
    DjangoSessionStore().save_session(session)
    connection.close()
    # The demo's own command, with the example project's settings (and password hasher).
    subprocess.run(
        [sys.executable, "manage.py", "demo_admin", "--username", "live", "--password", "live"],
        cwd=ROOT,
        env=example_server.env,
        check=True,
        capture_output=True,
    )

    page.goto(f"{example_server.url}/live/{session.id}/")
    page.fill("#id_username", "live")
    page.fill("#id_password", "live")
    page.click("input[type=submit]")
    expect(page.locator("#status")).to_have_text("open")

    writer = start_writer([session.id], EVENTS, 0.08)
    try:
        page.wait_for_function("Number(document.getElementById('count').textContent) >= 12")
        example_server.kill()
        expect(page.locator("#status")).to_have_text("connecting")
        example_server.start()
        expect(page.locator("#count")).to_have_text(str(EVENTS), timeout=30_000)
    finally:
        assert writer.wait(timeout=60) == 0
    page.screenshot(path=screenshots / "live-page.png", full_page=True)

    shown = page.locator("#events li").evaluate_all("items => items.map(i => i.dataset.seq)")
    assert shown == [str(n) for n in range(1, EVENTS + 1)]
    expect(page.locator("#duplicates")).to_have_text("0")
    reconnects = int(page.locator("#reconnects").inner_text())
    assert reconnects >= 3, "the server ended streams and was restarted; the page reconnected"
