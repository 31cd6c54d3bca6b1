"""``manage.py load_demo_data`` (example project) fills a fresh database through the store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent

# The command runs in the example project against its own SQLite file, never
# the test database; once per suite is enough.
pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]


def manage(database: Path, *args: str) -> str:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": f"sqlite:///{database}",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def count(database: Path, table: str, where: str = "1 = 1") -> int:
    with sqlite3.connect(database) as db:
        return int(db.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0])


def test_load_demo_data_creates_sessions_and_loading_again_adds_nothing() -> None:
    database = Path(settings.TEST_STATE_DIR) / "demo-command.sqlite3"
    database.unlink(missing_ok=True)
    manage(database, "migrate", "--noinput", "-v", "0")

    output = manage(database, "load_demo_data", "--reset")
    first = {t: count(database, t) for t in ("asm_sessions", "asm_runs", "asm_events")}
    manage(database, "load_demo_data")

    assert "Loaded 20 sessions of 3 agents" in output
    assert first["asm_sessions"] == 20
    assert 20 * 9 <= first["asm_events"] <= 20 * 60
    assert {t: count(database, t) for t in first} == first
    assert count(database, "asm_sessions", "deleted_at IS NOT NULL") == 2
    assert count(database, "asm_sessions", "tags LIKE '%pinned%'") >= 2
    assert count(database, "asm_artifacts") > 0
    assert count(database, "asm_events", "type = 'tool_call_started'") > 0
    assert count(database, "asm_events", "type = 'error_occurred'") > 0
