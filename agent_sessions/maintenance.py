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
from collections.abc import Callable, Sequence
from datetime import timedelta

from django.db import connections
from django.db.models import Exists, OuterRef

from agent_sessions import models as m
from agent_sessions import signals
from agent_sessions.aio import MaintenanceAsyncMixin
from agent_sessions.db import check_alias, translate_errors
from agent_sessions.errors import MaintenanceLockLost, MigrationRequiredError, StorageError
from agent_sessions.locks import MaintenanceLock
from agent_sessions.maintenance_run import MaintenanceProgress, MaintenanceRun, check_policy
from agent_sessions.pruning import PROTECTED_EVENT_TYPES, EventPruning
from agent_sessions.restore import RestoreReport, restore_archives
from agent_sessions.results import MaintenanceReport
from agent_sessions.retention import RetentionPolicy
from agent_sessions.sweeps import SessionSweeps
from agent_sessions.telemetry import maintenance_attributes, traced
from agent_sessions.validation import check_id, check_int, utcnow

__all__ = ["PROTECTED_EVENT_TYPES", "DjangoMaintenance", "MaintenanceProgress", "MaintenanceReport"]


class DjangoMaintenance(SessionSweeps, EventPruning, MaintenanceAsyncMixin):
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
        check_policy(policy)
        started = time.monotonic()
        now = utcnow()
        archive = self._archive_for(policy, dry_run, now)
        hard_cutoff = None
        if dry_run and policy.hard_delete_after_days is not None:
            hard_cutoff = now - timedelta(days=policy.hard_delete_after_days)
        run = MaintenanceRun(
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
        check_policy(policy)
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
        check_policy(policy)
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
        check_policy(policy)
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
        check_policy(policy)
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

    def _prune_events(self, policy: RetentionPolicy, run: MaintenanceRun) -> int:
        per_session = 0
        if policy.max_events_per_session is not None:
            per_session = self._prune_sessions(policy, run, session_id=None)
        total_cap = 0
        if policy.max_total_events is not None:
            total_cap = self._prune_total(policy, run, already_pruned=per_session)
        return per_session + total_cap


def _committed(run: MaintenanceRun, step: str, exc: Exception) -> str:
    """What a failed step had committed, for its error message ("" when nothing)."""
    done = run.done.get(step, 0)
    if run.dry_run or not done or "deleted" in getattr(exc, "details", {}):
        return ""
    return f" ({done} rows were done before the failure)"


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
