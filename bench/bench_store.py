"""Benchmark DjangoSessionStore against raw psycopg on the same PostgreSQL database.

    .venv/bin/python bench/bench_store.py                  # smoke-sized defaults
    .venv/bin/python bench/bench_store.py --single 2000 --batches 10 --repeat 5

Measures, each as events/s for the store and for a raw psycopg baseline doing
the same work on the same database in the same run, and their ratio:

1. append, one event per transaction, one connection — vs raw psycopg running
   the same durable single-statement counter upsert + insert (a CTE) in
   autocommit (target ratio ≥ 0.8). Raw psycopg prepares repeated statements
   by default (``prepare_threshold=5``) and Django turns that off, so the
   store runs with ``OPTIONS["prepare_threshold"]`` set to the same value
   (``--prepare-threshold``); the table also shows the ratio with Django's
   default;
2. ``append_events`` in 1,000-event batches — vs raw psycopg ``COPY`` of the
   same rows, one transaction per batch (target ≥ 0.5);
3. replay of a 12,000-event session into ``Event`` objects — vs raw psycopg
   fetching the same rows (target ≥ 0.5), plus the peak memory of the replay
   (tracemalloc) next to the size of the events it returns.

It also reports how quickly a long-polling ``get_events(wait_timeout_ms=…)``
wakes after an append commits. The database (``asm_bench_store`` unless
``--db``) is created and migrated on first use; its event tables are emptied
at the start of each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import best_of, peak_rss_mb, print_table, setup_django

TARGETS = {"append (1/txn)": 0.8, "append_events (batch)": 0.5, "replay": 0.5}

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

COLUMNS = (
    'id, type, "timestamp", session_id, run_id, sequence_number, data, metadata, '
    "schema_version, provider, correlation_id"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="asm_bench_store", help="database name")
    parser.add_argument(
        "--single", type=int, default=500, help="events appended one per transaction per round"
    )
    parser.add_argument("--batches", type=int, default=5, help="batches per round")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per batch")
    parser.add_argument("--replay", type=int, default=12_000, help="events in the replayed session")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best one counts")
    parser.add_argument("--wakeups", type=int, default=10, help="long-poll wake-ups to time")
    parser.add_argument(
        "--prepare-threshold",
        type=int,
        default=5,
        help="psycopg prepare_threshold for Django's connection (the raw baseline uses "
        "psycopg's default, 5); single appends are also measured with Django's default (off)",
    )
    return parser.parse_args()


def use_prepare_threshold(value: int | None) -> None:
    """Reconnect Django with ``OPTIONS["prepare_threshold"] = value``."""
    from django.db import connections

    connections.close_all()
    connections["default"].settings_dict["OPTIONS"]["prepare_threshold"] = value


def make_events(session_id: str, count: int) -> list[Any]:
    """Realistic small events: a message with text and a little metadata."""
    from agent_sessions.core import Event, EventType
    from agent_sessions.validation import utcnow

    now = utcnow()
    return [
        Event.new(
            EventType.MESSAGE_RECEIVED,
            session_id,
            run_id="run_bench",
            timestamp=now,
            data={"role": "assistant", "content": f"chunk {n} of the reply", "index": n},
            metadata={"latency_ms": 12.5},
            provider="claude",
        )
        for n in range(count)
    ]


def raw_params(event: Any) -> dict[str, Any]:
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


def bench_single(store: Any, raw: Any, args: argparse.Namespace) -> tuple[float, float]:
    """Single appends, store and raw interleaved in slices so both see the same load."""
    from datetime import UTC, datetime

    slice_size = 25
    best_ours = best_raw = float("inf")
    for _ in range(args.repeat):
        ours_events = make_events(fresh_session(), args.single)
        raw_events = make_events(fresh_session(), args.single)
        ours_time = raw_time = 0.0
        with raw.cursor() as cursor:
            for start in range(0, args.single, slice_size):
                began = time.perf_counter()
                for event in raw_events[start : start + slice_size]:
                    params = raw_params(event)
                    params["now"] = datetime.now(UTC).replace(tzinfo=None)
                    cursor.execute(RAW_APPEND_ONE, params)
                raw_time += time.perf_counter() - began
                began = time.perf_counter()
                for event in ours_events[start : start + slice_size]:
                    store.append_event(event)
                ours_time += time.perf_counter() - began
        best_ours = min(best_ours, ours_time)
        best_raw = min(best_raw, raw_time)
    return args.single / best_ours, args.single / best_raw


def bench_batches(store: Any, raw: Any, args: argparse.Namespace) -> tuple[float, float]:
    total = args.batches * args.batch_size

    def ours() -> None:
        session_id = fresh_session()
        for _ in range(args.batches):
            store.append_events(make_events(session_id, args.batch_size))

    def baseline() -> None:
        session_id = fresh_session()
        number = 0
        for _ in range(args.batches):
            events = make_events(session_id, args.batch_size)
            with (
                raw.transaction(),
                raw.cursor() as cursor,
                cursor.copy(f"COPY asm_events ({COLUMNS}) FROM STDIN") as copy,
            ):
                for event in events:
                    number += 1
                    copy.write_row(
                        (
                            event.id,
                            event.type.value,
                            event.timestamp.replace(tzinfo=None),
                            event.session_id,
                            event.run_id,
                            number,
                            json.dumps(event.data),
                            json.dumps(event.metadata),
                            event.schema_version,
                            event.provider,
                            event.correlation_id,
                        )
                    )

    ours_best = raw_best = float("inf")
    for _ in range(args.repeat):
        raw_best = min(raw_best, best_of(1, baseline))
        ours_best = min(ours_best, best_of(1, ours))
    return total / ours_best, total / raw_best


def bench_replay(
    store: Any, raw: Any, args: argparse.Namespace
) -> tuple[float, float, dict[str, float]]:
    session_id = fresh_session()
    remaining = args.replay
    while remaining:
        size = min(remaining, 2000)
        store.append_events(make_events(session_id, size))
        remaining -= size

    def ours() -> Any:
        return store.get_events(session_id)

    def baseline() -> Any:
        with raw.cursor() as cursor:
            cursor.execute(
                f"SELECT {COLUMNS} FROM asm_events WHERE session_id = %s ORDER BY sequence_number",
                [session_id],
            )
            return cursor.fetchall()

    assert len(ours()) == args.replay
    ours_best = raw_best = float("inf")
    for _ in range(args.repeat):
        raw_best = min(raw_best, best_of(1, baseline))
        ours_best = min(ours_best, best_of(1, ours))

    tracemalloc.start()
    events = ours()
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del events
    memory = {"retained_mib": retained / 2**20, "peak_mib": peak / 2**20}
    return args.replay / ours_best, args.replay / raw_best, memory


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


def main() -> None:
    args = parse_args()
    setup_django(args.db)
    import psycopg
    from django.db import connection

    from agent_sessions.store import DjangoSessionStore
    from bench.settings import raw_dsn

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE asm_events, asm_session_sequences")
    store = DjangoSessionStore()
    raw = psycopg.connect(raw_dsn(), autocommit=True)

    use_prepare_threshold(None)
    unprepared_ours, unprepared_raw = bench_single(store, raw, args)
    use_prepare_threshold(args.prepare_threshold)
    single_ours, single_raw = bench_single(store, raw, args)
    batch_ours, batch_raw = bench_batches(store, raw, args)
    replay_ours, replay_raw, memory = bench_replay(store, raw, args)
    wakeups = bench_wakeup(store, args)
    raw.close()

    rows = []
    for name, ours, baseline in (
        ("append (1/txn)", single_ours, single_raw),
        ("append_events (batch)", batch_ours, batch_raw),
        ("replay", replay_ours, replay_raw),
    ):
        ratio = ours / baseline
        verdict = "ok" if ratio >= TARGETS[name] else "BELOW TARGET"
        rows.append([name, ours, baseline, ratio, f">= {TARGETS[name]}", verdict])
    rows.append(
        [
            "append (1/txn), Django default: no prepared statements",
            unprepared_ours,
            unprepared_raw,
            unprepared_ours / unprepared_raw,
            "(info)",
            "",
        ]
    )
    print_table(
        f"DjangoSessionStore vs raw psycopg on {args.db} (events/s, best of {args.repeat}; "
        f"Django OPTIONS prepare_threshold={args.prepare_threshold})",
        ["workload", "store ev/s", "raw ev/s", "ratio", "target", ""],
        rows,
    )
    print_table(
        f"Replay of {args.replay} events: memory (tracemalloc)",
        ["retained by the result MiB", "peak during replay MiB", "process peak RSS MiB"],
        [[memory["retained_mib"], memory["peak_mib"], peak_rss_mb()]],
    )
    print_table(
        f"Long-poll wake-up after commit ({len(wakeups)} tries, ms)",
        ["median", "max"],
        [[statistics.median(wakeups), max(wakeups)]],
    )
    print(
        f"\nsizes: --single {args.single} --batches {args.batches} --batch-size "
        f"{args.batch_size} --replay {args.replay} --repeat {args.repeat}"
    )


if __name__ == "__main__":
    main()
