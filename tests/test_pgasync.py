"""The PostgreSQL fast path's private connections never outlive their use.

Each scenario runs in a child process (``tests/pgasync_leak_child.py``), which
counts the server connections tagged with its own ``application_name`` in
``pg_stat_activity``: a leak shows as a connection still there while the child
is alive, which closing the process would hide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from django.db import connection

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def run_child(scenario: str) -> dict[str, int]:
    tag = f"asm-leak-{uuid.uuid4().hex[:12]}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.pgasync_leak_child",
            scenario,
            connection.settings_dict["NAME"],
            tag,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    counts: dict[str, int] = json.loads(result.stdout.strip().splitlines()[-1])
    return counts


def test_a_thread_calling_run_sync_repeatedly_leaves_no_connection() -> None:
    assert run_child("run_sync") == {
        "after_first_run_sync": 0,
        "after_second_run_sync": 0,
        "after_thread_exit": 0,
    }


def test_a_loop_closed_without_shutdown_asyncgens_leaves_no_connection() -> None:
    assert run_child("closed_loop") == {
        "while_loop_open": 1,
        "after_next_loop": 0,
        "after_thread_with_closed_loop_exits": 0,
    }
