"""Benchmark the SSE stream of ``agent_sessions.urls`` under uvicorn on loopback (PostgreSQL).

    .venv/bin/python -m bench.bench_stream                       # 1,000 streams, 100 sessions
    .venv/bin/python -m bench.bench_stream --streams 200 --sessions 20
    .venv/bin/python -m bench.bench_stream --conn-max-age 0 --pgbouncer   # behind PgBouncer

One uvicorn process serves ``tests.asgi:application`` on the benchmark
database (``asm_bench_stream`` unless ``--db``). This process opens
``--streams`` concurrent streams spread evenly over ``--sessions`` sessions
(raw asyncio sockets, so the client costs little), and measures:

1. **Idle cost**: with every stream open and nothing to send, the database
   connections the server holds (peak of ``pg_stat_activity`` sampled for
   ``--idle-seconds``; target ≤ 3), its thread count (target: not growing
   per stream) and its resident memory per idle stream.
2. **Fan-out latency**: another process appends one event to each session,
   ``--spacing-ms`` apart, and records each commit time; every client records
   when the event's frame arrives. Latency = arrival - commit, over all
   clients (target: median < 100 ms, p99 < 500 ms).
3. **Clean-up**: the clients disconnect; how long until the server has no
   open stream, and the connections it holds afterwards.

With ``--pgbouncer`` the server reaches the database through a PgBouncer in
transaction mode (started on a free port, as the tests do) and its listener
through a ``direct`` alias (``DIRECT_DATABASE``, docs/deploying.md);
connections are then reported as direct + PgBouncer server connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import print_table, setup_django

ROOT = Path(__file__).resolve().parent.parent


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _server_connections() -> tuple[int, int]:
    """The server's connections to the benchmark database: (direct, through PgBouncer).

    Without ``--pgbouncer`` every connection is direct. With it, the second
    number is PgBouncer's server connections that the server's clients used.
    """
    from tests.api_support import SERVER_APP, SERVER_DIRECT_APP, server_db_connections

    pooled = server_db_connections(SERVER_APP)
    direct = server_db_connections(SERVER_DIRECT_APP)
    return (direct, pooled) if _PGBOUNCER else (pooled + direct, 0)


#: Set by ``--pgbouncer``.
_PGBOUNCER = False


class StreamClient:
    """One SSE connection on a raw socket; notes when a frame with ``id: 1`` arrives."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.arrived: float | None = None
        self.buffer = b""
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, port: int) -> asyncio.StreamReader:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        path = f"/agent-sessions/sessions/{self.session_id}/events/stream"
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        self.writer.write(request.encode())
        await self.writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"stream refused: {head[:200]!r}")
        return reader

    async def read(self, reader: asyncio.StreamReader) -> None:
        while self.arrived is None:
            chunk = await reader.read(65536)
            if not chunk:
                return
            self.buffer = (self.buffer + chunk)[-4096:]
            if b"id: 1\n" in self.buffer:
                self.arrived = time.time()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _sample_connections(seconds: float) -> dict[str, int]:
    """Peak connections over ``seconds``: total, and direct / through PgBouncer."""
    peak = {"total": 0, "direct": 0, "pgbouncer": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        direct, pooled = _server_connections()
        peak["total"] = max(peak["total"], direct + pooled)
        peak["direct"] = max(peak["direct"], direct)
        peak["pgbouncer"] = max(peak["pgbouncer"], pooled)
        time.sleep(0.1)
    return peak


def _connections(peak: dict[str, int]) -> str:
    if not _PGBOUNCER:
        return str(peak["total"])
    return f"{peak['total']} ({peak['direct']} direct + {peak['pgbouncer']} PgBouncer)"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connection

    from agent_sessions.core import Session
    from agent_sessions.store import DjangoSessionStore
    from tests.api_support import AsgiServer, wait_until

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # uvicorn inherits it too
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE asm_events, asm_session_sequences, asm_sessions, asm_runs")
    store = DjangoSessionStore()
    sessions = [Session.new("bench-stream") for _ in range(args.sessions)]
    for session in sessions:
        store.save_session(session)
    connection.close()

    bouncer = None
    if args.pgbouncer:
        from tests.pgbouncer import start_pgbouncer

        bouncer = start_pgbouncer()
    server = AsgiServer(
        agent_sessions={"API_PERMISSION": "tests.api_support.allow_all", **args.settings},
        conn_max_age=args.conn_max_age,
        pgbouncer_port=None if bouncer is None else bouncer.port,
    )
    server.start()
    results: dict[str, Any] = {"streams": args.streams, "sessions": args.sessions}
    try:
        pid = server.stats()["pid"]
        results["threads_before"] = server.stats()["threads"]
        results["connections_before"] = _sample_connections(0.5)

        async def scenario() -> None:
            # Warm-up: one stream through every code path, so that imports and
            # first-use allocations are not counted as per-stream memory.
            warm = StreamClient(sessions[0].id)
            await warm.open(server.port)
            await asyncio.sleep(0.5)
            warm.close()
            await asyncio.to_thread(
                wait_until, lambda: server.stats()["open_streams"] == 0, timeout=10
            )
            rss_before = _rss_kib(pid)
            clients = [StreamClient(sessions[i % args.sessions].id) for i in range(args.streams)]
            readers: list[asyncio.Task[None]] = []
            start = time.monotonic()
            for first in range(0, len(clients), 100):
                batch = clients[first : first + 100]
                opened = await asyncio.gather(*(c.open(server.port) for c in batch))
                readers.extend(
                    asyncio.create_task(c.read(r)) for c, r in zip(batch, opened, strict=True)
                )
            all_open = await asyncio.to_thread(
                wait_until,
                lambda: server.stats()["open_streams"] >= args.streams,
                timeout=120,
            )
            if not all_open:
                raise RuntimeError(f"only {server.stats()['open_streams']} streams opened")
            results["open_seconds"] = time.monotonic() - start
            await asyncio.sleep(1.0)
            results["idle_connections"] = await asyncio.to_thread(
                _sample_connections, args.idle_seconds
            )
            stats = await asyncio.to_thread(server.stats)
            results["threads_idle"] = stats["threads"]
            results["rss_per_stream_kib"] = (_rss_kib(pid) - rss_before) / args.streams

            # Behind PgBouncer the writer appends through it too (its NOTIFY included).
            writer_env = dict(os.environ)
            if bouncer is not None:
                writer_env["ASM_PG_PORT"] = str(bouncer.port)
            writer = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.bench_stream", "--write",
                "--db", args.db, "--spacing-ms", str(args.spacing_ms),
                *[s.id for s in sessions],
                stdout=subprocess.PIPE, cwd=ROOT, env=writer_env,
            )  # fmt: skip
            peak_task = asyncio.create_task(asyncio.to_thread(_sample_connections, 3.0))
            out, _ = await writer.communicate()
            commits: dict[str, float] = json.loads(out)
            await asyncio.wait_for(asyncio.gather(*readers), timeout=60)
            results["fanout_connections"] = await peak_task
            results["threads_fanout"] = (await asyncio.to_thread(server.stats))["threads"]
            latencies = [
                (c.arrived - commits[c.session_id]) * 1000 for c in clients if c.arrived is not None
            ]
            results["delivered"] = len(latencies)
            results["latency_ms"] = {
                "median": statistics.median(latencies),
                "p99": _percentile(latencies, 0.99),
                "max": max(latencies),
            }
            closed_at = time.monotonic()
            for client in clients:
                client.close()
            drained = await asyncio.to_thread(
                wait_until, lambda: server.stats()["open_streams"] == 0, timeout=30
            )
            results["drain_seconds"] = time.monotonic() - closed_at if drained else None
            results["connections_after"] = await asyncio.to_thread(_sample_connections, 1.0)

        asyncio.run(scenario())
    finally:
        server.stop()
        if bouncer is not None:
            bouncer.stop()
        connection.close()
    return results


def write(args: argparse.Namespace) -> None:
    """Writer mode: append one event to each session, print ``{session_id: commit time}``."""
    import django

    django.setup()
    from agent_sessions.core import Event
    from agent_sessions.store import DjangoSessionStore

    store = DjangoSessionStore()
    commits = {}
    for session_id in args.session_ids:
        store.append_event(Event.new("message_sent", session_id, data={"text": "ping"}))
        commits[session_id] = time.time()
        time.sleep(args.spacing_ms / 1000)
    print(json.dumps(commits))


def _seconds(value: float | None) -> str:
    return "not within 30 s" if value is None else f"{value:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--spacing-ms", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--db", default="asm_bench_stream")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=60,
        help="the server's CONN_MAX_AGE (0: a new connection per read, Django's default)",
    )
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="serve through a PgBouncer in transaction mode (started on a free port), with "
        "DIRECT_DATABASE pointing the listener at PostgreSQL itself",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="extra AGENT_SESSIONS for the server, e.g. WAIT_POLL_INTERVAL_SECONDS=0.5",
    )
    parser.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("session_ids", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        os.environ["ASM_BENCH_DB"] = args.db
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
        write(args)
        return
    args.settings = {}
    for item in args.setting:
        key, _, value = item.partition("=")
        args.settings[key] = json.loads(value)
    global _PGBOUNCER
    _PGBOUNCER = args.pgbouncer
    setup_django(args.db)
    results = run(args)
    latency = results["latency_ms"]
    print_table(
        f"SSE streams under uvicorn: {args.streams} streams over {args.sessions} sessions "
        f"(PostgreSQL{' through PgBouncer (transaction mode)' if args.pgbouncer else ''}, "
        f"loopback, CONN_MAX_AGE={args.conn_max_age})",
        ["measure", "result", "target"],
        [
            ["DB connections held, idle (peak)", _connections(results["idle_connections"]), "<= 3"],
            [
                "server threads: before / idle / fan-out",
                f"{results['threads_before']} / {results['threads_idle']} / "
                f"{results['threads_fanout']}",
                "not per stream",
            ],
            ["memory per idle stream (RSS)", f"{results['rss_per_stream_kib']:.1f} KiB", ""],
            ["time to open all streams", f"{results['open_seconds']:.2f} s", ""],
            ["events delivered", f"{results['delivered']} / {args.streams}", "all"],
            ["latency commit -> client, median", f"{latency['median']:.1f} ms", "< 100 ms"],
            ["latency p99", f"{latency['p99']:.1f} ms", "< 500 ms"],
            ["latency max", f"{latency['max']:.1f} ms", ""],
            [
                "DB connections during fan-out (peak)",
                _connections(results["fanout_connections"]),
                "",
            ],
            ["streams gone after clients left", _seconds(results["drain_seconds"]), ""],
            ["DB connections after", _connections(results["connections_after"]), ""],
        ],
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
