"""Run in a child process by tests/test_pgasync.py: a scenario, then the server's connection counts.

``python -m tests.pgasync_leak_child SCENARIO DB_NAME TAG`` sets Django up on
the test database with ``application_name=TAG`` (which the private async
connections inherit), runs SCENARIO, and prints one JSON object: the number of
server connections carrying TAG at each checkpoint, counted from a separate
monitoring connection once the count has settled.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

SCENARIO, DB_NAME, TAG = sys.argv[1:4]
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings_postgres"

from django.conf import settings  # noqa: E402

settings.DATABASES["default"]["NAME"] = DB_NAME
settings.DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = TAG

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from agents import Agent, Runner, set_tracing_disabled  # noqa: E402

from agent_sessions.integrations.openai_agents import DjangoAgentsSession  # noqa: E402
from tests.openai_agents_support import EchoModel  # noqa: E402

db = settings.DATABASES["default"]
monitor = psycopg.connect(
    host=db["HOST"],
    port=db["PORT"],
    user=db["USER"],
    password=db["PASSWORD"],
    dbname=DB_NAME,
    autocommit=True,
    application_name=f"{TAG}-monitor",
)
counts: dict[str, int] = {}


def checkpoint(name: str, expected: int) -> None:
    """Record the count of TAG connections once it equals ``expected`` (or after 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        row = monitor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [TAG]
        ).fetchone()
        count = int(row[0]) if row else -1
        if count == expected or time.monotonic() > deadline:
            counts[name] = count
            return
        time.sleep(0.05)


def add_twice(session: DjangoAgentsSession) -> Any:
    async def work() -> None:
        # The first append creates the session row (worker thread), the second
        # takes the fast path: one private connection opened on this loop.
        await session.add_items([{"role": "user", "content": "a"}])
        await session.add_items([{"role": "user", "content": "b"}])

    return work()


def run_sync_twice_in_a_thread() -> None:
    set_tracing_disabled(True)
    agent = Agent(name="echo", instructions="Echo.", model=EchoModel())
    session = DjangoAgentsSession("conv_run_sync")

    def worker() -> None:
        Runner.run_sync(agent, "one", session=session)
        checkpoint("after_first_run_sync", 0)
        Runner.run_sync(agent, "two", session=session)
        checkpoint("after_second_run_sync", 0)
        # A third run in the same thread: the loop is still the SDK's default one.
        Runner.run_sync(agent, "three", session=session)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    checkpoint("after_thread_exit", 0)


def loop_closed_without_shutdown_asyncgens() -> None:
    loop = asyncio.new_event_loop()
    loop.run_until_complete(add_twice(DjangoAgentsSession("conv_closed_loop")))
    checkpoint("while_loop_open", 1)
    loop.close()  # no loop.shutdown_asyncgens(): the shutdown hook never runs
    # The next use of the fast path, on another loop, closes what the closed loop left.
    asyncio.run(add_twice(DjangoAgentsSession("conv_next_loop")))
    checkpoint("after_next_loop", 0)

    def worker() -> None:
        own = asyncio.new_event_loop()
        own.run_until_complete(add_twice(DjangoAgentsSession("conv_thread_loop")))
        own.close()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    checkpoint("after_thread_with_closed_loop_exits", 0)


{"run_sync": run_sync_twice_in_a_thread, "closed_loop": loop_closed_without_shutdown_asyncgens}[
    SCENARIO
]()
print(json.dumps(counts))
