"""Test settings behind a real streaming replica (issue #18): see tests/test_replica_router.py.

Two aliases and the router from Django's multi-database documentation:
``default`` is the primary (as in ``settings_postgres``) and ``replica`` a hot
standby of it, made by ``scripts/replica.sh start`` (``scripts/test.sh`` starts
and stops it around this run). The standby is a physical copy: the test
database pytest-django creates on the primary streams to it by itself, so the
``replica`` alias names the same database on the standby's port and
``TEST["MIRROR"]`` only stops Django from trying to create it there (a hot
standby refuses writes). The standby's port comes from ``ASM_REPLICA_PORT`` or
from the state file the script writes.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from tests.settings import TEST_STATE_DIR
from tests.settings_postgres import *  # noqa: F403
from tests.settings_postgres import DATABASES


def _replica_port() -> str:
    if os.environ.get("ASM_REPLICA_PORT"):
        return os.environ["ASM_REPLICA_PORT"]
    state = TEST_STATE_DIR / "replica.env"
    if state.exists():
        for line in state.read_text().splitlines():
            name, _, value = line.partition("=")
            if name == "ASM_REPLICA_PORT" and value:
                return value
    raise ImproperlyConfigured(
        "tests.settings_replica needs the hot standby: run `bash scripts/replica.sh start` "
        f"(it writes {state}) or set ASM_REPLICA_PORT."
    )


DATABASES = {
    "default": DATABASES["default"],
    "replica": {
        **DATABASES["default"],
        "HOST": "127.0.0.1",
        "PORT": _replica_port(),
        "TEST": {"MIRROR": "default"},
    },
}

DATABASE_ROUTERS = ["tests.routers.PrimaryReplicaRouter"]
