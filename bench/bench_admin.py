"""Admin pages at two table sizes: the cost of a page must not grow with the tables.

Loads a small history (100 sessions, 1,000 events) and then a large one
(100,000 sessions, 1,000,000 events at ``--scale 1``) into its own PostgreSQL
database with ``COPY``, and at each size times, through Django's test client
logged in as a superuser, every admin changelist (first page and a filtered
page) and a session page. Next to each page it times the raw psycopg query
that fetches the same rows, on the same database in the same run.

Full run (the numbers in docs/admin.md; about five minutes on two cores)::

    .venv/bin/python -m bench.bench_admin --scale 1

Smoke run (the default scale is small)::

    .venv/bin/python -m bench.bench_admin

Options: ``--db NAME`` (default ``asm_bench_admin``), ``--scale F`` (large
size = F x 1,000,000 events; default 0.02), ``--repeat N`` (timings per page,
median reported; default 9). The target is large/small <= 2 for every page.

The generated history is shaped like real use (most sessions and runs
completed, ``message_sent`` a third of the events, an artifact per session),
which also means every page shows a full 50 rows at both sizes: the
comparison measures table size, not how many rows a page renders.

Each size is loaded into its own schema (``asm_bench_small``,
``asm_bench_large``: tables ``LIKE`` the migrated ones, same indexes), and the
pages are timed alternately on both (``search_path`` switched between
requests), so that load from other processes on the machine falls on both
sizes alike. The pages include the event search by an exact session id and
run id, and the conversation view (newest and oldest page).

Two more measurements (issue 14), on the large schema:

* payload size: the session page and the conversation view of a session of
  50 events of 1 MB each, against a session of 50 events of 200 bytes
  (target: big/small <= 2, and pages that stay small);
* export memory: a session of ``--export-events`` events (default 200,000)
  exported through the admin action in a fresh subprocess, whose peak RSS
  (``VmHWM``) must stay within 50 MiB of its idle RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

SMALL_SESSIONS = 100
SMALL_EVENTS = 1_000
LARGE_SESSIONS = 100_000
LARGE_EVENTS = 1_000_000
TABLES = ("asm_sessions", "asm_runs", "asm_events", "asm_session_sequences", "asm_artifacts")
BASE_TIME = dt.datetime(2025, 1, 1)
PAGE = 50  # the admin's list_per_page


@dataclass(frozen=True)
class PageCheck:
    """One admin page and the raw SQL that reads the same rows."""

    name: str
    url: str
    raw_sql: list[tuple[str, list[Any]]]


#: The sessions of the payload-size and export measurements (in the large schema).
BIG_PAYLOAD_SESSION = "ses_bench_big_payloads"
SMALL_PAYLOAD_SESSION = "ses_bench_small_payloads"
EXPORT_SESSION = "ses_bench_export"
BIG_PAYLOAD_BYTES = 1_000_000
PAYLOAD_EVENTS = 50
#: Peak RSS growth allowed while exporting (MiB).
EXPORT_RSS_LIMIT_MIB = 50


def session_id(n: int) -> str:
    return f"ses_{n:032x}"


def run_id(n: int) -> str:
    return f"run_{n:032x}"


# --------------------------------------------------------------------------- data


def load_history(dsn: str, schema: str, sessions: int, events: int) -> None:
    """Fill ``schema``'s copies of the asm_* tables with a generated history (COPY).

    Each size lives in its own schema with tables made ``LIKE`` the migrated
    ones (same columns and indexes), so both sizes can be timed in turn.
    """
    import psycopg
    from psycopg.types.json import Jsonb

    from agent_sessions.core import EventType, RunStatus, SessionStatus

    session_statuses = [s.value for s in SessionStatus]
    run_statuses = [s.value for s in RunStatus]
    event_types = [t.value for t in EventType]
    providers = ["claude", "codex", "amp"]
    per_session = max(1, events // sessions)
    payload = "lorem ipsum dolor sit amet " * 8  # ~200 bytes: JSON worth deferring

    def session_rows() -> Iterator[tuple[Any, ...]]:
        for n in range(sessions):
            created = BASE_TIME + dt.timedelta(seconds=n)
            deleted = created + dt.timedelta(days=1) if n % 20 == 0 else None
            yield (
                session_id(n),
                f"agent-{n % 50}",
                "completed" if n % 4 else session_statuses[n // 4 % len(session_statuses)],
                Jsonb({"customer": f"c{n % 997}", "notes": payload}),
                Jsonb({"system": payload}),
                ["bench", f"batch-{n % 10}"],
                created,
                created + dt.timedelta(minutes=5),
                deleted,
            )

    def run_rows() -> Iterator[tuple[Any, ...]]:
        for n in range(sessions):
            started = BASE_TIME + dt.timedelta(seconds=n, milliseconds=1)
            yield (
                run_id(n),
                session_id(n),
                "completed" if n % 4 else run_statuses[n // 4 % len(run_statuses)],
                Jsonb({"prompt": payload}),
                Jsonb({"answer": payload}),
                Jsonb({"tokens": [n % 100, n % 7]}),
                1 + n % 4,
                Jsonb({"input_tokens": 100 + n % 900, "output_tokens": 50 + n % 400}),
                started,
                started + dt.timedelta(seconds=30),
                providers[n % 3],
                Jsonb({"model": "claude-sonnet-4-5" if n % 3 == 0 else "default"}),
                None if n % 4 else 0.01,
            )

    def event_rows() -> Iterator[tuple[Any, ...]]:
        total = 0
        for n in range(sessions):
            count = per_session if n < sessions - 1 else events - total
            for seq in range(1, count + 1):
                yield (
                    f"evt_{total:032x}",
                    "message_sent" if seq % 3 == 0 else event_types[total % len(event_types)],
                    BASE_TIME + dt.timedelta(seconds=n, microseconds=seq),
                    session_id(n),
                    run_id(n),
                    seq,
                    Jsonb({"content": payload, "n": seq}),
                    Jsonb({"source": "bench"}),
                    1,
                    providers[n % 3],
                    f"corr-{n}-{seq // 4}",
                )
                total += 1

    def sequence_rows() -> Iterator[tuple[Any, ...]]:
        for n in range(sessions):
            count = per_session if n < sessions - 1 else events - per_session * (sessions - 1)
            yield (session_id(n), count, BASE_TIME)

    def artifact_rows() -> Iterator[tuple[Any, ...]]:
        for n in range(sessions):
            yield (
                f"art_{n:016d}",
                session_id(n),
                run_id(n),
                f"bench/{n}/report.txt",
                "text/plain",
                1024 + n,
                "0" * 64,
                "local" if n % 2 else "s3",
                f"/var/artifacts/{n}",
                Jsonb({"origin": "bench"}),
                BASE_TIME + dt.timedelta(seconds=n),
                BASE_TIME if n % 50 == 0 else None,
            )

    copies: list[tuple[str, Callable[[], Iterator[tuple[Any, ...]]]]] = [
        (
            "asm_sessions (id, agent_id, status, metadata, context, tags, created_at,"
            " updated_at, deleted_at)",
            session_rows,
        ),
        (
            "asm_runs (id, session_id, status, input, output, error, turn_count, token_usage,"
            " started_at, ended_at, provider, provider_metadata, cost_usd)",
            run_rows,
        ),
        (
            "asm_events (id, type, timestamp, session_id, run_id, sequence_number, data,"
            " metadata, schema_version, provider, correlation_id)",
            event_rows,
        ),
        ("asm_session_sequences (session_id, last_sequence, updated_at)", sequence_rows),
        (
            "asm_artifacts (id, session_id, run_id, key, content_type, byte_size,"
            " checksum_sha256, storage_backend, storage_ref, metadata, created_at, deleted_at)",
            artifact_rows,
        ),
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {schema}.{table}")
            conn.execute(f"CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)")
        for target, rows in copies:
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(f"COPY {schema}.{target} FROM STDIN") as copy,
            ):
                for row in rows():
                    copy.write_row(row)
        # Fresh statistics and visibility maps, as autovacuum would leave them.
        for table in TABLES:
            conn.execute(f"VACUUM ANALYZE {schema}.{table}")


def load_extra_sessions(dsn: str, schema: str, export_events: int) -> None:
    """Add the payload-size sessions and the export session to ``schema`` (COPY).

    The big-payload session's events each carry 1 MB of random hex (which
    TOAST barely compresses); the small one's the same shape at 200 bytes.
    The export session has ``export_events`` events of about 1 KB.
    """
    import secrets

    import psycopg
    from psycopg.types.json import Jsonb

    def payload_event(sid: str, seq: int, size: int) -> tuple[Any, ...]:
        kind = ("tool_call_started", "tool_call_completed")[seq % 2]
        data: dict[str, Any] = {"tool_name": "dump", "tool_call_id": f"c{seq // 2}"}
        if kind == "tool_call_completed":
            data["tool_output"] = secrets.token_hex(size // 2)
        else:
            data["tool_input"] = {"path": f"/tmp/{seq}", "blob": secrets.token_hex(size // 2)}
        return (
            f"evt_{sid}_{seq:06d}",
            kind,
            BASE_TIME + dt.timedelta(seconds=seq),
            sid,
            f"run_{sid}",
            seq,
            Jsonb(data),
            Jsonb({}),
            1,
            "claude",
            None,
        )

    def event_rows() -> Iterator[tuple[Any, ...]]:
        for seq in range(1, PAYLOAD_EVENTS + 1):
            yield payload_event(BIG_PAYLOAD_SESSION, seq, BIG_PAYLOAD_BYTES)
            yield payload_event(SMALL_PAYLOAD_SESSION, seq, 200)
        text = "lorem ipsum dolor sit amet, consectetur adipiscing elit " * 18  # ~1 KB
        for seq in range(1, export_events + 1):
            yield (
                f"evt_export_{seq:09d}",
                ("message_sent", "message_received")[seq % 2],
                BASE_TIME + dt.timedelta(milliseconds=seq),
                EXPORT_SESSION,
                f"run_{EXPORT_SESSION}",
                seq,
                Jsonb({"role": ("user", "assistant")[seq % 2], "content": text, "n": seq}),
                Jsonb({}),
                1,
                "claude",
                None,
            )

    sessions = (BIG_PAYLOAD_SESSION, SMALL_PAYLOAD_SESSION, EXPORT_SESSION)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sid in sessions:
            for table, column in (
                ("asm_events", "session_id"),
                ("asm_runs", "session_id"),
                ("asm_session_sequences", "session_id"),
                ("asm_sessions", "id"),
            ):
                conn.execute(f"DELETE FROM {schema}.{table} WHERE {column} = %s", [sid])
        with conn.transaction(), conn.cursor() as cur:
            for sid in sessions:
                cur.execute(
                    f"INSERT INTO {schema}.asm_sessions (id, agent_id, status, metadata, context,"
                    " tags, created_at, updated_at) VALUES (%s, 'bench', 'completed', '{}', '{}',"
                    " '{}', %s, %s)",
                    [sid, BASE_TIME, BASE_TIME],
                )
                cur.execute(
                    f"INSERT INTO {schema}.asm_runs (id, session_id, status, metadata, turn_count,"
                    " token_usage, started_at, provider, provider_metadata) VALUES (%s, %s,"
                    " 'completed', '{}', 1, '{}', %s, 'claude', '{}')",
                    [f"run_{sid}", sid, BASE_TIME],
                )
            with cur.copy(
                f"COPY {schema}.asm_events (id, type, timestamp, session_id, run_id,"
                " sequence_number, data, metadata, schema_version, provider, correlation_id)"
                " FROM STDIN"
            ) as copy:
                for row in event_rows():
                    copy.write_row(row)
        conn.execute(f"VACUUM ANALYZE {schema}.asm_events")


def admin_client() -> Any:
    """A test client logged in as a benchmark superuser."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def time_payload_pages(schema: str, repeat: int) -> list[list[Any]]:
    """Session page and conversation of the 1 MB-event session against the 200-byte one.

    Returns:
        Table rows: page, small ms, big ms, big/small, small KiB, big KiB.
    """
    import statistics
    import time

    from django.contrib.admin.utils import quote

    client = admin_client()
    use_schema(schema)
    pages = {
        "session page": "/admin/agent_sessions/session/{}/change/",
        "conversation": "/admin/agent_sessions/session/{}/conversation/",
    }
    rows = []
    for name, pattern in pages.items():
        times: dict[str, list[float]] = {"small": [], "big": []}
        sizes: dict[str, int] = {}
        for round_ in range(repeat + 1):
            for label, sid in (("small", SMALL_PAYLOAD_SESSION), ("big", BIG_PAYLOAD_SESSION)):
                start = time.perf_counter()
                response = client.get(pattern.format(quote(sid)))
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    raise SystemExit(f"{name} of {sid} answered {response.status_code}")
                sizes[label] = len(response.content)
                if round_:  # round 0 warms caches up
                    times[label].append(elapsed)
        small, big = statistics.median(times["small"]), statistics.median(times["big"])
        rows.append(
            [
                f"{name} ({PAYLOAD_EVENTS} events)",
                small * 1000,
                big * 1000,
                big / small,
                sizes["small"] / 1024,
                sizes["big"] / 1024,
            ]
        )
    return rows


def export_rss(db: str, schema: str) -> dict[str, Any]:
    """Export :data:`EXPORT_SESSION` through the admin action in a fresh process; its RSS.

    Returns:
        ``{"idle_mib", "peak_mib", "growth_mib", "bytes", "lines", "seconds"}``
        as printed by the ``--export-rss-child`` process.
    """
    import json
    import subprocess

    command = [sys.executable, "-m", "bench.bench_admin", "--db", db, "--export-rss-child", schema]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def export_rss_child(schema: str) -> None:
    """The subprocess of :func:`export_rss`: stream the export, print its memory as JSON."""
    import gc
    import json
    import time

    client = admin_client()
    use_schema(schema)
    # Warm up: the modules, templates and connection the export needs are loaded.
    client.get("/admin/agent_sessions/session/")
    gc.collect()
    idle = _proc_status_kib("VmRSS")
    start = time.perf_counter()
    response = client.post(
        "/admin/agent_sessions/session/?deleted=all",
        {"action": "export_sessions_json", "_selected_action": [EXPORT_SESSION]},
    )
    if response.status_code != 200 or not response.streaming:
        raise SystemExit(f"export answered {response.status_code}")
    size = lines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
    peak = _proc_status_kib("VmHWM")
    print(
        json.dumps(
            {
                "idle_mib": idle / 1024,
                "peak_mib": peak / 1024,
                "growth_mib": (peak - idle) / 1024,
                "bytes": size,
                "lines": lines,
                "seconds": time.perf_counter() - start,
            }
        )
    )


# --------------------------------------------------------------------------- pages


def page_checks(sessions: int) -> list[PageCheck]:
    """Every changelist (first page, a filtered page) and a session page."""
    from django.contrib.admin.utils import quote

    target = session_id(sessions // 2 + 1)
    target_run = run_id(sessions // 2 + 1)
    admin = "/admin/agent_sessions"
    session_cols = "id, agent_id, status, tags, created_at, updated_at, deleted_at"
    run_cols = "id, session_id, status, provider, token_usage, cost_usd, started_at, ended_at"
    event_cols = (
        "id, type, session_id, run_id, sequence_number, timestamp, provider, correlation_id"
    )
    artifact_cols = (
        "id, key, session_id, content_type, byte_size, storage_backend, created_at, deleted_at"
    )
    return [
        PageCheck(
            "sessions",
            f"{admin}/session/",
            [
                (
                    f"SELECT {session_cols} FROM asm_sessions WHERE deleted_at IS NULL"
                    " ORDER BY created_at DESC, id DESC LIMIT %s",
                    [PAGE],
                )
            ],
        ),
        PageCheck(
            "sessions ?status=completed",
            f"{admin}/session/?status=completed",
            [
                (
                    f"SELECT {session_cols} FROM asm_sessions WHERE status = 'completed'"
                    " AND deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT %s",
                    [PAGE],
                )
            ],
        ),
        PageCheck(
            "runs",
            f"{admin}/run/",
            [
                (
                    f"SELECT {run_cols} FROM asm_runs ORDER BY started_at DESC, id DESC LIMIT %s",
                    [PAGE],
                )
            ],
        ),
        PageCheck(
            "runs ?status=completed",
            f"{admin}/run/?status=completed",
            [
                (
                    f"SELECT {run_cols} FROM asm_runs WHERE status = 'completed'"
                    " ORDER BY started_at DESC, id DESC LIMIT %s",
                    [PAGE],
                )
            ],
        ),
        PageCheck(
            "events",
            f"{admin}/event/",
            [
                (
                    f"SELECT {event_cols} FROM asm_events"
                    ' ORDER BY "timestamp" DESC, id DESC LIMIT %s',
                    [PAGE],
                )
            ],
        ),
        PageCheck(
            "events ?type=message_sent",
            f"{admin}/event/?type=message_sent",
            [
                (
                    f"SELECT {event_cols} FROM asm_events WHERE type = 'message_sent'"
                    ' ORDER BY "timestamp" DESC, id DESC LIMIT %s',
                    [PAGE],
                )
            ],
        ),
        PageCheck(
            "events ?session_id=…",
            f"{admin}/event/?session_id={target}",
            [
                (
                    f"SELECT {event_cols} FROM asm_events WHERE session_id = %s"
                    " ORDER BY sequence_number DESC LIMIT %s",
                    [target, PAGE],
                )
            ],
        ),
        PageCheck(
            "events ?q=<session id>",
            f"{admin}/event/?q={target}",
            [
                (
                    f"SELECT {event_cols} FROM asm_events WHERE session_id = %s"
                    " ORDER BY sequence_number DESC LIMIT %s",
                    [target, PAGE],
                )
            ],
        ),
        PageCheck(
            "events ?q=<run id>",
            f"{admin}/event/?q={target_run}",
            [
                (
                    f"SELECT {event_cols} FROM asm_events WHERE run_id = %s"
                    ' ORDER BY "timestamp" DESC, id DESC LIMIT %s',
                    [target_run, PAGE],
                )
            ],
        ),
        PageCheck(
            "artifacts",
            f"{admin}/artifact/",
            [
                (
                    f"SELECT {artifact_cols} FROM asm_artifacts"
                    " ORDER BY created_at DESC, id DESC LIMIT %s",
                    [PAGE],
                )
            ],
        ),
        PageCheck(
            "artifacts ?deleted=no",
            f"{admin}/artifact/?deleted=no",
            [
                (
                    f"SELECT {artifact_cols} FROM asm_artifacts WHERE deleted_at IS NULL"
                    " ORDER BY created_at DESC, id DESC LIMIT %s",
                    [PAGE],
                )
            ],
        ),
        PageCheck(
            "session page",
            f"{admin}/session/{quote(target)}/change/",
            [
                ("SELECT * FROM asm_sessions WHERE id = %s", [target]),
                (
                    "SELECT id, type, timestamp, sequence_number, run_id, provider, data"
                    " FROM asm_events WHERE session_id = %s"
                    " ORDER BY sequence_number DESC LIMIT 51",
                    [target],
                ),
                (
                    "SELECT id, status, provider, token_usage, cost_usd, started_at, ended_at"
                    " FROM asm_runs WHERE session_id = %s ORDER BY started_at DESC LIMIT 51",
                    [target],
                ),
            ],
        ),
        PageCheck(
            "conversation (newest)",
            f"{admin}/session/{quote(target)}/conversation/",
            [conversation_sql(target, "DESC")],
        ),
        PageCheck(
            "conversation ?after=0",
            f"{admin}/session/{quote(target)}/conversation/?after=0",
            [conversation_sql(target, "ASC")],
        ),
    ]


def conversation_sql(target: str, direction: str) -> tuple[str, list[Any]]:
    """The raw query behind one conversation page (bounded previews included)."""
    return (
        "SELECT id, type, timestamp, sequence_number, run_id, provider, left(data::text, 4000)"
        f" FROM asm_events WHERE session_id = %s ORDER BY sequence_number {direction} LIMIT 51",
        [target],
    )


def use_schema(schema: str) -> None:
    """Point Django's connection at one size's tables (auth tables stay in public)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SET search_path TO {schema}, public")


def time_pages(
    dsn: str, checks: dict[str, list[PageCheck]], repeat: int
) -> dict[str, dict[str, tuple[float, float]]]:
    """Median seconds per size and page: (admin through the test client, raw psycopg).

    Sizes are timed in turn, page by page, so that load from other processes
    on the machine falls on both alike.
    """
    import statistics
    import time

    import psycopg
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    raw_conns = {}
    for schema in checks:
        raw_conns[schema] = psycopg.connect(dsn, autocommit=True)
        raw_conns[schema].execute(f"SET search_path TO {schema}, public")

    def admin_get(schema: str, check: PageCheck) -> float:
        use_schema(schema)
        start = time.perf_counter()
        response = client.get(check.url)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise SystemExit(f"{schema}: {check.url} answered {response.status_code}")
        return elapsed

    def raw_get(schema: str, check: PageCheck) -> float:
        start = time.perf_counter()
        for sql, params in check.raw_sql:
            raw_conns[schema].execute(sql, params).fetchall()
        return time.perf_counter() - start

    samples: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    try:
        for round_ in range(repeat + 1):
            for position in range(len(next(iter(checks.values())))):
                for schema, schema_checks in checks.items():
                    check = schema_checks[position]
                    admin_time, raw_time = admin_get(schema, check), raw_get(schema, check)
                    if round_:  # round 0 warms caches up
                        admin_times, raw_times = samples.setdefault((schema, check.name), ([], []))
                        admin_times.append(admin_time)
                        raw_times.append(raw_time)
    finally:
        for conn in raw_conns.values():
            conn.close()
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for (schema, name), (admin_times, raw_times) in samples.items():
        results.setdefault(schema, {})[name] = (
            statistics.median(admin_times),
            statistics.median(raw_times),
        )
    return results


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", default="asm_bench_admin", help="benchmark database name")
    parser.add_argument(
        "--scale", type=float, default=0.02, help="large size = scale x 1,000,000 events"
    )
    parser.add_argument("--repeat", type=int, default=9, help="timings per page (median)")
    parser.add_argument(
        "--export-events",
        type=int,
        default=200_000,
        help="events of the session whose export memory is measured",
    )
    parser.add_argument("--export-rss-child", metavar="SCHEMA", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench.common import print_table, setup_django

    setup_django(args.db)
    if args.export_rss_child:
        export_rss_child(args.export_rss_child)
        return 0
    from bench.settings import raw_dsn

    dsn = raw_dsn()
    large_sessions = max(SMALL_SESSIONS, int(LARGE_SESSIONS * args.scale))
    large_events = max(SMALL_EVENTS, int(LARGE_EVENTS * args.scale))
    sizes = [("small", SMALL_SESSIONS, SMALL_EVENTS), ("large", large_sessions, large_events)]

    checks: dict[str, list[PageCheck]] = {}
    for label, sessions, events in sizes:
        print(f"loading {label}: {sessions:,} sessions, {events:,} events …", flush=True)
        load_history(dsn, f"asm_bench_{label}", sessions, events)
        checks[f"asm_bench_{label}"] = page_checks(sessions)
    print(
        f"loading 50 x 1 MB events and a {args.export_events:,}-event session (large) …",
        flush=True,
    )
    load_extra_sessions(dsn, "asm_bench_large", args.export_events)
    print("timing …", flush=True)
    by_schema = time_pages(dsn, checks, args.repeat)
    timings = {label: by_schema[f"asm_bench_{label}"] for label, _, _ in sizes}

    rows = []
    worst = 0.0
    for name in timings["small"]:
        admin_small, raw_small = timings["small"][name]
        admin_large, raw_large = timings["large"][name]
        ratio = admin_large / admin_small
        worst = max(worst, ratio)
        rows.append(
            [
                name,
                admin_small * 1000,
                admin_large * 1000,
                ratio,
                raw_small * 1000,
                raw_large * 1000,
                raw_large / raw_small,
                admin_large / raw_large,
            ]
        )
    print_table(
        f"Admin pages, median of {args.repeat} (ms); small = {SMALL_SESSIONS:,} sessions / "
        f"{SMALL_EVENTS:,} events, large = {large_sessions:,} / {large_events:,}",
        [
            "page",
            "admin small",
            "admin large",
            "large/small",
            "psycopg small",
            "psycopg large",
            "psycopg l/s",
            "admin/psycopg (large)",
        ],
        rows,
    )
    verdict = "PASS" if worst <= 2 else "FAIL"
    print(f"\nworst admin large/small ratio: {worst:.2f} (target <= 2): {verdict}")

    payload_rows = time_payload_pages("asm_bench_large", args.repeat)
    print()
    print_table(
        f"Payload size, median of {args.repeat} (ms): {PAYLOAD_EVENTS} events of 200 bytes"
        f" (small) vs {PAYLOAD_EVENTS} events of {BIG_PAYLOAD_BYTES // 1_000_000} MB (big)",
        ["page", "small ms", "big ms", "big/small", "small KiB", "big KiB"],
        payload_rows,
    )
    worst_payload = max(row[3] for row in payload_rows)
    payload_ok = worst_payload <= 2
    print(
        f"\nworst big/small payload ratio: {worst_payload:.2f} (target <= 2): "
        f"{'PASS' if payload_ok else 'FAIL'}"
    )

    rss = export_rss(args.db, "asm_bench_large")
    rss_ok = rss["growth_mib"] <= EXPORT_RSS_LIMIT_MIB
    print(
        f"\nexport of {args.export_events:,} events ({rss['lines']:,} lines, "
        f"{rss['bytes'] / 2**20:.1f} MiB streamed in {rss['seconds']:.1f} s): "
        f"idle RSS {rss['idle_mib']:.1f} MiB, peak {rss['peak_mib']:.1f} MiB, "
        f"growth {rss['growth_mib']:.1f} MiB (target <= {EXPORT_RSS_LIMIT_MIB}): "
        f"{'PASS' if rss_ok else 'FAIL'}"
    )
    return 0 if worst <= 2 and payload_ok and rss_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
