"""Django settings for the benchmarks (PostgreSQL; never the test database).

Each benchmark picks its own database with ``ASM_BENCH_DB`` (or its ``--db``
flag, which sets it before Django starts). Connection parameters follow the
test settings: ASM_PG_HOST, ASM_PG_PORT, ASM_PG_USER, ASM_PG_PASSWORD.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "tests.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("ASM_BENCH_DB", "asm_bench"),
        "USER": os.environ.get("ASM_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("ASM_PG_PASSWORD", ""),
        "HOST": os.environ.get("ASM_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("ASM_PG_PORT", "5432"),
    }
}


def raw_dsn() -> str:
    """A libpq connection string for the same database, for raw psycopg baselines."""
    db = DATABASES["default"]
    parts = [f"dbname={db['NAME']}", f"host={db['HOST']}", f"port={db['PORT']}"]
    parts.append(f"user={db['USER']}")
    if db["PASSWORD"]:
        parts.append(f"password={db['PASSWORD']}")
    return " ".join(parts)
