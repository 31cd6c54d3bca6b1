"""``manage.py demo_agent [SESSION_ID]``: an agent talking, one event at a time, for the live page.

Appends ``--count`` message events to the session (created when missing),
one every ``--interval`` seconds, through the public store, and prints the
page to watch them on. Runs in its own process, as a real agent would.
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from agent_sessions.core import Event, Session
from agent_sessions.errors import NotFoundError
from agent_sessions.store import DjangoSessionStore

LINES = [
    "Looking at the invoice history for this account.",
    "Two charges on the 3rd: one was a retried payment that did not roll back.",
    "Refund issued for the duplicate charge.",
    "Anything else I can help with?",
]


class Command(BaseCommand):
    help = "Append message events to a session, one at a time (watch them on /live/<id>/)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session_id", nargs="?", default="ses_live_demo")
        parser.add_argument("--count", type=int, default=20)
        parser.add_argument("--interval", type=float, default=1.0)

    def handle(
        self, *args: Any, session_id: str, count: int, interval: float, **options: Any
    ) -> None:
        store = DjangoSessionStore()
        try:
            store.get_session(session_id)
        except NotFoundError:
            store.save_session(Session.new("support-bot", id=session_id, status="active"))
        verbose = options["verbosity"] > 0
        if verbose:
            port = os.environ.get("ASM_DEMO_PORT", "8000")
            self.stdout.write(f"Watch: http://127.0.0.1:{port}/live/{session_id}/")
        for n in range(count):
            line = LINES[n % len(LINES)]
            event = store.append_event(
                Event.new(
                    "message_received", session_id, data={"content": line, "role": "assistant"}
                )
            )
            if verbose:
                self.stdout.write(f"#{event.sequence_number} {line}")
            if n + 1 < count:
                time.sleep(interval)
