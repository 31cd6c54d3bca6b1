"""The primary/replica router of Django's multi-database documentation, as users write it."""

from __future__ import annotations

from typing import Any


class PrimaryReplicaRouter:
    """Reads go to the replica, writes to the primary (``default``)."""

    def db_for_read(self, model: type, **hints: Any) -> str:
        return "replica"

    def db_for_write(self, model: type, **hints: Any) -> str:
        return "default"

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        # Both aliases hold the same data.
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return True
