"""Test settings on SQLite: a file database, so several processes can share it."""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import TEST_STATE_DIR

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(TEST_STATE_DIR / "agent_sessions.sqlite3"),
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL",
        },
        "TEST": {"NAME": str(TEST_STATE_DIR / "test_agent_sessions.sqlite3")},
    }
}
