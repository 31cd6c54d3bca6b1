"""Django settings for the SQLite benchmarks: a file named by ``ASM_BENCH_SQLITE``."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "tests.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ASM_BENCH_SQLITE", "asm_bench.sqlite3"),
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            # ASM_BENCH_SQLITE_TEMP_STORE=MEMORY: see docs/search.md ("SQLite: temp_store").
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL"
            + (
                f";PRAGMA temp_store={os.environ['ASM_BENCH_SQLITE_TEMP_STORE']}"
                if os.environ.get("ASM_BENCH_SQLITE_TEMP_STORE")
                else ""
            ),
        },
    }
}
