"""Benchmark: archive + hard delete, then ``asm_restore``, and compare the five tables.

One command (PostgreSQL; the database is created if needed)::

    .venv/bin/python -m bench.bench_restore --scale 1   # 100,000 sessions, 1,000,000 events
    .venv/bin/python -m bench.bench_restore             # smoke run (scale 0.05)

The data is generated with ``COPY``: sessions soft-deleted 60 days ago (so a
``hard_delete_after_days=30`` policy deletes every one), 10 events, one run
and one sequence counter each, an artifact per ten sessions. Then, each in a
fresh process so that its peak RSS is its own:

1. ``DjangoMaintenance.execute`` with ``archive_before_prune`` archives and
   hard-deletes everything (batches of ``--batch-size`` sessions);
2. ``DjangoMaintenance.restore`` brings every archive file back.

Before and after, every row of the five tables is fingerprinted in SQL
(row count and the sum of a 64-bit hash of each row's text per table, an
order-independent digest of the whole table): the round trip is exact when
all five agree. Printed: rows compared, the times of both steps, and their
peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
from typing import Any

DEFAULT_DB = "asm_bench_restore"
SESSIONS_AT_SCALE_1 = 100_000
EVENTS_PER_SESSION = 10
TABLES = {
    "asm_sessions": "id",
    "asm_runs": "id",
    "asm_events": "id",
    "asm_session_sequences": "session_id",
    "asm_artifacts": "id",
}


def generate(dsn: str, sessions: int, now: dt.datetime) -> None:
    """Replace the tables' contents with the benchmark data set."""
    import psycopg

    recent = now - dt.timedelta(days=61)
    deleted = now - dt.timedelta(days=60)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        with conn.cursor() as cur:
            with cur.copy(
                "COPY asm_sessions (id, agent_id, status, metadata, context, tags, "
                "created_at, updated_at, deleted_at) FROM STDIN"
            ) as copy:
                for i in range(sessions):
                    stamp = recent - dt.timedelta(milliseconds=i)
                    copy.write_row(
                        (
                            f"ses_{i:08d}",
                            "agent",
                            "completed",
                            '{"k": 1}',
                            "{}",
                            "{a,b}",
                            stamp,
                            stamp,
                            deleted,
                        )
                    )
            with cur.copy(
                "COPY asm_runs (id, session_id, status, input, metadata, turn_count, "
                "token_usage, started_at, provider_metadata, cost_usd) FROM STDIN"
            ) as copy:
                for i in range(sessions):
                    copy.write_row(
                        (
                            f"run_{i:08d}",
                            f"ses_{i:08d}",
                            "completed",
                            '{"prompt": "hi"}',
                            "{}",
                            1,
                            '{"input_tokens": 3}',
                            recent,
                            "{}",
                            0.25,
                        )
                    )
            with cur.copy(
                "COPY asm_events (id, type, timestamp, session_id, run_id, sequence_number, "
                "data, metadata, schema_version) FROM STDIN"
            ) as copy:
                for i in range(sessions):
                    for n in range(1, EVENTS_PER_SESSION + 1):
                        copy.write_row(
                            (
                                f"evt_{i:08d}_{n:02d}",
                                "message_sent",
                                recent + dt.timedelta(seconds=n, microseconds=i),
                                f"ses_{i:08d}",
                                f"run_{i:08d}",
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
            with cur.copy(
                "COPY asm_artifacts (id, session_id, key, byte_size, checksum_sha256, "
                "storage_backend, storage_ref, metadata, created_at) FROM STDIN"
            ) as copy:
                for n, i in enumerate(range(0, sessions, 10)):
                    copy.write_row(
                        (
                            f"art_{n:016d}",
                            f"ses_{i:08d}",
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


def fingerprint(dsn: str) -> dict[str, list[Any]]:
    """Per table: row count and the sum of a 64-bit hash of every row's text."""
    import psycopg

    result: dict[str, list[Any]] = {}
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            count, digest = conn.execute(
                f"SELECT COUNT(*), COALESCE(SUM(hashtextextended(t::text, 0)), 0)::text "
                f"FROM {table} AS t"
            ).fetchone()  # type: ignore[misc]
            result[table] = [count, digest]
    return result


def _child(step: str, db: str, archive_dir: str, batch_size: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            *(sys.executable, "-m", "bench.bench_restore", "--child", step, "--db", db),
            *("--archive-dir", archive_dir, "--batch-size", str(batch_size)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def child(step: str, db: str, archive_dir: str, batch_size: int) -> dict[str, Any]:
    """Run one step in this (fresh) process; return its time and peak RSS."""
    import time
    from pathlib import Path

    from bench.common import peak_rss_mb, setup_django

    setup_django(db)
    from agent_sessions.maintenance import DjangoMaintenance
    from agent_sessions.retention import RetentionPolicy

    started = time.perf_counter()
    if step == "archive":
        policy = RetentionPolicy(
            max_completed_session_age_days=None,
            hard_delete_after_days=30,
            archive_before_prune=True,
            archive_store=archive_dir,
            batch_size=batch_size,
        )
        report = DjangoMaintenance().execute(policy)
        assert not report.errors, report.errors
        detail: dict[str, Any] = {"sessions_hard_deleted": report.sessions_hard_deleted}
    else:
        files = sorted(str(p) for p in Path(archive_dir).glob("asm-archive-*.jsonl"))
        restored = DjangoMaintenance().restore(files, batch_size=batch_size)
        detail = restored.to_dict()
        detail["files"] = len(files)
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **detail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--child", choices=["archive", "restore"])
    parser.add_argument("--archive-dir")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.db, args.archive_dir, args.batch_size)))
        return

    from bench.common import setup_django

    setup_django(args.db)  # before bench.settings is imported: it reads the name
    from bench.settings import raw_dsn

    dsn = raw_dsn()
    sessions = int(SESSIONS_AT_SCALE_1 * args.scale)
    generate(dsn, sessions, dt.datetime.now(dt.UTC).replace(tzinfo=None))
    before = fingerprint(dsn)
    rows = sum(count for count, _ in before.values())
    archive_dir = tempfile.mkdtemp(prefix="asm-bench-restore-")
    try:
        archived = _child("archive", args.db, archive_dir, args.batch_size)
        emptied = fingerprint(dsn)
        restored = _child("restore", args.db, archive_dir, args.batch_size)
        after = fingerprint(dsn)
        size = sum(p.stat().st_size for p in __import__("pathlib").Path(archive_dir).iterdir())
    finally:
        shutil.rmtree(archive_dir, ignore_errors=True)
    same = after == before
    print(
        f"\nRound trip, {sessions:,} sessions / {sessions * EVENTS_PER_SESSION:,} events "
        f"(batch size {args.batch_size}), {rows:,} rows in the five tables"
    )
    print(
        f"  archive + hard delete: {archived['seconds']} s, peak RSS "
        f"{archived['peak_rss_mb']} MiB, {archived['sessions_hard_deleted']:,} sessions; "
        f"rows left: {sum(c for c, _ in emptied.values())}; archive {size / 2**20:.0f} MiB"
    )
    print(
        f"  restore:               {restored['seconds']} s, peak RSS "
        f"{restored['peak_rss_mb']} MiB, {restored['records_read']:,} records from "
        f"{restored['files']} file(s), conflicts {restored['conflict_count']}"
    )
    print(f"  five tables equal before/after ({rows:,} rows compared): {same}")
    for table, (count, digest) in before.items():
        print(f"    {table}: {count} rows, before {digest} after {after[table][1]}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
