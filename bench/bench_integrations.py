"""Agent-framework adapters vs the frameworks' own SQL session stores, same PostgreSQL.

One-line command (needs the extras ``openai-agents,adk,langgraph,bench``)::

    .venv/bin/python -m bench.bench_integrations --items 2000 --read-items 10000

(The defaults, 300 and 2000, are a quick smoke run.) ``--only langgraph``
(repeatable) runs one framework's rows; ``--prepare-threshold 5`` runs Django
with the statement preparation docs/guide.md recommends (the frameworks'
stores prepare theirs: asyncpg caches prepared statements, ``PostgresSaver``
connects with ``prepare_threshold=0``); without it Django's default (no
preparation) applies. The load average is printed: the machine may be shared.
Database: ``asm_bench_integrations`` (``--db``). Compared, one call at a time:

- OpenAI Agents SDK: ``DjangoAgentsSession.add_items([item])`` vs the SDK's
  ``SQLAlchemySession`` (asyncpg), and ``get_items()`` of a whole session;
- Google ADK: ``DjangoSessionService.append_event`` vs ADK's
  ``DatabaseSessionService`` (asyncpg), and ``get_session`` of a whole
  session (events rebuilt as ADK ``Event`` objects on both sides);
- LangGraph: ``DjangoCheckpointSaver`` vs ``langgraph-checkpoint-postgres``'s
  ``PostgresSaver`` (psycopg, its own tables created by ``setup()``): a
  thread growing to ``--graph-messages`` messages, one ``put`` of the
  checkpoint (the ``messages`` channel at a new version) and one
  ``get_tuple`` per message; and ``list`` of the thread's checkpoints;
- raw psycopg baseline: the same work written by hand (append: counter upsert
  and insert in one transaction, plus the session-row update for ADK; read:
  one ``SELECT`` ordered by sequence number, JSON decoded per row).

Fair play: every client talks to the same database with the server's
durability (``synchronous_commit`` is checked and printed for Django and
asyncpg); the search index's GIN pending list is flushed before each timed
case (:func:`settle_search_index`, what autovacuum does in the background);
each timed append case runs ``--repeat`` rounds, the three contenders
taking turns inside each round so that load from other processes hits them
alike, and the best round counts; reads are best of ``--read-repeat``. Tables
are ANALYZEd after loading (LangGraph: before its timed threads, which grow
in tables holding earlier runs' threads) so that every side's reads get real
plans, as autovacuum would keep them.

Our single-item appends run on the adapters' private async connections
(``agent_sessions.integrations.pgasync``: built from Django's connection
parameters, so the same durability), opened inside the timed loop, as the
SQLAlchemy engines open theirs; every other call goes through Django.
Django runs with ``CONN_MAX_AGE = 600`` here, the setting recommended for
async use (see docs/async.md), so worker threads keep their connections, as
the SQLAlchemy engines keep theirs in their pools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import best_of, peak_rss_mb, print_table, setup_django


def item(n: int) -> dict[str, Any]:
    """An OpenAI Agents SDK message item of realistic size."""
    role = "user" if n % 2 == 0 else "assistant"
    return {"role": role, "content": f"message number {n} " + "lorem ipsum " * 8}


def adk_event(n: int) -> Any:
    """An ADK event carrying the same text as :func:`item`."""
    from google.adk.events.event import Event
    from google.genai import types

    content = types.Content(role="user", parts=[types.Part(text=item(n)["content"])])
    return Event(invocation_id="inv", author="user", content=content)


def timed_sync(func: Callable[[], Any]) -> float:
    """Seconds taken by ``func()``."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def sqlalchemy_url(db_name: str) -> str:
    from django.db import connection

    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s["PASSWORD"] else ""
    return f"postgresql+asyncpg://{s['USER']}{password}@{s['HOST']}:{s['PORT']}/{db_name}"


# --------------------------------------------------------------------------- raw psycopg

_RAW_BUMP = (
    "INSERT INTO asm_session_sequences AS s (session_id, last_sequence, updated_at)"
    " VALUES (%s, 1, now()) ON CONFLICT (session_id) DO UPDATE"
    " SET last_sequence = s.last_sequence + 1 RETURNING last_sequence"
)
_RAW_INSERT = (
    "INSERT INTO asm_events (id, type, timestamp, session_id, sequence_number,"
    " data, metadata, schema_version) VALUES (%s, 'message_sent', now(), %s, %s,"
    " %s, '{}', 1)"
)


def raw_append(dsn: str, session_id: str, payloads: list[dict[str, Any]], *, touch: bool) -> None:
    """Append each payload in its own transaction; ``touch`` also updates the session row."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        for payload in payloads:
            with conn.transaction():
                if touch:
                    conn.execute(
                        "UPDATE asm_sessions SET updated_at = now() WHERE id = %s", [session_id]
                    )
                number = conn.execute(_RAW_BUMP, [session_id]).fetchone()[0]  # type: ignore[index]
                conn.execute(_RAW_INSERT, [new_id("evt"), session_id, number, json.dumps(payload)])


def raw_read(dsn: str, session_id: str, key: str) -> list[Any]:
    """A session's ``data[key]`` values in sequence order (psycopg decodes the jsonb)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT data FROM asm_events WHERE session_id = %s ORDER BY sequence_number",
            [session_id],
        ).fetchall()
    return [row[0][key] for row in rows]


# --------------------------------------------------------------------------- helpers


def settle_search_index() -> None:
    """Flush the pending list of every GIN index (the full-text search index's) now.

    Inserts into a GIN index go to a pending list that autovacuum flushes in
    the background; on a server without autovacuum (this benchmark's may run
    with it off) the insert that finds the list full (4 MB by default) flushes
    it, which takes about a second, inside whichever contender's timed loop it
    happens to fall. Flushed before every timed case instead, as autovacuum
    would keep it between bursts.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT gin_clean_pending_list(i.indexrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
            " WHERE a.amname = 'gin'"
        )


def rounds(repeat: int, cases: dict[str, Callable[[int], float]]) -> dict[str, float]:
    """Run each case ``repeat`` times, rotating who goes first; the best time of each."""
    best = {name: float("inf") for name in cases}
    names = list(cases)
    for n in range(repeat):
        order = names[n % len(names) :] + names[: n % len(names)]
        for name in order:
            settle_search_index()
            best[name] = min(best[name], cases[name](n))
    return best


def durability_check(url: str) -> str:
    """``synchronous_commit`` on Django's, the adapters' async and asyncpg's connections."""
    from django.db import connection
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        ours = cursor.fetchone()[0]  # type: ignore[index]

    async def theirs() -> str:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            value = (await conn.execute(text("SHOW synchronous_commit"))).scalar_one()
        await engine.dispose()
        return str(value)

    async def private() -> str:
        from agent_sessions.integrations.pgasync import aclose_connections, execute_one

        row = await execute_one("default", "SHOW synchronous_commit", {})
        await aclose_connections()
        return str(row[0]) if row else "?"

    return (
        f"synchronous_commit: Django={ours}, adapters' async connections="
        f"{asyncio.run(private())}, asyncpg={asyncio.run(theirs())}"
    )


def analyze(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")


def row(case: str, ours: float, theirs: float, raw: float) -> list[Any]:
    return [case, ours, theirs, raw, theirs / ours, raw / ours]


# --------------------------------------------------------------------------- OpenAI Agents SDK


def bench_openai(args: argparse.Namespace, url: str, dsn: str) -> list[list[Any]]:
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

    from agent_sessions.integrations.openai_agents import DjangoAgentsSession

    items = args.items

    def ours(_: int) -> float:
        async def run() -> float:
            session = DjangoAgentsSession(new_id("oa"))
            inputs = [[item(n)] for n in range(items)]
            start = time.perf_counter()
            for one in inputs:
                await session.add_items(one)
            elapsed = time.perf_counter() - start
            await session.aclose()
            return elapsed

        return asyncio.run(run())

    def theirs(_: int) -> float:
        async def run() -> float:
            session = SQLAlchemySession.from_url(new_id("oa"), url=url, create_tables=True)
            await session.get_items(limit=0)  # creates the tables outside the timed loop
            inputs = [[item(n)] for n in range(items)]
            start = time.perf_counter()
            for one in inputs:
                await session.add_items(one)
            elapsed = time.perf_counter() - start
            await session.engine.dispose()
            return elapsed

        return asyncio.run(run())

    def raw(_: int) -> float:
        payloads = [{"item": item(n)} for n in range(items)]
        return timed_sync(lambda: raw_append(dsn, new_id("raw"), payloads, touch=False))

    append = rounds(args.repeat, {"ours": ours, "theirs": theirs, "raw": raw})

    big = new_id("big")
    batch = [item(n) for n in range(args.read_items)]
    asyncio.run(DjangoAgentsSession(big).add_items(batch))

    async def theirs_fill() -> None:
        session = SQLAlchemySession.from_url(big, url=url, create_tables=True)
        await session.add_items(batch)
        await session.engine.dispose()

    asyncio.run(theirs_fill())
    analyze(dsn)

    # Each read returns only a count from asyncio.run(): on Python 3.11,
    # asyncio.run() builds the repr() of its task (result included) when it
    # restores the SIGINT handler, which for 10,000 objects costs seconds that
    # have nothing to do with either store.
    def ours_read() -> None:
        async def read() -> int:
            return len(await DjangoAgentsSession(big).get_items())

        assert asyncio.run(read()) == args.read_items

    def theirs_read() -> None:
        async def read() -> int:
            session = SQLAlchemySession.from_url(big, url=url)
            got = len(await session.get_items())
            await session.engine.dispose()
            return got

        assert asyncio.run(read()) == args.read_items

    def raw_read_items() -> None:
        assert len(raw_read(dsn, big, "item")) == args.read_items

    read = {
        name: best_of(args.read_repeat, func)
        for name, func in (("ours", ours_read), ("theirs", theirs_read), ("raw", raw_read_items))
    }
    return [
        row(f"openai add_items x{items}", append["ours"], append["theirs"], append["raw"]),
        row(f"openai get_items ({args.read_items})", read["ours"], read["theirs"], read["raw"]),
    ]


# --------------------------------------------------------------------------- Google ADK


async def fill_ours(service: Any, session_id: str, events: list[Any]) -> None:
    """Store ``events`` as ``append_event`` would, in one batch (loading, not timed)."""
    from agent_sessions import core
    from agent_sessions.integrations.adk import (
        EVENT_KEY,
        SOURCE,
        asm_session_id,
        event_type_for_adk_event,
    )
    from agent_sessions.store import DjangoSessionStore

    await service.create_session(app_name="bench", user_id="u", session_id=session_id)
    stored = [
        core.Event.new(
            event_type_for_adk_event(event),
            asm_session_id("bench", "u", session_id),
            data={EVENT_KEY: event.model_dump(mode="json", exclude_none=True)},
            metadata={"source": SOURCE, "author": event.author},
        )
        for event in events
    ]
    await DjangoSessionStore().aappend_events(stored)


async def fill_theirs(service: Any, session_id: str, events: list[Any]) -> None:
    """Store ``events`` in ADK's tables in one transaction (loading, not timed).

    Uses the service's own schema classes and session factory, so the rows
    are exactly what ``append_event`` writes.
    """
    session = await service.create_session(app_name="bench", user_id="u", session_id=session_id)
    schema = service._get_schema_classes()
    async with service._rollback_on_exception_session() as sql_session:
        sql_session.add_all([schema.StorageEvent.from_event(session, e) for e in events])
        await sql_session.commit()


def bench_adk(args: argparse.Namespace, url: str, dsn: str) -> list[list[Any]]:
    from google.adk.sessions.database_session_service import DatabaseSessionService

    from agent_sessions.integrations.adk import DjangoSessionService

    items = args.items

    async def append_all(service: Any) -> float:
        session = await service.create_session(
            app_name="bench", user_id="u", session_id=new_id("adk")
        )
        # Inputs are built before the timed region, as for every contender.
        events = [adk_event(n) for n in range(items)]
        start = time.perf_counter()
        for event in events:
            await service.append_event(session, event)
        return time.perf_counter() - start

    def ours(_: int) -> float:
        async def run() -> float:
            service = DjangoSessionService()
            elapsed = await append_all(service)
            await service.aclose()
            return elapsed

        return asyncio.run(run())

    def theirs(_: int) -> float:
        async def run() -> float:
            service = DatabaseSessionService(db_url=url)
            elapsed = await append_all(service)
            await service.close()
            return elapsed

        return asyncio.run(run())

    def raw(_: int) -> float:
        payloads = [{"adk_event": adk_event(n).model_dump(mode="json")} for n in range(items)]
        session_id = new_id("rawadk")
        return timed_sync(lambda: raw_append(dsn, session_id, payloads, touch=True))

    append = rounds(args.repeat, {"ours": ours, "theirs": theirs, "raw": raw})

    big = new_id("adkbig")
    events = [adk_event(n) for n in range(args.read_items)]
    ours_service = DjangoSessionService()
    asyncio.run(fill_ours(ours_service, big, events))

    async def theirs_fill() -> None:
        service = DatabaseSessionService(db_url=url)
        await fill_theirs(service, big, events)
        await service.close()

    asyncio.run(theirs_fill())
    analyze(dsn)

    def ours_read() -> None:
        async def read() -> int:
            got = await ours_service.get_session(app_name="bench", user_id="u", session_id=big)
            return len(got.events)

        assert asyncio.run(read()) == args.read_items

    def theirs_read() -> None:
        async def read() -> int:
            service = DatabaseSessionService(db_url=url)
            got = await service.get_session(app_name="bench", user_id="u", session_id=big)
            await service.close()
            return len(got.events)

        assert asyncio.run(read()) == args.read_items

    def raw_read_events() -> None:
        from google.adk.events.event import Event

        from agent_sessions.integrations.adk import asm_session_id

        stored_as = asm_session_id("bench", "u", big)
        got = [Event.model_validate(d) for d in raw_read(dsn, stored_as, "adk_event")]
        assert len(got) == args.read_items

    read = {
        name: best_of(args.read_repeat, func)
        for name, func in (("ours", ours_read), ("theirs", theirs_read), ("raw", raw_read_events))
    }
    return [
        row(f"adk append_event x{items}", append["ours"], append["theirs"], append["raw"]),
        row(f"adk get_session ({args.read_items})", read["ours"], read["theirs"], read["raw"]),
    ]


# --------------------------------------------------------------------------- LangGraph


def graph_checkpoints(saver: Any, count: int) -> list[tuple[Any, dict[str, str]]]:
    """``count`` checkpoints of a conversation growing by one message each, and their new
    versions, as LangGraph's loop hands them to a saver (versions made by ``saver``)."""
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6

    messages: list[Any] = []
    version = None
    checkpoints = []
    for n in range(count):
        text = item(n)["content"]
        message = HumanMessage(text) if n % 2 == 0 else AIMessage(text)
        message.id = str(uuid.uuid4())
        messages = [*messages, message]
        version = saver.get_next_version(version, None)
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6())
        checkpoint["channel_values"] = {"messages": messages}
        checkpoint["channel_versions"] = {"messages": version}
        checkpoints.append((checkpoint, {"messages": version}))
    return checkpoints


def run_thread(saver: Any, thread_id: str, count: int) -> float:
    """Seconds to put each checkpoint of a ``count``-message thread and read it back."""
    checkpoints = graph_checkpoints(saver, count)
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    start = time.perf_counter()
    for step, (checkpoint, new_versions) in enumerate(checkpoints):
        metadata = {"source": "loop", "step": step, "parents": {}}
        config = saver.put(config, checkpoint, metadata, new_versions)
        got = saver.get_tuple(config)
        assert len(got.checkpoint["channel_values"]["messages"]) == step + 1
    return time.perf_counter() - start


def bench_langgraph(args: argparse.Namespace, url: str, dsn: str) -> list[list[Any]]:
    from langgraph.checkpoint.postgres import PostgresSaver

    from agent_sessions.integrations.langgraph import DjangoCheckpointSaver

    count = args.graph_messages
    with PostgresSaver.from_conn_string(dsn) as theirs_saver:
        theirs_saver.setup()
        # Same durability: PostgresSaver's own connection, checked like the others.
        theirs_commit = theirs_saver.conn.execute("SHOW synchronous_commit").fetchone()
        print(f"PostgresSaver synchronous_commit: {dict(theirs_commit or {})}", flush=True)
        # Real plans for both sides' reads (as autovacuum keeps them): the tables
        # hold earlier runs' threads, and the timed threads grow in them.
        analyze(dsn)

        def ours(_: int) -> float:
            return run_thread(DjangoCheckpointSaver(), new_id("lg"), count)

        def theirs(_: int) -> float:
            return run_thread(theirs_saver, new_id("lg"), count)

        cases = {"ours": ours, "theirs": theirs}
        puts = rounds(args.repeat, cases)
        listed = {}
        for name, saver in (("ours", DjangoCheckpointSaver()), ("theirs", theirs_saver)):
            thread_id = new_id("lglist")
            run_thread(saver, thread_id, count)
            config = {"configurable": {"thread_id": thread_id}}

            def list_all(saver: Any = saver, config: Any = config) -> None:
                assert len(list(saver.list(config))) == count

            listed[name] = best_of(args.read_repeat, list_all)
    return [
        [
            f"langgraph put+get_tuple x{count}",
            puts["ours"],
            puts["theirs"],
            "",
            puts["theirs"] / puts["ours"],
            "",
        ],
        [
            f"langgraph list ({count})",
            listed["ours"],
            listed["theirs"],
            "",
            listed["theirs"] / listed["ours"],
            "",
        ],
    ]


SECTIONS: dict[str, Callable[[argparse.Namespace, str, str], list[list[Any]]]] = {
    "openai": bench_openai,
    "adk": bench_adk,
    "langgraph": bench_langgraph,
}


def _load() -> list[str]:
    """The machine's 1, 5 and 15 minute load averages (the benchmark shares its cores)."""
    return [f"{value:.2f}" for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="asm_bench_integrations")
    parser.add_argument("--items", type=int, default=300, help="appends, one call each")
    parser.add_argument("--read-items", type=int, default=2000, help="size of the session read")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each append case")
    parser.add_argument("--read-repeat", type=int, default=5, help="runs of each read case")
    parser.add_argument(
        "--graph-messages", type=int, default=50, help="messages of the LangGraph thread"
    )
    parser.add_argument(
        "--only",
        choices=sorted(SECTIONS),
        action="append",
        help="run only this framework's rows (repeatable; default: all)",
    )
    parser.add_argument(
        "--prepare-threshold",
        type=int,
        default=None,
        help="Django's OPTIONS['prepare_threshold'] (default: Django's, no preparation)",
    )
    args = parser.parse_args()
    setup_django(args.db)
    from django.db import connections

    from bench.settings import raw_dsn

    connections.settings["default"]["CONN_MAX_AGE"] = 600
    if args.prepare_threshold is not None:
        options = connections.settings["default"].setdefault("OPTIONS", {})
        options["prepare_threshold"] = args.prepare_threshold
    url, dsn = sqlalchemy_url(args.db), raw_dsn()
    durability = durability_check(url)
    load_before = " ".join(_load())
    rows: list[list[Any]] = []
    for name in args.only or SECTIONS:
        found = SECTIONS[name](args, url, dsn)
        # Each framework's rows as soon as they are measured (a long run keeps them
        # even if a later section fails).
        for case, ours, theirs, *_ in found:
            print(f"{case}: ours {ours:.3f} s, theirs {theirs:.3f} s", flush=True)
        rows += found
    print_table(
        f"agent-framework adapters on PostgreSQL ({args.db}); seconds (best of "
        f"{args.repeat} rounds for appends, {args.read_repeat} for reads), lower is better",
        ["case", "ours", "theirs", "raw psycopg", "theirs/ours", "raw/ours"],
        rows,
    )
    prepared = "off" if args.prepare_threshold is None else args.prepare_threshold
    print(
        f"\n{durability}; Django prepare_threshold: {prepared}; peak RSS {peak_rss_mb():.0f} MiB; "
        f"load average before/after: {load_before} / {' '.join(_load())}"
    )


if __name__ == "__main__":
    main()
