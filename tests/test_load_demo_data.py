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


def run_manage(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": f"sqlite:///{database}",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def database_with_a_foreign_session(name: str) -> Path:
    database = Path(settings.TEST_STATE_DIR) / name
    database.unlink(missing_ok=True)
    manage(database, "migrate", "--noinput", "-v", "0")
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO asm_sessions (id, agent_id, status, metadata, context, tags, "
            "created_at, updated_at) VALUES ('ses_theirs', 'prod-agent', 'active', '{}', '{}', "
            "'[]', '2025-01-01 00:00:00', '2025-01-01 00:00:00')"
        )
        db.execute(
            "INSERT INTO asm_events (id, type, timestamp, session_id, sequence_number, data, "
            "metadata, schema_version) VALUES ('evt_theirs', 'message_sent', "
            "'2025-01-01 00:00:00', 'ses_rowless', 1, '{}', '{}', 1)"
        )
    return database


def test_the_demo_refuses_a_database_holding_sessions_it_did_not_create() -> None:
    database = database_with_a_foreign_session("demo-foreign.sqlite3")

    result = run_manage(database, "load_demo_data", "--reset")

    assert result.returncode == 1
    assert "holds 2 session(s) that the demo did not create" in result.stderr
    assert count(database, "asm_sessions") == 1
    assert count(database, "asm_events") == 1


def test_the_demo_reset_deletes_only_its_own_sessions() -> None:
    database = database_with_a_foreign_session("demo-beside.sqlite3")

    manage(database, "load_demo_data", "--reset", "--allow-other-data", "--sessions", "4")
    output = manage(database, "load_demo_data", "--reset", "--allow-other-data", "--sessions", "4")

    assert "Deleted the 4 demo session(s) of an earlier load." in output
    assert count(database, "asm_sessions") == 5
    assert count(database, "asm_sessions", "id = 'ses_theirs'") == 1
    assert count(database, "asm_events", "session_id = 'ses_rowless'") == 1


def test_the_demo_admin_is_created_only_when_missing() -> None:
    database = Path(settings.TEST_STATE_DIR) / "demo-admin.sqlite3"
    database.unlink(missing_ok=True)
    manage(database, "migrate", "--noinput", "-v", "0")

    created = manage(database, "demo_admin", "--username", "boss", "--password", "first")
    kept = manage(database, "demo_admin", "--username", "boss", "--password", "second")

    assert "Created superuser 'boss'" in created
    assert "left unchanged" in kept
    check = run_manage(
        database,
        "shell",
        "-c",
        "from django.contrib.auth import authenticate; "
        "print(bool(authenticate(username='boss', password='first')))",
    )
    assert check.stdout.strip().splitlines()[-1] == "True"
