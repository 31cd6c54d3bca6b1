"""One maintenance run, and the mechanics every maintenance step shares.

A :class:`MaintenanceRun` is made by
:meth:`~agent_sessions.maintenance.DjangoMaintenance.execute` for all its
steps, or by a public step called on its own, and passed explicitly to every
step and batch. :class:`BatchedSteps` is the base of ``DjangoMaintenance``
and of its row-deleting steps (:class:`~agent_sessions.sweeps.SessionSweeps`;
:class:`~agent_sessions.pruning.EventPruning` declares what it uses of it):
it walks a table in keyset batches, runs each batch as one short write
transaction under the run's lock, and reports progress.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import Exists, OuterRef, QuerySet

from agent_sessions import models as m
from agent_sessions.archive import ArchiveWriter
from agent_sessions.db import db_for_write, sqlstate, translate_errors, write_block
from agent_sessions.errors import ValidationError
from agent_sessions.locks import AdvisoryLockHolder, MaintenanceLock
from agent_sessions.retention import RetentionPolicy
from agent_sessions.telemetry import count_maintenance_batch
from agent_sessions.validation import utcnow

__all__ = ["BatchedSteps", "MaintenanceProgress", "MaintenanceRun", "check_policy"]

#: What a statement that checks the maintenance lock itself fails with once it is lost
#: (``asm_prune_oldest_events``, migration 0008).
LOCK_LOST_SQLSTATE = "AS001"

#: ``progress(step, rows_in_batch, step_total_so_far)``, called after every batch.
MaintenanceProgress = Callable[[str, int, int], None]


@dataclass
class MaintenanceRun:
    """One maintenance run, passed explicitly to every step and batch.

    ``DjangoMaintenance.execute`` makes one for all its steps; a public step
    called on its own makes its own, so each step behaves the same inside
    and outside ``execute()``.
    """

    now: datetime
    dry_run: bool
    archive: ArchiveWriter | None
    batch_size: int
    # In a dry run of execute(): sessions deleted before this moment count as
    # already hard-deleted when pruning is estimated.
    hard_delete_cutoff: datetime | None = None
    # Rows each step has committed so far, for the message when it fails later.
    done: dict[str, int] = field(default_factory=dict)
    # The maintenance lock the run holds: checked before each batch and its commit.
    lock: MaintenanceLock | None = None


class BatchedSteps:
    """Keyset batches, short write transactions and progress reports for the steps.

    The subclass sets :attr:`using` (a database alias or None for the
    routers) and :attr:`progress`.
    """

    using: str | None
    progress: MaintenanceProgress | None

    @property
    def alias(self) -> str:
        """The database alias this instance works on."""
        return db_for_write(self.using, m.Session)

    def _hard_deletable(self, cutoff: datetime) -> Exists:
        return Exists(self._sessions().filter(id=OuterRef("session_id"), deleted_at__lt=cutoff))

    def _batches(self, queryset: QuerySet[Any], key: str, batch_size: int) -> Iterator[list[str]]:
        """Yield the keys of ``queryset`` in ascending batches (keyset paging, no OFFSET)."""
        last: str | None = None
        while True:
            page = queryset if last is None else queryset.filter(**{f"{key}__gt": last})
            with translate_errors("maintenance"):
                keys = list(page.order_by(key).values_list(key, flat=True)[:batch_size])
            if not keys:
                return
            yield keys
            if len(keys) < batch_size:
                return
            last = keys[-1]

    def _sweep(
        self,
        run: MaintenanceRun,
        step: str,
        queryset: QuerySet[Any],
        key: str,
        change: Callable[[list[str]], int],
    ) -> int:
        """Walk ``queryset`` in batches of keys and ``change`` each one; return the total.

        ``change(keys)`` does the batch's work (in its own transaction) and
        says how many rows it changed; a dry run counts the keys instead.
        Progress is reported after every batch.
        """
        total = 0
        for keys in self._batches(queryset, key, run.batch_size):
            total += len(keys) if run.dry_run else change(keys)
            self._report(run, step, len(keys), total)
        return total

    @contextmanager
    def _write(
        self, run: MaintenanceRun, operation: str, *, async_commit: bool = True
    ) -> Iterator[None]:
        """One short write transaction of ``run``, errors translated.

        The run's lock (when it holds one) is checked before the batch and
        again before its commit: a batch of a run that lost its lock rolls
        back instead of committing next to another run.

        SQLite: the write lock is taken first, so the batch queues behind
        appends instead of failing. PostgreSQL: the commit does not wait for
        its WAL flush (``SET LOCAL synchronous_commit = off``: this
        transaction only, safe behind a transaction pooler; ``async_commit``
        False leaves that to the batch's own statement). A crash can
        then forget the last few batches, never corrupt anything: the rows
        are simply deleted again by the next run (an archive is
        at-least-once anyway), and thousands of short transactions no longer
        each wait for the disk.
        """
        connection = connections[self.alias]
        # Inside the caller's transaction, its commit and its settings are not ours.
        outermost = not connection.in_atomic_block
        if run.lock is not None:
            run.lock.check()
        with write_block(self.alias, operation):
            if async_commit and connection.vendor == "postgresql" and outermost:
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit = off")
            yield
            if run.lock is not None:
                run.lock.check()

    @contextmanager
    def _one_statement(
        self, run: MaintenanceRun, operation: str
    ) -> Iterator[tuple[bool, AdvisoryLockHolder | None]]:
        """A write batch that is a single statement (PostgreSQL).

        Yields ``(own_commit, lock_holder)``: whether the statement should
        switch ``synchronous_commit`` off for its transaction, and the lock
        it must check itself before it ends (None: nothing to check there).

        Outside any transaction, the statement runs in autocommit: it is the
        batch's whole transaction, one round trip instead of four or more.
        The run's PostgreSQL lock is then checked by the statement, which
        fails with SQLSTATE ``AS001`` when the lock is gone (its batch rolls
        back; this raises ``MaintenanceLockLost``). Otherwise the statement
        runs in :meth:`_write`'s transaction, with the lock checked around
        it, and switches the commit mode only where that transaction is ours.
        """
        connection = connections[self.alias]
        outermost = not connection.in_atomic_block
        lock = run.lock
        if outermost and connection.get_autocommit() and (lock is None or lock.holder):
            with translate_errors(operation):
                try:
                    yield True, None if lock is None else lock.holder
                except DatabaseError as exc:
                    if lock is not None and sqlstate(exc) == LOCK_LOST_SQLSTATE:
                        lock.lost = True
                        lock.check()
                    raise
            return
        with self._write(run, operation, async_commit=False):
            yield outermost, None

    @contextmanager
    def _own_run(
        self, policy: RetentionPolicy | None, dry_run: bool, *, batch_size: int | None = None
    ) -> Iterator[MaintenanceRun]:
        """A run for one public step called on its own (``execute`` makes one for all)."""
        now = utcnow()
        archive = self._archive_for(policy, dry_run, now) if policy is not None else None
        size = batch_size if batch_size is not None else policy.batch_size if policy else 100
        try:
            yield MaintenanceRun(now, dry_run, archive, size)
        finally:
            if archive is not None:
                archive.close()

    @staticmethod
    def _archive_for(policy: RetentionPolicy, dry_run: bool, now: datetime) -> ArchiveWriter | None:
        if not policy.archive_before_prune or dry_run or policy.archive_store is None:
            return None
        return ArchiveWriter(policy.archive_store, started_at=now)

    def _report(self, run: MaintenanceRun, step: str, rows: int, total: int) -> None:
        count_maintenance_batch(step, rows)
        run.done[step] = total
        if self.progress is not None:
            self.progress(step, rows, total)

    def _sessions(self) -> QuerySet[m.Session]:
        return m.Session.objects.using(self.alias)

    def _events(self) -> QuerySet[m.Event]:
        return m.Event.objects.using(self.alias)

    def _counters(self) -> QuerySet[m.SessionSequence]:
        return m.SessionSequence.objects.using(self.alias)

    def _artifacts(self) -> QuerySet[m.Artifact]:
        return m.Artifact.objects.using(self.alias)


def check_policy(policy: object) -> None:
    """Validate ``policy``; anything but a :class:`RetentionPolicy` is a ValidationError too."""
    if not isinstance(policy, RetentionPolicy):
        raise ValidationError(
            "validation_error",
            f"policy must be a RetentionPolicy, not {type(policy).__name__}",
            field="policy",
        )
    policy.validate()
