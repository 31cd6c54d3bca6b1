"""Retention maintenance: apply a :class:`~agent_sessions.retention.RetentionPolicy`.

:class:`DjangoMaintenance` soft-deletes expired sessions, hard-deletes the ones
soft-deleted long enough ago (with their runs, events, sequence counter and
artifacts), prunes events above the per-session and total caps, and cleans
orphaned artifacts and sequence counters::

    report = DjangoMaintenance().execute(RetentionPolicy.from_settings())
    report.sessions_hard_deleted, report.errors

How it stays safe on a live database:

- Every step walks its table in key order (keyset: ``WHERE id > last ORDER
  BY id LIMIT batch_size``) and changes one batch per short transaction,
  addressed by key range rather than by a list of ids, so memory does not
  grow with the table and no transaction spans the run. Conditions are
  checked again inside each write, so a row that stopped qualifying
  meanwhile is left alone.
- Appends are never blocked for longer than one batch: a hard delete locks
  the sessions' sequence counters (which every append takes) only for its own
  short transaction; pruning deletes old events, which appends never touch;
  and a counter is only removed while it is locked and has no events, so an
  in-flight append to it is neither lost nor renumbered.
- With ``archive_before_prune``, rows are written to the JSON Lines archive
  (:mod:`agent_sessions.archive`) and fsynced inside the same transaction,
  before they are deleted. If the archive cannot be written, nothing is
  deleted and the step fails.
- ``dry_run=True`` takes the same path, reads the same batches and counts
  what would change, without writing. Inside :meth:`DjangoMaintenance.execute`
  the dry run of event pruning leaves out the sessions that the hard delete
  would have removed first, so every count matches the real run's.

"Oldest" for ``max_total_events`` means the lowest ``timestamp``, then the
lowest ``sequence_number``, then the lowest id.

Overlap protection (one run at a time per database) is
:func:`agent_sessions.locks.maintenance_lock`, which the ``asm_maintenance``
command takes around :meth:`~DjangoMaintenance.execute`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import Exists, OuterRef, Q, QuerySet

from agent_sessions import models as m
from agent_sessions import signals
from agent_sessions.aio import MaintenanceAsyncMixin
from agent_sessions.archive import ArchiveWriter
from agent_sessions.cascade import ArchivedSessions, delete_sessions
from agent_sessions.core import Event
from agent_sessions.db import check_alias, db_for_write, translate_errors, write_block
from agent_sessions.errors import (
    ArchiveError,
    MaintenanceLockLost,
    MigrationRequiredError,
    StorageError,
    ValidationError,
)
from agent_sessions.locks import MaintenanceLock
from agent_sessions.models import ARTIFACT_COLUMNS
from agent_sessions.pruning import PROTECTED_EVENT_TYPES, READ_CHUNK, EventPruning
from agent_sessions.restore import RestoreReport, restore_archives
from agent_sessions.results import MaintenanceReport
from agent_sessions.retention import RetentionPolicy
from agent_sessions.telemetry import count_maintenance_batch, maintenance_attributes, traced
from agent_sessions.validation import check_id, check_int, utcnow

__all__ = ["PROTECTED_EVENT_TYPES", "DjangoMaintenance", "MaintenanceProgress", "MaintenanceReport"]

#: ``progress(step, rows_in_batch, step_total_so_far)``, called after every batch.
MaintenanceProgress = Callable[[str, int, int], None]


@dataclass
class _Run:
    """One maintenance run, passed explicitly to every step and batch.

    :meth:`DjangoMaintenance.execute` makes one for all its steps; a public
    step called on its own makes its own, so each step behaves the same
    inside and outside ``execute()``.
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


class DjangoMaintenance(EventPruning, MaintenanceAsyncMixin):
    """The :class:`~agent_sessions.ports.Maintenance` port on a Django database.

    Args:
        using: Database alias; None follows the routers' choice for writes.
        progress: Called after each batch as ``progress(step, rows, total)``,
            e.g. to print progress from a management command.

    Public methods raise only ``agent_sessions`` errors. An instance may be
    shared between threads.
    """

    def __init__(self, using: str | None = None, *, progress: MaintenanceProgress | None = None):
        self.using = check_alias(using)
        self.progress = progress

    @property
    def alias(self) -> str:
        """The database alias this instance works on."""
        return db_for_write(self.using, m.Session)

    # ----------------------------------------------------------------- execute

    @traced("maintenance.execute", maintenance_attributes)
    def execute(
        self,
        policy: RetentionPolicy,
        *,
        dry_run: bool = False,
        lock: MaintenanceLock | None = None,
    ) -> MaintenanceReport:
        """Validate the policy, then run every step and report what was done.

        Steps, in order: soft delete, hard delete, event pruning (per session,
        then ``max_total_events``), orphaned artifacts, orphaned sequence
        counters. A failing step is recorded in ``report.errors`` with its
        count 0, and the other steps still run; batches it committed before
        failing stay committed, and its message says how many rows they held.

        Args:
            policy: What to delete.
            dry_run: Count what would be done; change nothing.
            lock: The maintenance lock this run holds
                (:func:`~agent_sessions.locks.hold_maintenance_lock`). It is
                checked before every destructive batch and again before the
                batch commits; once it is lost, the batch rolls back, the run
                stops, and the report says so in ``errors``.

        Returns:
            The report.

        Raises:
            ValidationError: the policy is invalid; nothing was done.
            MigrationRequiredError: the tables or columns are missing.
        """
        _check_policy(policy)
        started = time.monotonic()
        now = utcnow()
        archive = self._archive_for(policy, dry_run, now)
        hard_cutoff = None
        if dry_run and policy.hard_delete_after_days is not None:
            hard_cutoff = now - timedelta(days=policy.hard_delete_after_days)
        run = _Run(
            now, dry_run, archive, policy.batch_size, hard_delete_cutoff=hard_cutoff, lock=lock
        )
        report = MaintenanceReport()
        steps: list[tuple[str, str, Callable[[], int]]] = [
            (
                "sessions_soft_deleted",
                "soft_delete_expired_sessions",
                lambda: self._soft_delete(policy, run),
            ),
            (
                "sessions_hard_deleted",
                "hard_delete_expired_sessions",
                lambda: self._hard_delete(policy, run),
            ),
            ("events_pruned", "prune_events", lambda: self._prune_events(policy, run)),
            (
                "artifacts_cleaned",
                "clean_orphaned_artifacts",
                lambda: self._orphaned_artifacts(run),
            ),
            (
                "orphaned_sequences_cleaned",
                "clean_orphaned_sequences",
                lambda: self._orphaned_sequences(run),
            ),
        ]
        try:
            for field, name, step in steps:
                try:
                    setattr(report, field, step())
                except MigrationRequiredError:
                    # Not a step failing: no step can work until `migrate` runs.
                    raise
                except MaintenanceLockLost as exc:
                    # Another run may be working now: stop at once.
                    report.errors.append(f"{name}: {exc}{_committed(run, name, exc)}")
                    break
                except Exception as exc:  # one failing step must not stop the others
                    report.errors.append(f"{name}: {exc}{_committed(run, name, exc)}")
        finally:
            if archive is not None:
                try:
                    archive.close()
                except StorageError as exc:
                    report.errors.append(f"archive: {exc}")
        report.duration_ms = round((time.monotonic() - started) * 1000)
        signals.maintenance_done(type(self), self.alias, report)
        return report

    # ----------------------------------------------------------------- steps

    def soft_delete_expired_sessions(
        self, policy: RetentionPolicy, *, dry_run: bool = False
    ) -> int:
        """Set ``deleted_at`` to now on expired sessions; return how many.

        Expired: not yet soft-deleted, no tag in ``exempt_tags``, and either
        a status outside ``exempt_statuses`` with ``updated_at`` older than
        ``max_completed_session_age_days``, or (any status) ``created_at``
        older than ``max_session_age_days``.

        Raises:
            ValidationError: the policy is invalid.
            StorageError: the database failed (earlier batches stay done).
        """
        _check_policy(policy)
        with self._own_run(policy, dry_run) as run:
            return self._soft_delete(policy, run)

    def hard_delete_expired_sessions(
        self, policy: RetentionPolicy, *, dry_run: bool = False
    ) -> int:
        """Delete sessions soft-deleted longer ago than ``hard_delete_after_days``.

        Each session goes with its runs, events, sequence counter and
        artifacts. A batch is one transaction; should it fail, its sessions
        are retried one per transaction, so each session is either wholly
        deleted or wholly kept, and the others still go.

        Returns:
            How many sessions were (or, in a dry run, would be) deleted.

        Raises:
            ValidationError: the policy is invalid.
            StorageError: the archive could not be written (nothing more is
                deleted), or some sessions could not be deleted (the message
                names them and says how many others were).
        """
        _check_policy(policy)
        with self._own_run(policy, dry_run) as run:
            return self._hard_delete(policy, run)

    def prune_events(self, policy: RetentionPolicy, *, dry_run: bool = False) -> int:
        """Prune every session above ``max_events_per_session``, then all events above
        ``max_total_events``; return how many events were (or would be) deleted.

        Per session, as :meth:`prune_session_events`. Across sessions, the
        same order applies to the whole table: ``prune_event_types_first``
        oldest first, then the oldest unprotected events, until the total
        fits or only protected events are left.

        Raises:
            ValidationError: the policy is invalid.
            StorageError: the database or the archive failed.
        """
        _check_policy(policy)
        with self._own_run(policy, dry_run) as run:
            return self._prune_events(policy, run)

    def prune_session_events(
        self, session_id: str, policy: RetentionPolicy, *, dry_run: bool = False
    ) -> int:
        """Delete the session's events above ``max_events_per_session``; return how many.

        ``prune_event_types_first`` go first, lowest sequence first, then the
        other events, lowest sequence first. ``session_created``,
        ``run_started``, ``run_completed``, ``run_failed`` and
        ``error_occurred`` are never deleted, so a session with only those
        left stays above the cap. The sequence counter is never lowered.

        Raises:
            ValidationError: invalid session id or policy.
            StorageError: the database or the archive failed.
        """
        session_id = check_id(session_id, "session_id")
        _check_policy(policy)
        if policy.max_events_per_session is None:
            return 0
        with self._own_run(policy, dry_run) as run:
            return self._prune_sessions(policy, run, session_id=session_id)

    def clean_orphaned_artifacts(self, *, dry_run: bool = False, batch_size: int = 100) -> int:
        """Delete artifacts whose non-null ``session_id`` has no session row; return how many.

        Args:
            dry_run: Count only.
            batch_size: Rows per batch (``execute`` passes the policy's).

        Raises:
            StorageError: the database failed (earlier batches stay done).
        """
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        with self._own_run(None, dry_run, batch_size=batch_size) as run:
            return self._orphaned_artifacts(run)

    def clean_orphaned_sequences(self, *, dry_run: bool = False, batch_size: int = 100) -> int:
        """Delete sequence counters whose session has neither a row nor events.

        A counter is deleted only while this transaction holds its row lock
        and no event exists, so an append in flight is never renumbered.

        Args:
            dry_run: Count only.
            batch_size: Rows per batch (``execute`` passes the policy's).

        Returns:
            How many counters were (or would be) deleted.

        Raises:
            StorageError: the database failed (earlier batches stay done).
        """
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        with self._own_run(None, dry_run, batch_size=batch_size) as run:
            return self._orphaned_sequences(run)

    def restore(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        dry_run: bool = False,
        batch_size: int = 1000,
    ) -> RestoreReport:
        """Bring back what archive files hold; see :mod:`agent_sessions.restore`.

        Verifies every file (manifest SHA-256 and counts) and refuses, before
        writing anything, to overwrite a live row that differs from its
        archived record. Rows already present and identical are left alone,
        so restoring twice gives the same rows. Sequence numbers are kept;
        counters never go below the highest restored sequence number.

        Args:
            paths: Archive files (``asm-archive-….jsonl``).
            dry_run: Verify and count; write nothing.
            batch_size: Records per transaction.

        Returns:
            What was (or would be) restored.

        Raises:
            ArchiveError: a file is unreadable or does not match its manifest.
            RestoreConflictError: a live row differs; nothing was written.
            ValidationError: a record is invalid, or ``paths`` is empty.
            StorageError: the database failed (batches written before stay).
        """
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        return restore_archives(self.alias, list(paths), dry_run=dry_run, batch_size=batch_size)

    def health_check(self) -> list[str]:
        """Return one message per consistency problem; an empty list means healthy.

        Messages, in this order: ``"<n> events reference non-existent
        sessions"``, ``"<n> runs reference non-existent sessions"``, then one
        ``"Sequence mismatch for <session_id>: counter=<n>, max_sequence=<m>"``
        per counter below its session's highest stored sequence (the next
        append would collide), by session id, then ``"Missing sequence
        counter for <session_id>: max_sequence=<m>"`` per session with events
        but no counter (ASM's orphan clean-up removes such counters; the next
        append catches the counter up and continues at ``m + 1``).

        Raises:
            StorageError: the database failed.
        """
        issues: list[str] = []
        missing_session = ~Exists(self._sessions().filter(id=OuterRef("session_id")))
        with translate_errors("health_check"):
            events = self._events().filter(missing_session).count()
            runs = m.Run.objects.using(self.alias).filter(missing_session).count()
            if events:
                issues.append(f"{events} events reference non-existent sessions")
            if runs:
                issues.append(f"{runs} runs reference non-existent sessions")
            with connections[self.alias].cursor() as cursor:
                cursor.execute(_SEQUENCE_MISMATCH_SQL)
                for session_id, counter, highest in cursor.fetchall():
                    issues.append(
                        f"Sequence mismatch for {session_id}: "
                        f"counter={counter}, max_sequence={highest}"
                    )
                cursor.execute(_MISSING_COUNTER_SQL)
                for session_id, highest in cursor.fetchall():
                    issues.append(
                        f"Missing sequence counter for {session_id}: max_sequence={highest}"
                    )
        return issues

    # ----------------------------------------------------------------- step bodies

    def _soft_delete(self, policy: RetentionPolicy, run: _Run) -> int:
        expired = self._expired_sessions(policy, run.now)
        if expired is None:
            return 0
        total = 0
        for ids in self._batches(expired, "id", run.batch_size):
            if run.dry_run:
                total += len(ids)
            else:
                with self._write(run, "soft_delete_expired_sessions"):
                    page = expired.filter(id__gte=ids[0], id__lte=ids[-1])
                    total += page.update(deleted_at=run.now)
            self._report(run, "soft_delete_expired_sessions", len(ids), total)
        return total

    def _hard_delete(self, policy: RetentionPolicy, run: _Run) -> int:
        if policy.hard_delete_after_days is None:
            return 0
        cutoff = run.now - timedelta(days=policy.hard_delete_after_days)
        expired = m.conversations(self._sessions()).filter(deleted_at__lt=cutoff)
        total = 0
        failed: dict[str, StorageError] = {}
        for ids in self._batches(expired, "id", run.batch_size):
            if run.dry_run:
                total += len(ids)
            else:
                deleted, errors = self._delete_sessions(run, ids, cutoff)
                total += deleted
                failed.update(errors)
            self._report(run, "hard_delete_expired_sessions", len(ids), total)
        if failed:
            first = next(iter(failed.values()))
            raise StorageError(
                "storage_error",
                f"could not delete {len(failed)} session(s) ({', '.join(sorted(failed))}): "
                f"{first.message}; {total} other session(s) were deleted",
                details={"failed": sorted(failed), "deleted": total},
            )
        return total

    def _prune_events(self, policy: RetentionPolicy, run: _Run) -> int:
        per_session = 0
        if policy.max_events_per_session is not None:
            per_session = self._prune_sessions(policy, run, session_id=None)
        total_cap = 0
        if policy.max_total_events is not None:
            total_cap = self._prune_total(policy, run, already_pruned=per_session)
        return per_session + total_cap

    def _orphaned_artifacts(self, run: _Run) -> int:
        orphans = (
            self._artifacts()
            .filter(session_id__isnull=False)
            .filter(~Exists(self._sessions().filter(id=OuterRef("session_id"))))
        )
        total = 0
        for ids in self._batches(orphans, "id", run.batch_size):
            if run.dry_run:
                total += len(ids)
            else:
                with self._write(run, "clean_orphaned_artifacts"):
                    locked = orphans.filter(id__gte=ids[0], id__lte=ids[-1]).select_for_update()
                    rows = list(locked.order_by("id").values(*ARTIFACT_COLUMNS))
                    if run.archive is not None and rows:
                        run.archive.write("artifact", rows)
                        run.archive.sync()
                    # Exactly the rows read (and archived), not the range again.
                    doomed = self._artifacts().filter(id__in=[row["id"] for row in rows])
                    total += doomed.delete()[0]
            self._report(run, "clean_orphaned_artifacts", len(ids), total)
        return total

    def _orphaned_sequences(self, run: _Run) -> int:
        orphans = self._counters().filter(
            ~Exists(self._sessions().filter(id=OuterRef("session_id"))),
            ~Exists(self._events().filter(session_id=OuterRef("session_id"))),
        )
        total = 0
        for ids in self._batches(orphans, "session_id", run.batch_size):
            if run.dry_run:
                total += len(ids)
            else:
                with self._write(run, "clean_orphaned_sequences"):
                    # Counters an append is updating right now are skipped (it
                    # will create events); the DELETE re-checks with a fresh view.
                    locked = list(
                        orphans.filter(session_id__gte=ids[0], session_id__lte=ids[-1])
                        .select_for_update(skip_locked=True)
                        .values_list("session_id", flat=True)
                    )
                    total += orphans.filter(session_id__in=locked).delete()[0]
            self._report(run, "clean_orphaned_sequences", len(ids), total)
        return total

    # ----------------------------------------------------------------- hard delete

    def _delete_sessions(
        self, run: _Run, ids: list[str], cutoff: datetime
    ) -> tuple[int, dict[str, StorageError]]:
        """Delete a batch in one transaction; on failure, retry each session on its own."""
        try:
            return self._delete_session_cascade(run, ids[0], ids[-1], cutoff), {}
        except StorageError as exc:
            if _is_archive_error(exc) or len(ids) == 1:
                raise
        deleted = 0
        failed: dict[str, StorageError] = {}
        for session_id in ids:
            try:
                deleted += self._delete_session_cascade(run, session_id, session_id, cutoff)
            except StorageError as exc:
                if _is_archive_error(exc):
                    raise
                failed[session_id] = exc
        return deleted, failed

    def _delete_session_cascade(self, run: _Run, first: str, last: str, cutoff: datetime) -> int:
        """Delete the sessions ``first..last`` that are still expired, with all they own.

        One transaction. The sessions are selected again (by key range and
        expiry) and locked, and their ids captured: only those are deleted.
        Their counters are locked too, so appends to them wait for the
        commit. With an archive, the cascade deletes exactly the rows the
        archive holds (:class:`~agent_sessions.cascade.ArchivedSessions`);
        anything that became deletable after they were read waits for the
        next run.
        """
        with self._write(run, "hard_delete_expired_sessions"):
            locked = (
                self._sessions()
                .filter(id__gte=first, id__lte=last, deleted_at__lt=cutoff)
                .select_for_update()
                .order_by("id")
            )
            connection = connections[self.alias]
            archive = run.archive
            if archive is None:
                ids = list(locked.values_list("id", flat=True))
                return delete_sessions(connection, ids) if ids else 0
            rows = list(locked)
            if not rows:
                return 0
            ids = [row.id for row in rows]
            counters = {
                counter.session_id: {
                    "last_sequence": counter.last_sequence,
                    "updated_at": counter.updated_at,
                }
                for counter in self._counters().filter(session_id__in=ids).select_for_update()
            }
            return delete_sessions(
                connection,
                ids,
                before_delete=lambda: self._archive_sessions(archive, rows, counters),
            )

    def _archive_sessions(
        self,
        archive: ArchiveWriter,
        rows: list[m.Session],
        counters: dict[str, dict[str, Any]],
    ) -> ArchivedSessions:
        """Write the sessions with all they own to the archive and sync it; say what it holds."""
        ids = [row.id for row in rows]
        runs = list(
            m.Run.objects.using(self.alias)
            .filter(session_id__in=ids)
            .order_by("session_id", "started_at", "id")
        )
        artifacts = list(
            self._artifacts().filter(session_id__in=ids).order_by("id").values(*ARTIFACT_COLUMNS)
        )
        last_sequence: dict[str, int] = {}
        events = self._events().filter(session_id__in=ids)

        def archived_events() -> Iterator[Event]:
            for row in events.order_by("session_id", "sequence_number").iterator(READ_CHUNK):
                last_sequence[row.session_id] = row.sequence_number
                yield row.to_domain()

        archive.write("session", (row.to_domain() for row in rows), counters=counters)
        archive.write("run", (run.to_domain() for run in runs))
        event_count = archive.write("event", archived_events())
        archive.write("artifact", artifacts)
        archive.sync()
        return ArchivedSessions(
            session_ids=ids,
            run_ids=[run.id for run in runs],
            artifact_ids=[artifact["id"] for artifact in artifacts],
            last_sequence=last_sequence,
            event_count=event_count,
        )

    # ----------------------------------------------------------------- helpers

    def _expired_sessions(
        self, policy: RetentionPolicy, now: datetime
    ) -> QuerySet[m.Session] | None:
        """Sessions the soft delete applies to, or None when the policy sets no age."""
        expired = Q()
        if policy.max_completed_session_age_days is not None:
            cutoff = now - timedelta(days=policy.max_completed_session_age_days)
            expired |= Q(updated_at__lt=cutoff) & ~Q(status__in=policy.exempt_statuses)
        if policy.max_session_age_days is not None:
            expired |= Q(created_at__lt=now - timedelta(days=policy.max_session_age_days))
        if not expired:
            return None
        # Framework state rows (ADK app:/user: state) are not conversations: kept.
        sessions = m.conversations(self._sessions()).filter(expired, deleted_at__isnull=True)
        if policy.exempt_tags:
            sessions = sessions.exclude(tags__has_any=list(policy.exempt_tags))
        return sessions

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

    @contextmanager
    def _write(self, run: _Run, operation: str) -> Iterator[None]:
        """One short write transaction of ``run``, errors translated.

        The run's lock (when it holds one) is checked before the batch and
        again before its commit: a batch of a run that lost its lock rolls
        back instead of committing next to another run.

        SQLite: the write lock is taken first, so the batch queues behind
        appends instead of failing. PostgreSQL: the commit does not wait for
        its WAL flush (``SET LOCAL synchronous_commit = off``: this
        transaction only, safe behind a transaction pooler). A crash can
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
            if connection.vendor == "postgresql" and outermost:
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit = off")
            yield
            if run.lock is not None:
                run.lock.check()

    @contextmanager
    def _own_run(
        self, policy: RetentionPolicy | None, dry_run: bool, *, batch_size: int | None = None
    ) -> Iterator[_Run]:
        """A run for one public step called on its own (``execute`` makes one for all)."""
        now = utcnow()
        archive = self._archive_for(policy, dry_run, now) if policy is not None else None
        size = batch_size if batch_size is not None else policy.batch_size if policy else 100
        try:
            yield _Run(now, dry_run, archive, size)
        finally:
            if archive is not None:
                archive.close()

    @staticmethod
    def _archive_for(policy: RetentionPolicy, dry_run: bool, now: datetime) -> ArchiveWriter | None:
        if not policy.archive_before_prune or dry_run or policy.archive_store is None:
            return None
        return ArchiveWriter(policy.archive_store, started_at=now)

    def _report(self, run: _Run, step: str, rows: int, total: int) -> None:
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


def _check_policy(policy: object) -> None:
    """Validate ``policy``; anything but a :class:`RetentionPolicy` is a ValidationError too."""
    if not isinstance(policy, RetentionPolicy):
        raise ValidationError(
            "validation_error",
            f"policy must be a RetentionPolicy, not {type(policy).__name__}",
            field="policy",
        )
    policy.validate()


def _committed(run: _Run, step: str, exc: Exception) -> str:
    """What a failed step had committed, for its error message ("" when nothing)."""
    done = run.done.get(step, 0)
    if run.dry_run or not done or "deleted" in getattr(exc, "details", {}):
        return ""
    return f" ({done} rows were done before the failure)"


def _is_archive_error(exc: StorageError) -> bool:
    return isinstance(exc, ArchiveError)


# Counters below their session's highest stored sequence: the next append
# would hand out a number that is already taken.
_SEQUENCE_MISMATCH_SQL = """
    SELECT seq.session_id, seq.last_sequence, highest.max_sequence
    FROM asm_session_sequences AS seq
    JOIN (
        SELECT session_id, MAX(sequence_number) AS max_sequence
        FROM asm_events GROUP BY session_id
    ) AS highest ON highest.session_id = seq.session_id
    WHERE seq.last_sequence < highest.max_sequence
    ORDER BY seq.session_id
"""

# Sessions with events but no counter row.
_MISSING_COUNTER_SQL = """
    SELECT e.session_id, MAX(e.sequence_number)
    FROM asm_events AS e
    WHERE NOT EXISTS (
        SELECT 1 FROM asm_session_sequences AS seq WHERE seq.session_id = e.session_id
    )
    GROUP BY e.session_id
    ORDER BY e.session_id
"""
