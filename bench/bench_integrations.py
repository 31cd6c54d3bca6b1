"""Agent-framework adapters vs the frameworks' own SQL session stores, same PostgreSQL.

One-line command (needs the extras ``openai-agents,adk,bench``)::

    .venv/bin/python -m bench.bench_integrations --items 2000 --read-items 10000

(The defaults, 300 and 2000, are a quick smoke run.) Database:
``asm_bench_integrations`` (``--db``). Compared, one call at a time:

- OpenAI Agents SDK: ``DjangoAgentsSession.add_items([item])`` vs the SDK's
  ``SQLAlchemySession`` (asyncpg), and reading a whole session back;
- Google ADK: ``DjangoSessionService.append_event`` vs ADK's
  ``DatabaseSessionService`` (asyncpg);
- raw psycopg baseline: the same append (counter upsert + insert, one
  transaction) and the same read written by hand.

Django runs with ``CONN_MAX_AGE = 600`` here, the setting recommended for
async use (see docs/async.md), so worker threads keep their connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import best_of, peak_rss_mb, print_table, setup_django


def item(n: int) -> dict[str, Any]:
    role = "user" if n % 2 == 0 else "assistant"
    return {"role": role, "content": f"message number {n} " + "lorem ipsum " * 8}


def timed(coro_factory: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    asyncio.run(coro_factory())
    return time.perf_counter() - start


def sqlalchemy_url(db_name: str) -> str:
    from django.db import connection

    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s["PASSWORD"] else ""
    return f"postgresql+asyncpg://{s['USER']}{password}@{s['HOST']}:{s['PORT']}/{db_name}"


def raw_append(dsn: str, session_id: str, count: int) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn:
        for n in range(count):
            with conn.transaction():
                number = conn.execute(
                    "INSERT INTO asm_session_sequences AS s (session_id, last_sequence, updated_at)"
                    " VALUES (%s, 1, now()) ON CONFLICT (session_id) DO UPDATE"
                    " SET last_sequence = s.last_sequence + 1 RETURNING last_sequence",
                    [session_id],
                ).fetchone()[0]
                conn.execute(
                    "INSERT INTO asm_events (id, type, timestamp, session_id, sequence_number,"
                    " data, metadata, schema_version) VALUES (%s, 'message_sent', now(), %s, %s,"
                    " %s, '{}', 1)",
                    [f"evt_{uuid.uuid4().hex}", session_id, number, json.dumps({"item": item(n)})],
                )


def raw_read(dsn: str, session_id: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT data FROM asm_events WHERE session_id = %s ORDER BY sequence_number",
            [session_id],
        ).fetchall()
    return len([row[0]["item"] for row in rows])


def bench_openai(items: int, read_items: int, url: str, dsn: str) -> list[list[Any]]:
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

    from agent_sessions.integrations.openai_agents import DjangoAgentsSession

    run_id = uuid.uuid4().hex[:8]

    async def ours_append() -> None:
        session = DjangoAgentsSession(f"oa_{run_id}")
        for n in range(items):
            await session.add_items([item(n)])

    async def theirs_append() -> None:
        session = SQLAlchemySession.from_url(f"oa_{run_id}", url=url, create_tables=True)
        for n in range(items):
            await session.add_items([item(n)])
        await session.engine.dispose()

    ours = timed(ours_append)
    theirs = timed(theirs_append)
    raw = _time(lambda: raw_append(dsn, f"raw_{run_id}", items))

    big = f"big_{run_id}"
    batch = [item(n) for n in range(read_items)]
    asyncio.run(DjangoAgentsSession(big).add_items(batch))
    their_big = SQLAlchemySession.from_url(big, url=url, create_tables=True)

    async def theirs_fill() -> None:
        await their_big.add_items(batch)

    asyncio.run(theirs_fill())

    def ours_read() -> None:
        assert len(asyncio.run(DjangoAgentsSession(big).get_items())) == read_items

    def theirs_read() -> None:
        async def read() -> int:
            session = SQLAlchemySession.from_url(big, url=url)
            got = len(await session.get_items())
            await session.engine.dispose()
            return got

        assert asyncio.run(read()) == read_items

    ours_r, theirs_r = best_of(3, ours_read), best_of(3, theirs_read)
    raw_r = best_of(3, lambda: raw_read(dsn, big))
    return [
        [f"openai add_items x{items}", ours, theirs, raw, theirs / ours, raw / ours],
        [
            f"openai get_items ({read_items})",
            ours_r,
            theirs_r,
            raw_r,
            theirs_r / ours_r,
            raw_r / ours_r,
        ],
    ]


def bench_adk(items: int, url: str, dsn: str) -> list[list[Any]]:
    from google.adk.events.event import Event
    from google.adk.sessions.database_session_service import DatabaseSessionService
    from google.genai import types

    from agent_sessions.integrations.adk import DjangoSessionService

    run_id = uuid.uuid4().hex[:8]

    def event(n: int) -> Event:
        content = types.Content(role="user", parts=[types.Part(text=item(n)["content"])])
        return Event(invocation_id="inv", author="user", content=content)

    async def append_all(service: Any) -> None:
        session = await service.create_session(
            app_name="bench", user_id="u", session_id=f"adk_{run_id}"
        )
        for n in range(items):
            await service.append_event(session, event(n))

    ours = timed(lambda: append_all(DjangoSessionService()))

    async def theirs_run() -> None:
        service = DatabaseSessionService(db_url=url)
        await append_all(service)
        await service.close()

    theirs = timed(theirs_run)
    raw = _time(lambda: raw_append(dsn, f"rawadk_{run_id}", items))
    return [[f"adk append_event x{items}", ours, theirs, raw, theirs / ours, raw / ours]]


def _time(func: Callable[[], Any]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="asm_bench_integrations")
    parser.add_argument("--items", type=int, default=300, help="appends, one call each")
    parser.add_argument("--read-items", type=int, default=2000, help="size of the session read")
    args = parser.parse_args()
    setup_django(args.db)
    from django.db import connections

    from bench.settings import raw_dsn

    connections.settings["default"]["CONN_MAX_AGE"] = 600
    url, dsn = sqlalchemy_url(args.db), raw_dsn()
    rows = bench_openai(args.items, args.read_items, url, dsn) + bench_adk(args.items, url, dsn)
    print_table(
        f"agent-framework adapters on PostgreSQL ({args.db}); seconds, lower is better",
        ["case", "ours", "theirs", "raw psycopg", "theirs/ours", "raw/ours"],
        rows,
    )
    print(f"\npeak RSS {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
