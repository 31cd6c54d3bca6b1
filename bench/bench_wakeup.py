"""How fast waiting readers wake, and what they hold while they wait (PostgreSQL).

    .venv/bin/python -m bench.bench_wakeup               # 20 wake-ups per case
    .venv/bin/python -m bench.bench_wakeup --wakeups 50 --readers 100

Starts its own PgBouncer (transaction pooling, ``tests/pgbouncer.py``) in
front of the benchmark database and measures, as the time from a writer's
commit to the long-polling reader's return (``get_events(wait_timeout_ms=…)``):

1. direct: reader and writer on a direct connection (NOTIFY);
2. through PgBouncer, with ``DIRECT_DATABASE`` pointing the listener at a
   direct alias (NOTIFY);
3. through PgBouncer without a direct connection (the listener detects the
   pooler and polls every ``WAIT_POLL_INTERVAL_SECONDS``);
4. a writer that sends no NOTIFY and does not touch the counter (plain SQL
   ``INSERT``, as an Elixir co-writer), caught by the interval check.

Then how many server connections one process holds while 100 async readers
(``aget_events``) wait on 100 sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, setup_django


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="asm_bench_wakeup")
    parser.add_argument("--wakeups", type=int, default=20)
    parser.add_argument("--readers", type=int, default=100)
    return parser.parse_args()


def wake_ups(reader_alias: str, write: Callable[[str], None], count: int) -> list[float]:
    """Milliseconds from ``write(session_id)`` returning (committed) to the reader's return."""
    from django.db import connections

    from agent_sessions.store import DjangoSessionStore

    latencies = []
    for _ in range(count):
        session_id = f"ses_{uuid.uuid4().hex}"
        returned: list[float] = []

        def reader(session_id: str = session_id, returned: list[float] = returned) -> None:
            try:
                DjangoSessionStore(using=reader_alias).get_events(session_id, wait_timeout_ms=5000)
                returned.append(time.perf_counter())
            finally:
                connections.close_all()

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.15)  # the reader is waiting now
        write(session_id)
        committed = time.perf_counter()
        thread.join()
        latencies.append((returned[0] - committed) * 1000)
    return latencies


def held_by_waiting_readers(readers: int) -> tuple[int, int]:
    """(server connections of this database before, while ``readers`` async readers wait)."""
    from django.db import connection

    from agent_sessions.aio import run_in_worker
    from agent_sessions.listener import get_listener, shutdown_listeners
    from agent_sessions.store import DjangoSessionStore

    def count() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return int(cursor.fetchone()[0])

    shutdown_listeners()

    async def scenario() -> tuple[int, int]:
        before = await run_in_worker(count)
        store = DjangoSessionStore()
        waiting = [
            asyncio.ensure_future(
                store.aget_events(f"ses_{uuid.uuid4().hex}", wait_timeout_ms=30_000)
            )
            for _ in range(readers)
        ]
        listener = get_listener("default")
        while listener.waiting < readers:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        during = await run_in_worker(count)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        return before, during

    return asyncio.run(scenario())


def main() -> None:
    args = parse_args()
    setup_django(args.db)
    import psycopg
    from django.conf import settings
    from django.db import connection

    from agent_sessions.core import Event
    from agent_sessions.listener import shutdown_listeners
    from agent_sessions.store import DjangoSessionStore
    from bench.settings import raw_dsn
    from tests.pgbouncer import ALIAS, start_pgbouncer

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE asm_events, asm_session_sequences")
    bouncer = start_pgbouncer()
    raw = psycopg.connect(raw_dsn(), autocommit=True)

    def append(alias: str) -> Callable[[str], None]:
        return lambda sid: (
            DjangoSessionStore(using=alias).append_event(Event.new("message_sent", sid)) and None
        )

    def plain_insert(sid: str) -> None:
        raw.execute(
            "INSERT INTO asm_events (id, type, timestamp, session_id, sequence_number, data, "
            "metadata, schema_version) VALUES (%s, 'message_sent', now(), %s, 1, '{}', '{}', 1)",
            [f"evt_{uuid.uuid4().hex}", sid],
        )

    interval = 0.5
    cases = []
    try:
        settings.AGENT_SESSIONS = {"DIRECT_DATABASE": {ALIAS: "default"}}
        cases.append(("direct (NOTIFY)", wake_ups("default", append("default"), args.wakeups)))
        cases.append(
            (
                "through PgBouncer, DIRECT_DATABASE set (NOTIFY)",
                wake_ups(ALIAS, append(ALIAS), args.wakeups),
            )
        )
        shutdown_listeners()
        settings.AGENT_SESSIONS = {"WAIT_POLL_INTERVAL_SECONDS": interval}
        cases.append(
            (
                f"through PgBouncer, no direct connection (check every {interval} s)",
                wake_ups(ALIAS, append(ALIAS), args.wakeups),
            )
        )
        shutdown_listeners()
        cases.append(
            (
                f"plain SQL INSERT, no NOTIFY, no counter (check every {interval} s)",
                wake_ups("default", plain_insert, args.wakeups),
            )
        )
        before, during = held_by_waiting_readers(args.readers)
    finally:
        shutdown_listeners()
        raw.close()
        bouncer.stop()

    print_table(
        f"Long-poll wake-up after commit ({args.wakeups} tries each, ms)",
        ["case", "median", "p90", "max"],
        [
            [
                name,
                round(statistics.median(values), 2),
                round(statistics.quantiles(values, n=10)[-1], 2),
                round(max(values), 2),
            ]
            for name, values in cases
        ],
    )
    print_table(
        f"Server connections while {args.readers} async readers wait in one process",
        ["before", "while waiting", "held by the readers"],
        [[before, during, during - before]],
    )


if __name__ == "__main__":
    main()
