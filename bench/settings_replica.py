"""Benchmark settings behind the hot standby of ``scripts/replica.sh`` (issue #18).

``default`` as in :mod:`bench.settings`; ``replica`` the same database on the
standby's port (``ASM_REPLICA_PORT`` or the state file the script writes), and
the primary/replica router of Django's multi-database docs.
"""

from __future__ import annotations

from bench.settings import *  # noqa: F403
from bench.settings import DATABASES
from tests.settings_replica import _replica_port

DATABASES = {
    "default": DATABASES["default"],
    "replica": {**DATABASES["default"], "HOST": "127.0.0.1", "PORT": _replica_port()},
}
DATABASE_ROUTERS = ["tests.routers.PrimaryReplicaRouter"]
