"""Helpers shared by the maintenance tests: event logs, policies, real OS processes."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, connections

from agent_sessions import models as m
from agent_sessions.locks import ADVISORY_LOCK_KEY, lock_file_path
from agent_sessions.retention import RetentionPolicy
from tests.factories import EventFactory, SessionFactory, SessionSequenceFactory

UTC = dt.UTC
ROOT = Path(__file__).resolve().parent.parent


def days_ago(days: float) -> dt.datetime:
    return dt.datetime.now(UTC) - dt.timedelta(days=days)


def policy(**fields: Any) -> RetentionPolicy:
    """A policy that does nothing unless told: every age and cap off."""
    base: dict[str, Any] = {
        "max_completed_session_age_days": None,
        "hard_delete_after_days": None,
    }
    return RetentionPolicy(**{**base, **fields})


def event_log(session_id: str, types: Sequence[str], *, start: dt.datetime | None = None) -> None:
    """Store events of these types as the store would: numbered 1..n, one second apart,
    with the session's counter at n."""
    start = start or days_ago(1)
    for number, event_type in enumerate(types, start=1):
        EventFactory(
            session_id=session_id,
            type=event_type,
            sequence_number=number,
            timestamp=start + dt.timedelta(seconds=number),
        )
    SessionSequenceFactory(session_id=session_id, last_sequence=len(types))


def session_with_log(types: Sequence[str], **session_fields: Any) -> m.Session:
    session = SessionFactory(**session_fields)
    event_log(session.id, types)
    return session


def stored_types(session_id: str) -> list[str]:
    """The session's event types, in sequence order."""
    return list(
        m.Event.objects.filter(session_id=session_id)
        .order_by("sequence_number")
        .values_list("type", flat=True)
    )


def counts() -> dict[str, int]:
    """Rows per table: a fingerprint to show that nothing changed."""
    return {
        "sessions": m.Session.objects.count(),
        "soft_deleted": m.Session.objects.filter(deleted_at__isnull=False).count(),
        "runs": m.Run.objects.count(),
        "events": m.Event.objects.count(),
        "sequences": m.SessionSequence.objects.count(),
        "artifacts": m.Artifact.objects.count(),
    }


# --------------------------------------------------------------------------- the lock


def terminate_lock_backend() -> int:
    """Kill the PostgreSQL backend that holds the maintenance lock; return how many.

    Waits (up to 5 s) until it is gone, so its lock is released when this returns.
    """
    high, low = (ADVISORY_LOCK_KEY >> 32) & 0xFFFFFFFF, ADVISORY_LOCK_KEY & 0xFFFFFFFF
    killer = connections["default"].copy()
    try:
        with killer.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND classid = %s AND objid = %s AND objsubid = 1",
                [high, low],
            )
            return len(cursor.fetchall())
    finally:
        killer.close()


def lose_the_lock() -> None:
    """Take the lock away from this process as an operator's mishap would."""
    if connection.vendor == "postgresql":
        assert terminate_lock_backend() == 1
    else:
        os.unlink(lock_file_path(connection))


# --------------------------------------------------------------------------- processes

# Configures Django in a fresh interpreter exactly as the test run is
# configured, but on the test database (whose name only exists at run time).
_BOOTSTRAP = """
import importlib, os, sys
import django
from django.conf import settings
base = importlib.import_module(os.environ["ASM_CHILD_SETTINGS"])
values = {k: getattr(base, k) for k in dir(base) if k.isupper()}
values["DATABASES"]["default"]["NAME"] = os.environ["ASM_CHILD_DB"]
settings.configure(**values)
django.setup()
"""

_MANAGE = (
    _BOOTSTRAP
    + """
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""
)

# Holds the maintenance lock until its stdin closes; says "held" once it has it.
_HOLD_LOCK = (
    _BOOTSTRAP
    + """
from agent_sessions.locks import maintenance_lock
with maintenance_lock() as acquired:
    print("held" if acquired else "busy", flush=True)
    sys.stdin.read()
"""
)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ASM_CHILD_SETTINGS"] = settings.SETTINGS_MODULE
    env["ASM_CHILD_DB"] = str(connection.settings_dict["NAME"])
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_manage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py <args>`` in a new process on the test database."""
    return subprocess.run(
        [sys.executable, "-c", _MANAGE, *args],
        cwd=ROOT,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_lock_holder() -> subprocess.Popen[str]:
    """Start a process that takes the maintenance lock and holds it until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK],
        cwd=ROOT,
        env=_child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)
