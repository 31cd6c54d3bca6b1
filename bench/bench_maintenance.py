"""Benchmark: ``DjangoMaintenance.execute`` against hand-written set-based SQL.

One command (PostgreSQL; the database is created if needed)::

    .venv/bin/python -m bench.bench_maintenance --scale 1   # 100,000 sessions, 1,000,000 events
    .venv/bin/python -m bench.bench_maintenance             # smoke run (scale 0.05)

The data is generated with ``COPY``: at scale 1, 100,000 sessions of which
half are expired (a quarter soft-deleted 60 days ago, due for hard delete; a
quarter completed and idle for 200 days, due for soft delete), 10 events per
session (1,000,000), one run and one counter per session, an artifact per ten
sessions, plus 1% orphaned artifacts and counters. The policy also caps
sessions at 8 events, so every surviving session is pruned.

Each size is run twice on identical data, regenerated in between: once by
``execute`` (through Django, in batches, in a fresh process so that its peak
RSS is its own) and once by set-based SQL over raw psycopg doing the same
deletions in a handful of statements in one transaction. The table counts
after both must agree ("same result"). "write batches" counts the write
transactions of ``execute`` and the largest batch (sessions or rows).
Then the same again at a tenth of the size, to show that peak memory does not
grow with the data.

``--dataset total`` measures ``max_total_events`` where prune-first types
dominate (issue #17): sessions of 30 events, 24 of them ``message_streamed`` /
``token_usage_updated``, each with its own timestamp; the policy keeps half of
the events (no age rules), at the default ``batch_size`` (100) unless told.
Sizes come from ``--events`` (default 1,000,000 and 3,000,000). The set-based
contender is one ``DELETE … WHERE id IN (SELECT … ORDER BY <prune-first>,
timestamp, sequence_number, id LIMIT excess)``; the table also shows the time
per pruned event, which stays flat when the walk is linear::

    .venv/bin/python -m bench.bench_maintenance --dataset total
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from typing import Any

DEFAULT_DB = "asm_bench_maint"
SESSIONS_AT_SCALE_1 = 100_000
EVENTS_PER_SESSION = 10
MAX_EVENTS_PER_SESSION = 8
TABLES = ("asm_sessions", "asm_runs", "asm_events", "asm_session_sequences", "asm_artifacts")
# Event types by sequence number (1-based): protected anchors, then prunable ones.
EVENT_TYPES = [
    "session_created",
    "run_started",
    "message_sent",
    "message_streamed",
    "token_usage_updated",
    "message_received",
    "message_streamed",
    "tool_call_started",
    "tool_call_completed",
    "run_completed",
]
PROTECTED = ["session_created", "run_started", "run_completed", "run_failed", "error_occurred"]
PRUNE_FIRST = ["message_streamed", "token_usage_updated"]


def policy_fields(batch_size: int) -> dict[str, Any]:
    return {
        "max_completed_session_age_days": 90,
        "hard_delete_after_days": 30,
        "max_events_per_session": MAX_EVENTS_PER_SESSION,
        "exempt_statuses": ["active", "paused"],
        "exempt_tags": ["pinned"],
        "prune_event_types_first": PRUNE_FIRST,
        "batch_size": batch_size,
    }


# --------------------------------------------------------------------------- data


def generate(dsn: str, sessions: int, now: dt.datetime) -> int:
    """Replace the tables' contents with the benchmark data set; return the event count."""
    import psycopg

    recent = now - dt.timedelta(days=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        with conn.cursor() as cur:
            with cur.copy(
                "COPY asm_sessions (id, agent_id, status, metadata, context, tags, "
                "created_at, updated_at, deleted_at) FROM STDIN"
            ) as copy:
                for i in range(sessions):
                    kind = i % 4
                    created = recent - dt.timedelta(days=300 if kind < 2 else 0, milliseconds=i)
                    updated = now - dt.timedelta(days=200) if kind == 1 else created
                    deleted = now - dt.timedelta(days=60) if kind == 0 else None
                    status = "active" if kind >= 2 else "completed"
                    tags = "{pinned}" if i % 40 == 1 else "{}"
                    copy.write_row(
                        (
                            f"ses_{i:08d}",
                            "agent",
                            status,
                            "{}",
                            "{}",
                            tags,
                            created,
                            updated,
                            deleted,
                        )
                    )
            with cur.copy(
                "COPY asm_runs (id, session_id, status, metadata, turn_count, token_usage, "
                "started_at, provider_metadata) FROM STDIN"
            ) as copy:
                for i in range(sessions):
                    copy.write_row(
                        (f"run_{i:08d}", f"ses_{i:08d}", "completed", "{}", 1, "{}", recent, "{}")
                    )
            with cur.copy(
                "COPY asm_events (id, type, timestamp, session_id, run_id, sequence_number, "
                "data, metadata, schema_version) FROM STDIN"
            ) as copy:
                for i in range(sessions):
                    session_id, run_id = f"ses_{i:08d}", f"run_{i:08d}"
                    for n, event_type in enumerate(EVENT_TYPES, start=1):
                        stamp = recent + dt.timedelta(seconds=n, microseconds=i)
                        copy.write_row(
                            (
                                f"evt_{i:08d}_{n:02d}",
                                event_type,
                                stamp,
                                session_id,
                                run_id,
                                n,
                                '{"text": "hello"}',
                                "{}",
                                1,
                            )
                        )
            with cur.copy(
                "COPY asm_session_sequences (session_id, last_sequence, updated_at) FROM STDIN"
            ) as copy:
                for i in range(sessions):
                    copy.write_row((f"ses_{i:08d}", EVENTS_PER_SESSION, recent))
                for i in range(sessions // 100):
                    copy.write_row((f"ses_forgotten_{i:08d}", 3, recent))
            with cur.copy(
                "COPY asm_artifacts (id, session_id, key, byte_size, checksum_sha256, "
                "storage_backend, storage_ref, metadata, created_at) FROM STDIN"
            ) as copy:
                owners = [f"ses_{i:08d}" for i in range(0, sessions, 10)]
                owners += [f"ses_missing_{i:08d}" for i in range(sessions // 100)]
                for n, owner in enumerate(owners):
                    copy.write_row(
                        (
                            f"art_{n:016d}",
                            owner,
                            f"k/{n}",
                            1,
                            "0" * 64,
                            "s3",
                            f"r/{n}",
                            "{}",
                            recent,
                        )
                    )
        conn.execute("VACUUM ANALYZE")
    return sessions * EVENTS_PER_SESSION


def table_counts(dsn: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


TOTAL_EVENTS_PER_SESSION = 30
# Per session: two anchors, then 24 prune-first events among 4 others, then run_completed.
TOTAL_EVENT_TYPES = ["session_created", "run_started"] + (
    ["message_streamed"] * 5 + ["token_usage_updated"] + ["message_sent"]
) * 4


def total_types() -> list[str]:
    types = [*TOTAL_EVENT_TYPES[: TOTAL_EVENTS_PER_SESSION - 1], "run_completed"]
    assert len(types) == TOTAL_EVENTS_PER_SESSION
    return types


def generate_total(dsn: str, events: int, now: dt.datetime) -> int:
    """Sessions of 30 events dominated by prune-first types, every event its own timestamp."""
    import psycopg

    sessions = max(1, events // TOTAL_EVENTS_PER_SESSION)
    types = total_types()
    start = now - dt.timedelta(days=30)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        with conn.cursor() as cur:
            with cur.copy(
                "COPY asm_sessions (id, agent_id, status, metadata, context, tags, "
                "created_at, updated_at) FROM STDIN"
            ) as copy:
                for i in range(sessions):
                    copy.write_row(
                        (f"ses_{i:08d}", "agent", "active", "{}", "{}", "{}", start, now)
                    )
            with cur.copy(
                "COPY asm_events (id, type, timestamp, session_id, sequence_number, data, "
                "metadata, schema_version) FROM STDIN"
            ) as copy:
                # Sessions interleave in time: event n of every session, then event n + 1.
                for n, event_type in enumerate(types, start=1):
                    for i in range(sessions):
                        stamp = start + dt.timedelta(seconds=n * sessions + i)
                        copy.write_row(
                            (
                                f"evt_{i:08d}_{n:02d}",
                                event_type,
                                stamp,
                                f"ses_{i:08d}",
                                n,
                                '{"text": "hello"}',
                                "{}",
                                1,
                            )
                        )
            with cur.copy(
                "COPY asm_session_sequences (session_id, last_sequence, updated_at) FROM STDIN"
            ) as copy:
                for i in range(sessions):
                    copy.write_row((f"ses_{i:08d}", TOTAL_EVENTS_PER_SESSION, now))
        conn.execute("VACUUM ANALYZE")
    return sessions * TOTAL_EVENTS_PER_SESSION


def total_policy_fields(events: int, batch_size: int) -> dict[str, Any]:
    return {
        "max_completed_session_age_days": None,
        "hard_delete_after_days": None,
        "max_total_events": events // 2,
        "prune_event_types_first": PRUNE_FIRST,
        "batch_size": batch_size,
    }


def run_total_sql(dsn: str, events: int) -> float:
    """max_total_events by hand: one DELETE of the excess, in pruning order."""
    import psycopg

    sql = """
        DELETE FROM asm_events WHERE id IN (
            SELECT id FROM asm_events WHERE type <> ALL(%(protected)s)
            ORDER BY CASE WHEN type = ANY(%(first)s) THEN 0 ELSE 1 END,
                     "timestamp", sequence_number, id
            LIMIT (SELECT count(*) FROM asm_events) - %(cap)s)
    """
    params = {"protected": PROTECTED, "first": PRUNE_FIRST, "cap": events // 2}
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        with conn.transaction():
            conn.execute(sql, params)
        return time.perf_counter() - start


def main_total(args: argparse.Namespace) -> None:
    from bench.common import print_table
    from bench.settings import raw_dsn

    dsn = raw_dsn()
    rows = []
    for size in args.events:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        events = generate_total(dsn, size, now)
        sql_seconds = run_total_sql(dsn, events)
        after_sql = table_counts(dsn)
        generate_total(dsn, size, now)
        ours = _child(args.db, args.batch_size, total_events=events)
        after_ours = table_counts(dsn)
        pruned = events - after_ours["asm_events"]
        rows.append(
            [
                f"{events:,}",
                f"{pruned:,}",
                ours["seconds"],
                sql_seconds,
                ours["seconds"] / sql_seconds,
                ours["seconds"] / max(pruned, 1) * 1e6,
                ours["rss_mb"],
                "yes" if after_ours == after_sql else f"NO: {after_ours} vs {after_sql}",
                # The machine is shared: how busy it was while execute ran.
                " ".join(f"{value:.2f}" for value in os.getloadavg()),
            ]
        )
    print_table(
        f"max_total_events, prune-first types dominating: execute vs one DELETE "
        f"(PostgreSQL, batch_size={args.batch_size}; target ratio <= 2, us/event flat)",
        [
            "events",
            "pruned",
            "execute s",
            "raw SQL s",
            "ratio",
            "execute us/pruned event",
            "peak RSS MiB",
            "same result",
            "load avg 1/5/15 min",
        ],
        rows,
    )
    if len(rows) > 1:
        print(f"\nus per pruned event, largest / smallest size: {rows[-1][5] / rows[0][5]:.2f}")


# --------------------------------------------------------------------------- the two contenders


def run_set_based_sql(dsn: str, now: dt.datetime) -> float:
    """The same deletions as ``execute``, written by hand as a few set-based statements."""
    import psycopg

    params = {
        "now": now,
        "soft_cutoff": now - dt.timedelta(days=90),
        "hard_cutoff": now - dt.timedelta(days=30),
        "exempt": ["active", "paused"],
        "tags": ["pinned"],
        "cap": MAX_EVENTS_PER_SESSION,
        "protected": PROTECTED,
        "first": PRUNE_FIRST,
    }
    statements = [
        """UPDATE asm_sessions SET deleted_at = %(now)s
           WHERE deleted_at IS NULL AND updated_at < %(soft_cutoff)s
             AND status <> ALL(%(exempt)s) AND NOT COALESCE(tags && %(tags)s::varchar[], false)""",
        """CREATE TEMP TABLE doomed ON COMMIT DROP AS
           SELECT id FROM asm_sessions WHERE deleted_at < %(hard_cutoff)s""",
        "DELETE FROM asm_session_sequences WHERE session_id IN (SELECT id FROM doomed)",
        "DELETE FROM asm_events WHERE session_id IN (SELECT id FROM doomed)",
        "DELETE FROM asm_runs WHERE session_id IN (SELECT id FROM doomed)",
        "DELETE FROM asm_artifacts WHERE session_id IN (SELECT id FROM doomed)",
        "DELETE FROM asm_sessions WHERE id IN (SELECT id FROM doomed)",
        """DELETE FROM asm_events WHERE id IN (
             SELECT id FROM (
               SELECT e.id, t.total,
                      row_number() OVER (
                        PARTITION BY e.session_id
                        ORDER BY CASE WHEN e.type = ANY(%(first)s) THEN 0 ELSE 1 END,
                                 e.sequence_number) AS rn
               FROM asm_events e
               JOIN (SELECT session_id, count(*) AS total FROM asm_events
                     GROUP BY session_id HAVING count(*) > %(cap)s) t USING (session_id)
               WHERE e.type <> ALL(%(protected)s)) r
             WHERE rn <= total - %(cap)s)""",
        """DELETE FROM asm_artifacts a WHERE session_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM asm_sessions s WHERE s.id = a.session_id)""",
        """DELETE FROM asm_session_sequences q
           WHERE NOT EXISTS (SELECT 1 FROM asm_sessions s WHERE s.id = q.session_id)
             AND NOT EXISTS (SELECT 1 FROM asm_events e WHERE e.session_id = q.session_id)""",
    ]
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        with conn.transaction():
            for sql in statements:
                conn.execute(sql, params)
        return time.perf_counter() - start


def child_execute(batch_size: int, total_events: int | None = None) -> dict[str, Any]:
    """In a fresh process: run ``execute`` once; report its time, peak RSS and report."""
    from agent_sessions.maintenance import DjangoMaintenance
    from agent_sessions.retention import RetentionPolicy
    from bench.common import peak_rss_mb

    fields = (
        policy_fields(batch_size)
        if total_events is None
        else total_policy_fields(total_events, batch_size)
    )
    policy = RetentionPolicy(**fields)
    batches: list[int] = []
    maintenance = DjangoMaintenance(progress=lambda step, rows, total: batches.append(rows))
    start = time.perf_counter()
    report = maintenance.execute(policy)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rss_mb": peak_rss_mb(),
        "batches": len(batches),
        "largest_batch": max(batches, default=0),
        "report": report.to_dict(),
    }


# --------------------------------------------------------------------------- driver


def _child(db: str, batch_size: int, *, total_events: int | None = None) -> dict[str, Any]:
    extra = [] if total_events is None else ["--total-events", str(total_events)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_maintenance",
            "--db",
            db,
            "--batch-size",
            str(batch_size),
            "--child",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=0.05, help="1 = 100,000 sessions (default 0.05)"
    )
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database name (default {DEFAULT_DB})")
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="policy batch_size (default 1000)"
    )
    parser.add_argument(
        "--dataset",
        choices=("expiry", "total"),
        default="expiry",
        help="expiry: the ages and per-session cap (default); total: max_total_events",
    )
    parser.add_argument(
        "--events",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1_000_000, 3_000_000],
        help="--dataset total: comma-separated sizes (default 1000000,3000000)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--total-events", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dataset == "total" and "--batch-size" not in sys.argv:
        args.batch_size = 100  # RetentionPolicy's default

    from bench.common import print_table, setup_django

    setup_django(args.db)
    if args.child:
        print(json.dumps(child_execute(args.batch_size, args.total_events)))
        return
    if args.dataset == "total":
        main_total(args)
        return

    from bench.settings import raw_dsn

    dsn = raw_dsn()
    rows = []
    for scale in (args.scale / 10, args.scale):
        sessions = max(40, round(SESSIONS_AT_SCALE_1 * scale))
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        events = generate(dsn, sessions, now)
        sql_seconds = run_set_based_sql(dsn, now)
        after_sql = table_counts(dsn)
        generate(dsn, sessions, now)
        ours = _child(args.db, args.batch_size)
        after_ours = table_counts(dsn)
        rows.append(
            [
                f"{sessions:,}",
                f"{events:,}",
                ours["seconds"],
                sql_seconds,
                ours["seconds"] / sql_seconds,
                ours["rss_mb"],
                f"{ours['batches']:,} (largest {ours['largest_batch']:,})",
                "yes" if after_ours == after_sql else f"NO: {after_ours} vs {after_sql}",
            ]
        )
        report = ours["report"]
    print_table(
        f"DjangoMaintenance.execute vs set-based SQL (PostgreSQL, batch_size={args.batch_size})",
        [
            "sessions",
            "events",
            "execute s",
            "raw SQL s",
            "ratio",
            "peak RSS MiB",
            "write batches",
            "same result",
        ],
        rows,
    )
    print(f"\nlast report: {json.dumps(report)}")
    print(
        f"peak RSS growth from {rows[0][1]} to {rows[1][1]} events: "
        f"{rows[1][5] - rows[0][5]:+.1f} MiB"
    )


if __name__ == "__main__":
    main()
