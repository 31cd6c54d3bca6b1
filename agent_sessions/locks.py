"""Overlap protection for maintenance runs: at most one at a time per database.

A cron job that overruns its interval must not start a second maintenance run
on the same data. :func:`maintenance_lock` takes a non-blocking, database-wide
lock for the duration of a ``with`` block and says whether it got it::

    with maintenance_lock("default") as acquired:
        if not acquired:
            return  # another run is working
        DjangoMaintenance("default").execute(policy)

How the lock is taken depends on the backend, and lives only here:

- PostgreSQL: ``pg_try_advisory_lock`` on a dedicated connection of its own,
  held (as a session-level lock) until the block ends. The maintenance work
  itself runs on Django's usual connection in short transactions, so the lock
  outlives every one of them; and if the process dies, PostgreSQL drops the
  connection and the lock with it.
- SQLite: an exclusive ``flock`` on a file next to the database file
  (``<database>.asm-maintenance.lock``); the operating system releases it
  when the process exits, however it exits.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from agent_sessions import models as m
from agent_sessions.db import db_for_write, translate_errors
from agent_sessions.errors import StorageError

__all__ = ["LOCK_NAME", "lock_file_path", "maintenance_lock"]

#: What the lock is called; it also seeds the PostgreSQL advisory lock key.
LOCK_NAME = "agent_sessions.maintenance"

#: The 64-bit advisory lock key: stable across processes and hosts, and
#: unlikely to collide with keys chosen by other applications on the database.
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True
)


@contextmanager
def maintenance_lock(using: str | None = None) -> Iterator[bool]:
    """Try to take the maintenance lock of a database for the duration of the block.

    Never waits: the block runs at once, with ``True`` when this process now
    holds the lock and ``False`` when another process holds it (the caller
    should then do nothing). The lock is released when the block ends.

    Args:
        using: Database alias; None follows the routers' choice for writes.

    Yields:
        Whether the lock was acquired.

    Raises:
        StorageError: the lock could not be attempted (database unreachable,
            lock file not creatable, or a backend other than PostgreSQL and
            SQLite).
    """
    alias = db_for_write(using, m.Session)
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with _advisory_lock(connection) as acquired:
            yield acquired
    elif connection.vendor == "sqlite":
        with _file_lock(lock_file_path(connection)) as acquired:
            yield acquired
    else:
        raise StorageError(
            "storage_error",
            f"maintenance locking supports PostgreSQL and SQLite, not {connection.vendor}",
            details={"operation": "maintenance_lock", "vendor": connection.vendor},
        )


@contextmanager
def _advisory_lock(connection: BaseDatabaseWrapper) -> Iterator[bool]:
    # A copy of the wrapper opens a connection of its own, in autocommit mode,
    # so no transaction of the maintenance work can release the lock early.
    dedicated = connection.copy()
    try:
        with translate_errors("maintenance_lock"), dedicated.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
            acquired = bool(cursor.fetchone()[0])
        try:
            yield acquired
        finally:
            if acquired:
                # Unlock explicitly: a pooled connection may outlive close().
                with translate_errors("maintenance_lock"), dedicated.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
    finally:
        dedicated.close()


def lock_file_path(connection: BaseDatabaseWrapper) -> Path:
    """The lock file used for a SQLite database: next to the database file.

    An in-memory database has no file; its lock lives in the temporary
    directory under a name derived from the database name.
    """
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or "mode=memory" in name:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"asm-maintenance-{digest}.lock"
    return Path(f"{name}.asm-maintenance.lock")


@contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    import fcntl  # POSIX only; imported here so the module loads everywhere

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(
            "storage_error",
            f"cannot create the maintenance lock file {path}: {exc}",
            details={"operation": "maintenance_lock", "path": str(path), "cause": str(exc)},
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
