"""Benchmark DjangoSessionStore against hand-written driver code on the same database.

    .venv/bin/python -m bench.bench_store                  # PostgreSQL, issue #17 sizes
    .venv/bin/python -m bench.bench_store --sqlite         # SQLite (WAL) vs raw sqlite3
    .venv/bin/python -m bench.bench_store --single 200 --batches 2 --replay 3000  # smoke

Each workload is timed for the store and for a baseline an expert would write by
hand with the driver alone, on the same database in the same run, interleaved so
both see the same load; the table prints events/s, the ratio and its target.
Inputs are built before any timed region: the store gets ``Event`` objects (its
API), the baselines get plain dicts/tuples of Python values and do their own
JSON encoding — no work of ours runs inside a baseline's timed region.

PostgreSQL (baseline: raw psycopg, which prepares repeated statements by default):

1. ``append_event``, one event per transaction, with **Django's default
   connection settings** (no ``prepare_threshold``) — vs raw psycopg running the
   durable counter upsert + insert CTE in autocommit (target ≥ 0.85);
2. the same through **PgBouncer in transaction mode** (Debian ``pgbouncer``
   started on a free port; the raw side through the same PgBouncer, where
   psycopg's own prepared statements must be off, ``prepare_threshold=None``)
   (target ≥ 0.85); with ``prepare_threshold=5`` set in Django's OPTIONS for
   information;
3. ``append_events`` in 1,000-event batches — vs raw ``COPY`` of the same rows
   from plain tuples, one transaction per batch (target ≥ 0.6);
4. replay of a 12,000-event session into ``Event`` objects — vs raw psycopg
   fetching the same rows as tuples (target ≥ 1.0), with the peak memory of the
   replay next to the size of the events it returns.

SQLite (``--sqlite``; baseline: the standard library's ``sqlite3`` on the same
file, WAL, the same pragmas): the same three store workloads; single append
≥ 0.7, the others reported.

It also reports how quickly a long-polling ``get_events(wait_timeout_ms=…)``
wakes after an append commits (PostgreSQL). The database (``asm_bench_store``
unless ``--db``) is created and migrated on first use; its event tables are
emptied at the start of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import peak_rss_mb, print_table, setup_django

STATE_DIR = Path(__file__).resolve().parent / "results"

RAW_APPEND_ONE = """
WITH counter AS (
    INSERT INTO asm_session_sequences AS seq (session_id, last_sequence, updated_at)
    VALUES (%(session_id)s, 1, %(now)s)
    ON CONFLICT (session_id) DO UPDATE
        SET last_sequence = seq.last_sequence + EXCLUDED.last_sequence,
            updated_at = EXCLUDED.updated_at
    RETURNING last_sequence
)
INSERT INTO asm_events (id, type, "timestamp", session_id, run_id, sequence_number, data,
                        metadata, schema_version, provider, correlation_id)
SELECT %(id)s, %(type)s, %(timestamp)s, %(session_id)s, %(run_id)s, counter.last_sequence,
       %(data)s::jsonb, %(metadata)s::jsonb, %(schema_version)s, %(provider)s, %(correlation_id)s
FROM counter
"""

SQLITE_COUNTER = """
INSERT INTO asm_session_sequences (session_id, last_sequence, updated_at) VALUES (?, 1, ?)
ON CONFLICT (session_id) DO UPDATE
    SET last_sequence = last_sequence + 1, updated_at = excluded.updated_at
RETURNING last_sequence
"""

COLUMNS = (
    'id, type, "timestamp", session_id, run_id, sequence_number, data, metadata, '
    "schema_version, provider, correlation_id"
)
SQLITE_INSERT = f"INSERT INTO asm_events ({COLUMNS}) VALUES ({', '.join('?' * 11)})"
SLICE = 25


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="asm_bench_store", help="database name")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--single", type=int, default=1000, help="events appended one per transaction per round"
    )
    parser.add_argument("--batches", type=int, default=5, help="batches per round")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per batch")
    parser.add_argument("--replay", type=int, default=12_000, help="events in the replayed session")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best one counts")
    parser.add_argument("--wakeups", type=int, default=10, help="long-poll wake-ups to time")
    parser.add_argument(
        "--no-pgbouncer", action="store_true", help="leave out the run through PgBouncer"
    )
    return parser.parse_args()


# --------------------------------------------------------------------------- inputs


def _payload(n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Realistic small event payload: a message with text, and a little metadata."""
    return (
        {"role": "assistant", "content": f"chunk {n} of the reply", "index": n},
        {"latency_ms": 12.5},
    )


def make_events(session_id: str, count: int) -> list[Any]:
    """The store's input: ``Event`` objects."""
    from agent_sessions.core import Event, EventType
    from agent_sessions.validation import utcnow

    now = utcnow()
    events = []
    for n in range(count):
        data, metadata = _payload(n)
        events.append(
            Event.new(
                EventType.MESSAGE_RECEIVED,
                session_id,
                run_id="run_bench",
                timestamp=now,
                data=data,
                metadata=metadata,
                provider="claude",
            )
        )
    return events


def make_plain(session_id: str, count: int) -> list[dict[str, Any]]:
    """The baselines' input: the same values as plain dicts (JSON still Python objects)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for n in range(count):
        data, metadata = _payload(n)
        rows.append(
            {
                "id": f"evt_{uuid.uuid4().hex}",
                "type": "message_received",
                "timestamp": now,
                "session_id": session_id,
                "run_id": "run_bench",
                "data": data,
                "metadata": metadata,
                "schema_version": 1,
                "provider": "claude",
                "correlation_id": None,
            }
        )
    return rows


def raw_params(event: Any) -> dict[str, Any]:
    """An ``Event``'s columns as the raw CTE's parameters (for benches starting from Events)."""
    return {
        "id": event.id,
        "type": event.type.value,
        "timestamp": event.timestamp.replace(tzinfo=None),
        "session_id": event.session_id,
        "run_id": event.run_id,
        "data": json.dumps(event.data),
        "metadata": json.dumps(event.metadata),
        "schema_version": event.schema_version,
        "provider": event.provider,
        "correlation_id": event.correlation_id,
    }


def fresh_session() -> str:
    return f"ses_{uuid.uuid4().hex}"


# --------------------------------------------------------------------------- timing


def interleaved(
    rounds: int, count: int, ours: Callable[[int, int], Any], raw: Callable[[int, int], Any]
) -> tuple[float, float]:
    """Events/s of ``ours`` and ``raw``, run alternately in slices; the best round counts.

    Each callable gets (round, slice start) and handles one slice; inputs are
    built before the rounds start by the caller.
    """
    best_ours = best_raw = float("inf")
    for round_ in range(rounds):
        ours_time = raw_time = 0.0
        for start in range(0, count, SLICE):
            began = time.perf_counter()
            raw(round_, start)
            raw_time += time.perf_counter() - began
            began = time.perf_counter()
            ours(round_, start)
            ours_time += time.perf_counter() - began
        best_ours = min(best_ours, ours_time)
        best_raw = min(best_raw, raw_time)
    return count / best_ours, count / best_raw


def alternating(
    rounds: int, count: int, ours: Callable[[int], Any], raw: Callable[[int], Any]
) -> tuple[float, float]:
    """Events/s of ``ours`` and ``raw`` (each doing ``count`` events per call), best round."""
    best_ours = best_raw = float("inf")
    for round_ in range(rounds):
        began = time.perf_counter()
        raw(round_)
        best_raw = min(best_raw, time.perf_counter() - began)
        began = time.perf_counter()
        ours(round_)
        best_ours = min(best_ours, time.perf_counter() - began)
    return count / best_ours, count / best_raw


# --------------------------------------------------------------------------- PostgreSQL


def pg_single(store: Any, raw: Any, args: argparse.Namespace) -> tuple[float, float]:
    """Single appends: the store vs raw psycopg's CTE in autocommit."""
    ours_in = [make_events(fresh_session(), args.single) for _ in range(args.repeat)]
    raw_in = [make_plain(fresh_session(), args.single) for _ in range(args.repeat)]
    cursor = raw.cursor()

    def ours(round_: int, start: int) -> None:
        for event in ours_in[round_][start : start + SLICE]:
            store.append_event(event)

    def baseline(round_: int, start: int) -> None:
        for row in raw_in[round_][start : start + SLICE]:
            params = dict(row)
            params["data"] = json.dumps(row["data"])
            params["metadata"] = json.dumps(row["metadata"])
            params["now"] = datetime.now(UTC).replace(tzinfo=None)
            cursor.execute(RAW_APPEND_ONE, params)

    return interleaved(args.repeat, args.single, ours, baseline)


def pg_batches(store: Any, raw: Any, args: argparse.Namespace) -> tuple[float, float]:
    """``append_events`` vs raw COPY of plain tuples, one transaction per batch."""
    total = args.batches * args.batch_size
    ours_in = []
    raw_in = []
    for _ in range(args.repeat):
        session_id = fresh_session()
        ours_in.append([make_events(session_id, args.batch_size) for _ in range(args.batches)])
        session_id = fresh_session()
        raw_in.append([make_plain(session_id, args.batch_size) for _ in range(args.batches)])
    raw_in_tuples = [
        [[tuple(row.values()) for row in batch] for batch in batches] for batches in raw_in
    ]

    def ours(round_: int) -> None:
        for batch in ours_in[round_]:
            store.append_events(batch)

    def baseline(round_: int) -> None:
        number = 0
        for batch in raw_in_tuples[round_]:
            with (
                raw.transaction(),
                raw.cursor() as cursor,
                cursor.copy(f"COPY asm_events ({COLUMNS}) FROM STDIN") as copy,
            ):
                for id_, type_, ts, sid, run_id, data, meta, version, prov, corr in batch:
                    number += 1
                    copy.write_row(
                        (
                            id_,
                            type_,
                            ts,
                            sid,
                            run_id,
                            number,
                            json.dumps(data),
                            json.dumps(meta),
                            version,
                            prov,
                            corr,
                        )
                    )

    return alternating(args.repeat, total, ours, baseline)


def replay(
    store: Any, fetch_raw: Callable[[str], Any], args: argparse.Namespace
) -> tuple[float, float, dict[str, float]]:
    """Replay of one long session into Events vs the raw driver fetching the rows."""
    session_id = fresh_session()
    remaining = args.replay
    while remaining:
        size = min(remaining, 2000)
        store.append_events(make_events(session_id, size))
        remaining -= size
    assert len(store.get_events(session_id)) == args.replay

    def ours(_: int) -> None:
        store.get_events(session_id)

    def baseline(_: int) -> None:
        fetch_raw(session_id)

    ours_rate, raw_rate = alternating(max(args.repeat, 5), args.replay, ours, baseline)
    tracemalloc.start()
    events = store.get_events(session_id)
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del events
    memory = {"retained_mib": retained / 2**20, "peak_mib": peak / 2**20}
    return ours_rate, raw_rate, memory


def bench_wakeup(store: Any, args: argparse.Namespace) -> list[float]:
    """Milliseconds from an append's commit to the long-polling reader's return."""
    from django.db import connection

    from agent_sessions.core import Event
    from agent_sessions.store import DjangoSessionStore

    latencies = []
    for _ in range(args.wakeups):
        session_id = fresh_session()
        returned: list[float] = []

        def reader(session_id: str = session_id, returned: list[float] = returned) -> None:
            try:
                DjangoSessionStore().get_events(session_id, wait_timeout_ms=5000)
                returned.append(time.perf_counter())
            finally:
                connection.close()

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.15)  # let the reader reach its wait
        store.append_event(Event.new("message_sent", session_id))
        committed = time.perf_counter()
        thread.join()
        latencies.append((returned[0] - committed) * 1000)
    return latencies


def set_prepare_threshold(alias: str, value: int | None) -> None:
    """Reconnect ``alias`` with ``OPTIONS["prepare_threshold"] = value`` (None: the default)."""
    from django.db import connections

    connections[alias].close()
    options = connections[alias].settings_dict.setdefault("OPTIONS", {})
    if value is None:
        options.pop("prepare_threshold", None)
    else:
        options["prepare_threshold"] = value


def run_postgres(args: argparse.Namespace) -> None:
    setup_django(args.db)
    import psycopg
    from django.db import connection

    from agent_sessions.store import DjangoSessionStore
    from bench.settings import raw_dsn

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE asm_events, asm_session_sequences")
    store = DjangoSessionStore()
    raw = psycopg.connect(raw_dsn(), autocommit=True)  # psycopg's defaults: prepares

    rows: list[list[Any]] = []

    def row(name: str, result: tuple[float, float], target: float | None) -> None:
        ours, baseline = result
        ratio = ours / baseline
        if target is None:
            rows.append([name, ours, baseline, ratio, "(info)", ""])
        else:
            verdict = "ok" if ratio >= target else "BELOW TARGET"
            rows.append([name, ours, baseline, ratio, f">= {target}", verdict])

    set_prepare_threshold("default", None)
    row("append (1/txn), Django default settings", pg_single(store, raw, args), 0.85)
    if not args.no_pgbouncer:
        from tests.pgbouncer import ALIAS, start_pgbouncer

        bouncer = start_pgbouncer()
        try:
            through = psycopg.connect(
                raw_dsn().replace(
                    f"port={connection.settings_dict['PORT']}", f"port={bouncer.port}"
                ),
                autocommit=True,
                prepare_threshold=None,  # PgBouncer < 1.21 in transaction mode needs this
            )
            row(
                "append (1/txn), through PgBouncer (transaction mode)",
                pg_single(DjangoSessionStore(using=ALIAS), through, args),
                0.85,
            )
            through.close()
        finally:
            bouncer.stop()
    set_prepare_threshold("default", 5)
    row("append (1/txn), OPTIONS prepare_threshold=5", pg_single(store, raw, args), None)
    set_prepare_threshold("default", None)
    row(f"append_events ({args.batch_size}/batch) vs COPY", pg_batches(store, raw, args), 0.6)

    def fetch_raw(session_id: str) -> Any:
        with raw.cursor() as cursor:
            cursor.execute(
                f"SELECT {COLUMNS} FROM asm_events WHERE session_id = %s ORDER BY sequence_number",
                [session_id],
            )
            return cursor.fetchall()

    replay_ours, replay_raw, memory = replay(store, fetch_raw, args)
    row("replay into Events vs raw fetch", (replay_ours, replay_raw), 1.0)
    wakeups = bench_wakeup(store, args)
    raw.close()

    print_table(
        f"DjangoSessionStore vs raw psycopg on PostgreSQL {args.db} (events/s, best of "
        f"{args.repeat}; Django's default connection settings unless the row says otherwise)",
        ["workload", "store ev/s", "raw ev/s", "ratio", "target", ""],
        rows,
    )
    print_memory(args, memory)
    print_table(
        f"Long-poll wake-up after commit ({len(wakeups)} tries, ms)",
        ["median", "max"],
        [[statistics.median(wakeups), max(wakeups)]],
    )
    print_sizes(args)


# --------------------------------------------------------------------------- SQLite


def run_sqlite(args: argparse.Namespace) -> None:
    STATE_DIR.mkdir(exist_ok=True)
    path = STATE_DIR / f"{args.db}.sqlite3"
    os.environ["ASM_BENCH_SQLITE"] = str(path)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_sqlite"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connection

    from agent_sessions.store import DjangoSessionStore

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM asm_events")
        cursor.execute("DELETE FROM asm_session_sequences")
    store = DjangoSessionStore()
    # What an expert writes with the standard library: autocommit off by hand,
    # BEGIN IMMEDIATE per transaction, the same pragmas as the Django settings.
    raw = sqlite3.connect(path, timeout=30, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")

    def ts(value: datetime) -> str:
        return value.isoformat(" ", timespec="microseconds")

    def sqlite_row(r: dict[str, Any], number: int) -> tuple[Any, ...]:
        """A plain event as the INSERT's parameters: what the hand-written code encodes."""
        return (
            r["id"],
            r["type"],
            ts(r["timestamp"]),
            r["session_id"],
            r["run_id"],
            number,
            json.dumps(r["data"]),
            json.dumps(r["metadata"]),
            r["schema_version"],
            r["provider"],
            r["correlation_id"],
        )

    ours_in = [make_events(fresh_session(), args.single) for _ in range(args.repeat)]
    raw_in = [make_plain(fresh_session(), args.single) for _ in range(args.repeat)]

    def ours_single(round_: int, start: int) -> None:
        for event in ours_in[round_][start : start + SLICE]:
            store.append_event(event)

    def raw_single(round_: int, start: int) -> None:
        for r in raw_in[round_][start : start + SLICE]:
            raw.execute("BEGIN IMMEDIATE")
            (number,) = raw.execute(
                SQLITE_COUNTER, (r["session_id"], ts(datetime.now(UTC)))
            ).fetchone()
            raw.execute(SQLITE_INSERT, sqlite_row(r, number))
            raw.execute("COMMIT")

    rows: list[list[Any]] = []
    ours, base = interleaved(args.repeat, args.single, ours_single, raw_single)
    rows.append(["append (1/txn)", ours, base, ours / base, ">= 0.7", verdict(ours / base, 0.7)])

    total = args.batches * args.batch_size
    ours_batches = [
        [make_events(sid, args.batch_size) for _ in range(args.batches)]
        for sid in (fresh_session() for _ in range(args.repeat))
    ]
    raw_batches = [
        [make_plain(sid, args.batch_size) for _ in range(args.batches)]
        for sid in (fresh_session() for _ in range(args.repeat))
    ]

    def ours_batch(round_: int) -> None:
        for batch in ours_batches[round_]:
            store.append_events(batch)

    def raw_batch(round_: int) -> None:
        number = 0
        for batch in raw_batches[round_]:
            raw.execute("BEGIN IMMEDIATE")
            values = []
            for r in batch:
                number += 1
                values.append(sqlite_row(r, number))
            raw.executemany(SQLITE_INSERT, values)
            raw.execute("COMMIT")

    ours, base = alternating(args.repeat, total, ours_batch, raw_batch)
    rows.append([f"append_events ({args.batch_size}/batch)", ours, base, ours / base, "(info)", ""])

    def fetch_raw(session_id: str) -> Any:
        # sqlite3 returns JSON and timestamps as text; psycopg decodes them on PostgreSQL.
        # The hand-written equivalent decodes them too, to hand out usable values.
        loads, parse = json.loads, datetime.fromisoformat
        return [
            (id_, type_, parse(ts), sid, run, n, loads(data), loads(meta), ver, prov, corr)
            for id_, type_, ts, sid, run, n, data, meta, ver, prov, corr in raw.execute(
                f"SELECT {COLUMNS} FROM asm_events WHERE session_id = ? ORDER BY sequence_number",
                (session_id,),
            )
        ]

    replay_ours, replay_raw, memory = replay(store, fetch_raw, args)
    rows.append(
        [
            "replay into Events vs fetch + decode",
            replay_ours,
            replay_raw,
            replay_ours / replay_raw,
            "(info)",
            "",
        ]
    )
    raw.close()
    print_table(
        f"DjangoSessionStore vs the sqlite3 module on the same file {path.name} (WAL, "
        f"synchronous=NORMAL; events/s, best of {args.repeat})",
        ["workload", "store ev/s", "sqlite3 ev/s", "ratio", "target", ""],
        rows,
    )
    print_memory(args, memory)
    print_sizes(args)


# --------------------------------------------------------------------------- output


def verdict(ratio: float, target: float) -> str:
    return "ok" if ratio >= target else "BELOW TARGET"


def print_memory(args: argparse.Namespace, memory: dict[str, float]) -> None:
    print_table(
        f"Replay of {args.replay} events: memory (tracemalloc)",
        ["retained by the result MiB", "peak during replay MiB", "process peak RSS MiB"],
        [[memory["retained_mib"], memory["peak_mib"], peak_rss_mb()]],
    )


def print_sizes(args: argparse.Namespace) -> None:
    print(
        f"\nsizes: --single {args.single} --batches {args.batches} --batch-size "
        f"{args.batch_size} --replay {args.replay} --repeat {args.repeat}"
    )


def main() -> None:
    args = parse_args()
    if args.sqlite:
        run_sqlite(args)
    else:
        run_postgres(args)


if __name__ == "__main__":
    main()
