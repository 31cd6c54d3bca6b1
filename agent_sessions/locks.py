"""Overlap protection for maintenance runs: at most one at a time per database.

A cron job that overruns its interval must not start a second maintenance run
on the same data. :func:`maintenance_lock` takes a non-blocking, database-wide
lock for the duration of a ``with`` block and says whether it got it::

    with maintenance_lock("default") as acquired:
        if not acquired:
            return  # another run is working
        DjangoMaintenance("default").execute(policy)

How the lock is taken depends on the backend, and lives only here:

- PostgreSQL: ``pg_try_advisory_xact_lock`` in a transaction that a
  dedicated connection keeps open until the block ends. The maintenance work
  itself runs on Django's usual connection in short transactions, so the lock
  outlives every one of them; and if the process dies, PostgreSQL drops the
  connection and the lock with it. Transaction-scoped, it works through a
  transaction-pooling proxy too (PgBouncer keeps the server connection for
  the whole transaction) and leaves nothing on a pooled connection.
- SQLite: an exclusive ``flock`` on a file next to the database file
  (``<database>.asm-maintenance.lock``); the operating system releases it
  when the process exits, however it exits.

A lock can be lost while a run works: the lock's connection dies (a
restart, ``pg_terminate_backend``, a network cut), or the lock file is
removed. Another run can then take it. :func:`hold_maintenance_lock` yields
a :class:`MaintenanceLock` whose :meth:`~MaintenanceLock.check` says whether
this process still holds it; :class:`~agent_sessions.maintenance.DjangoMaintenance`
checks it before every destructive batch and before its commit, and stops
the run with :class:`~agent_sessions.errors.MaintenanceLockLost`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.db import Error as DjangoError
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from agent_sessions import models as m
from agent_sessions.db import db_for_write, translate_errors
from agent_sessions.errors import MaintenanceLockLost, StorageError

__all__ = [
    "LOCK_NAME",
    "AdvisoryLockHolder",
    "MaintenanceLock",
    "hold_maintenance_lock",
    "lock_file_path",
    "maintenance_lock",
]

#: What the lock is called; it also seeds the PostgreSQL advisory lock key.
LOCK_NAME = "agent_sessions.maintenance"

#: The 64-bit advisory lock key: stable across processes and hosts, and
#: unlikely to collide with keys chosen by other applications on the database.
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True
)


@dataclass(frozen=True)
class AdvisoryLockHolder:
    """Which server transaction holds the PostgreSQL lock, as ``pg_locks`` shows it.

    With it a statement on another connection can check the lock itself
    (``asm_prune_oldest_events`` does, just before its commit), instead of a
    round trip on the lock's connection. The pid and the virtual transaction
    id together name the holding transaction; a new one has another id,
    even in a backend that reused the pid.
    """

    key: int
    pid: int
    transaction: str


class MaintenanceLock:
    """The maintenance lock as held by this process.

    Args:
        alias: The database alias the lock protects.
        still_held: Says whether the lock is still held (cheap: one query
            on the lock's own connection, or one ``stat``).
        holder: PostgreSQL: the transaction holding the lock (None elsewhere).
    """

    def __init__(
        self,
        alias: str,
        still_held: Callable[[], bool],
        holder: AdvisoryLockHolder | None = None,
    ) -> None:
        self.alias = alias
        self._still_held = still_held
        self.holder = holder
        self.lost = False

    def check(self) -> None:
        """Raise unless this process still holds the lock.

        Raises:
            MaintenanceLockLost: the lock's connection (or file) is gone, so
                another run may hold the lock now. Once lost, always lost.
        """
        if not self.lost:
            try:
                self.lost = not self._still_held()
            except Exception:  # a dead connection or file is a lost lock, whatever it raises
                self.lost = True
        if self.lost:
            raise MaintenanceLockLost(
                "lock_lost",
                f"the maintenance lock on database {self.alias!r} was lost (its connection "
                "or lock file went away); this run stopped so that no two runs work at once",
                details={"operation": "maintenance_lock", "alias": self.alias},
            )


@contextmanager
def hold_maintenance_lock(using: str | None = None) -> Iterator[MaintenanceLock | None]:
    """Try to take the maintenance lock; yield it, or None when another process holds it.

    Like :func:`maintenance_lock`, but the yielded :class:`MaintenanceLock`
    can be checked while the block runs.

    Raises:
        StorageError: the lock could not be attempted.
    """
    alias = db_for_write(using, m.Session)
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with _advisory_lock(connection) as held:
            yield None if held is None else MaintenanceLock(alias, *held)
    elif connection.vendor == "sqlite":
        with _file_lock(lock_file_path(connection)) as still_held:
            yield None if still_held is None else MaintenanceLock(alias, still_held)
    else:
        raise StorageError(
            "storage_error",
            f"maintenance locking supports PostgreSQL and SQLite, not {connection.vendor}",
            details={"operation": "maintenance_lock", "vendor": connection.vendor},
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
    with hold_maintenance_lock(using) as lock:
        yield lock is not None


# The advisory lock as pg_locks shows it: a bigint key is split into
# classid (high 32 bits) and objid (low 32 bits), with objsubid 1.
_HELD_SQL = """
    SELECT pid, virtualtransaction FROM pg_locks
    WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
      AND classid = %s AND objid = %s AND objsubid = 1
"""
_KEY_HIGH = (ADVISORY_LOCK_KEY >> 32) & 0xFFFFFFFF
_KEY_LOW = ADVISORY_LOCK_KEY & 0xFFFFFFFF


@contextmanager
def _advisory_lock(
    connection: BaseDatabaseWrapper,
) -> Iterator[tuple[Callable[[], bool], AdvisoryLockHolder] | None]:
    # A copy of the wrapper opens a connection of its own, so no transaction
    # of the maintenance work can release the lock early. The lock is
    # transaction-scoped and that connection keeps its transaction open for
    # as long as the lock is held: a transaction-pooling proxy (PgBouncer)
    # keeps a client's server connection for the whole transaction, so the
    # lock is taken, checked and released on one server connection, and
    # nothing is left on it afterwards. (A session-level lock would stay on
    # a pooled server connection that other clients then get.) The open
    # transaction reads nothing between statements, so it holds back no
    # vacuum; ``idle_in_transaction_session_timeout`` below the run's length
    # would end it, which the run notices as a lost lock.
    dedicated = connection.copy()

    def still_held() -> bool:
        with dedicated.cursor() as cursor:
            cursor.execute(_HELD_SQL, [_KEY_HIGH, _KEY_LOW])
            return cursor.fetchone() is not None

    try:
        with translate_errors("maintenance_lock"):
            dedicated.ensure_connection()
            dedicated.set_autocommit(False)
            with dedicated.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
                acquired = bool(cursor.fetchone()[0])
                if acquired:
                    cursor.execute(_HELD_SQL, [_KEY_HIGH, _KEY_LOW])
                    pid, transaction = cursor.fetchone()
        if not acquired:
            yield None
        else:
            yield still_held, AdvisoryLockHolder(ADVISORY_LOCK_KEY, pid, transaction)
    finally:
        # Ending the transaction releases the lock; a connection that died
        # took the lock with it.
        with contextlib.suppress(DjangoError):
            dedicated.rollback()
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
def _file_lock(path: Path) -> Iterator[Callable[[], bool] | None]:
    import fcntl  # POSIX only; imported here so the module loads everywhere

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(
            "storage_error",
            f"cannot create the maintenance lock file {path}: {exc}",
            details={"operation": "maintenance_lock", "path": str(path), "cause": str(exc)},
        ) from exc

    def still_held() -> bool:
        # Removed or replaced, the file another run opens is not the one we lock.
        try:
            return os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield still_held
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
