"""Helpers shared by the benchmarks: database set-up, timing, peak memory, tables."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any


def setup_django(db_name: str) -> None:
    """Create (if needed) and migrate ``db_name``, then set Django up against it."""
    os.environ["ASM_BENCH_DB"] = db_name
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    user = os.environ.get("ASM_PG_USER", "postgres")
    host = os.environ.get("ASM_PG_HOST", "127.0.0.1")
    port = os.environ.get("ASM_PG_PORT", "5432")
    exists = subprocess.run(
        [
            "psql",
            "-h",
            host,
            "-p",
            port,
            "-U",
            user,
            "-d",
            "postgres",
            "-Atqc",
            f"select 1 from pg_database where datname = '{db_name}'",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not exists:
        subprocess.run(["createdb", "-h", host, "-p", port, "-U", user, db_name], check=True)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def best_of(repeat: int, func: Callable[[], Any]) -> float:
    """The fastest of ``repeat`` runs of ``func``, in seconds (least disturbed by noise)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def median_of(repeat: int, func: Callable[[], Any]) -> float:
    """The median of ``repeat`` runs of ``func``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """Print an aligned plain-text table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if n else c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 100 else f"{value:,.0f}"
    return str(value)
