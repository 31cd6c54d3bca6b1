"""Read-your-writes behind a real streaming replica: how often a read right after a write is stale.

Needs the hot standby (``bash scripts/replica.sh start``). With the router of
Django's multi-database docs, each iteration writes through the store and
reads it straight back, in each of the ways a caller can read:

- ``router``: ``DjangoSessionStore()``, reads on the routers' read database (the standby);
- ``consistent``: ``DjangoSessionStore(consistent=True)``;
- ``read_from_primary``: ``DjangoSessionStore()`` inside ``read_from_primary()``.

It prints how many read-backs missed the write (``get_session`` raising
``NotFoundError``, ``get_events`` returning ``[]``) and the median time of
the read-back, with no lag induced: the standby's natural replay delay only::

    bash scripts/replica.sh start
    .venv/bin/python -m bench.bench_replica            # --iterations 400 --db asm_bench_replica

Options: ``--db NAME`` (default ``asm_bench_replica``), ``--iterations N``
(default 400).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

CATCH_UP_SECONDS = 60


def _catch_up() -> None:
    """Wait until the standby has replayed the migrations."""
    from django.db import connections

    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        lsn = cursor.fetchone()[0]
    deadline = time.monotonic() + CATCH_UP_SECONDS
    with connections["replica"].cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn])
            if cursor.fetchone()[0]:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"the standby did not replay up to {lsn} in {CATCH_UP_SECONDS} s")
            time.sleep(0.01)


def _measure(
    iterations: int, store: Any, pin: Callable[[], contextlib.AbstractContextManager[None]]
) -> list[Any]:
    from agent_sessions.core import Event, EventType, Session
    from agent_sessions.errors import NotFoundError

    missing = empty = 0
    reads: list[float] = []
    for _ in range(iterations):
        session = Session.new("bench")
        store.save_session(session)
        start = time.perf_counter()
        with pin():
            try:
                store.get_session(session.id)
            except NotFoundError:
                missing += 1
        reads.append(time.perf_counter() - start)
        store.append_event(Event.new(EventType.MESSAGE_SENT, session.id, data={"content": "x"}))
        with pin():
            if store.get_events(session.id) == []:
                empty += 1
    return [f"{missing}/{iterations}", f"{empty}/{iterations}", statistics.median(reads) * 1e6]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="asm_bench_replica")
    parser.add_argument("--iterations", type=int, default=400)
    args = parser.parse_args()
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_replica"

    from bench.common import print_table, setup_django

    setup_django(args.db)
    _catch_up()

    from django.db import connections

    from agent_sessions.routing import read_from_primary
    from agent_sessions.store import DjangoSessionStore

    rows = []
    for name, store, pin in (
        ("router", DjangoSessionStore(), contextlib.nullcontext),
        ("consistent", DjangoSessionStore(consistent=True), contextlib.nullcontext),
        ("read_from_primary", DjangoSessionStore(), read_from_primary),
    ):
        rows.append([name, *_measure(args.iterations, store, pin)])
    print_table(
        f"Read right after a write, {args.iterations} times, natural replica lag",
        ["reads", "get_session missed", "get_events missed", "get_session median µs"],
        rows,
    )
    with connections["default"].cursor() as cursor:  # its own database: start empty next time
        cursor.execute("TRUNCATE asm_sessions, asm_events, asm_session_sequences")


if __name__ == "__main__":
    main()
