"""Test settings on PostgreSQL (the local server; see scripts/test.sh).

Override with ASM_PG_HOST, ASM_PG_PORT, ASM_PG_USER, ASM_PG_PASSWORD and
ASM_PG_NAME (pytest-django creates and drops ``test_<name>``).
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("ASM_PG_NAME", "agent_sessions"),
        "USER": os.environ.get("ASM_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("ASM_PG_PASSWORD", ""),
        "HOST": os.environ.get("ASM_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("ASM_PG_PORT", "5432"),
    }
}
