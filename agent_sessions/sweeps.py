"""The maintenance steps that delete whole rows: expired sessions and orphans.

:class:`SessionSweeps` is a base of
:class:`~agent_sessions.maintenance.DjangoMaintenance`:

- Soft delete: ``deleted_at`` set on expired sessions, by key range per batch.
- Hard delete: sessions soft-deleted long enough ago go with everything they
  own (:mod:`agent_sessions.cascade`), archived first when the run has an
  archive; a failing batch is retried one session per transaction.
- Orphans: artifacts whose session row is gone, and sequence counters whose
  session has neither a row nor events (deleted only while locked and still
  empty, so an append in flight is never renumbered).

Event pruning is :mod:`agent_sessions.pruning`; the batches and transactions
are :class:`~agent_sessions.maintenance_run.BatchedSteps`'.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import Exists, OuterRef, Q, QuerySet

from agent_sessions import models as m
from agent_sessions.archive import ArchiveWriter
from agent_sessions.cascade import ArchivedSessions, delete_sessions
from agent_sessions.core import Event
from agent_sessions.errors import ArchiveError, StorageError
from agent_sessions.maintenance_run import BatchedSteps, MaintenanceRun
from agent_sessions.models import ARTIFACT_COLUMNS
from agent_sessions.pruning import READ_CHUNK
from agent_sessions.retention import RetentionPolicy

__all__ = ["SessionSweeps"]


class SessionSweeps(BatchedSteps):
    """Soft and hard deletion of expired sessions, and orphan clean-up (step bodies)."""

    def _soft_delete(self, policy: RetentionPolicy, run: MaintenanceRun) -> int:
        step = "soft_delete_expired_sessions"
        expired = self._expired_sessions(policy, run.now)
        if expired is None:
            return 0

        def soft_delete(ids: list[str]) -> int:
            with self._write(run, step):
                page = expired.filter(id__gte=ids[0], id__lte=ids[-1])
                return page.update(deleted_at=run.now)

        return self._sweep(run, step, expired, "id", soft_delete)

    def _hard_delete(self, policy: RetentionPolicy, run: MaintenanceRun) -> int:
        if policy.hard_delete_after_days is None:
            return 0
        cutoff = run.now - timedelta(days=policy.hard_delete_after_days)
        expired = m.conversations(self._sessions()).filter(deleted_at__lt=cutoff)
        failed: dict[str, StorageError] = {}

        def hard_delete(ids: list[str]) -> int:
            deleted, errors = self._delete_sessions(run, ids, cutoff)
            failed.update(errors)
            return deleted

        total = self._sweep(run, "hard_delete_expired_sessions", expired, "id", hard_delete)
        if failed:
            first = next(iter(failed.values()))
            raise StorageError(
                "storage_error",
                f"could not delete {len(failed)} session(s) ({', '.join(sorted(failed))}): "
                f"{first.message}; {total} other session(s) were deleted",
                details={"failed": sorted(failed), "deleted": total},
            )
        return total

    def _orphaned_artifacts(self, run: MaintenanceRun) -> int:
        step = "clean_orphaned_artifacts"
        orphans = (
            self._artifacts()
            .filter(session_id__isnull=False)
            .filter(~Exists(self._sessions().filter(id=OuterRef("session_id"))))
        )

        def clean(ids: list[str]) -> int:
            with self._write(run, step):
                locked = orphans.filter(id__gte=ids[0], id__lte=ids[-1]).select_for_update()
                rows = list(locked.order_by("id").values(*ARTIFACT_COLUMNS))
                if run.archive is not None and rows:
                    run.archive.write("artifact", rows)
                    run.archive.sync()
                # Exactly the rows read (and archived), not the range again.
                doomed = self._artifacts().filter(id__in=[row["id"] for row in rows])
                return doomed.delete()[0]

        return self._sweep(run, step, orphans, "id", clean)

    def _orphaned_sequences(self, run: MaintenanceRun) -> int:
        step = "clean_orphaned_sequences"
        orphans = self._counters().filter(
            ~Exists(self._sessions().filter(id=OuterRef("session_id"))),
            ~Exists(self._events().filter(session_id=OuterRef("session_id"))),
        )

        def clean(ids: list[str]) -> int:
            with self._write(run, step):
                # Counters an append is updating right now are skipped (it
                # will create events); the DELETE re-checks with a fresh view.
                locked = list(
                    orphans.filter(session_id__gte=ids[0], session_id__lte=ids[-1])
                    .select_for_update(skip_locked=True)
                    .values_list("session_id", flat=True)
                )
                return orphans.filter(session_id__in=locked).delete()[0]

        return self._sweep(run, step, orphans, "session_id", clean)

    def _delete_sessions(
        self, run: MaintenanceRun, ids: list[str], cutoff: datetime
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

    def _delete_session_cascade(
        self, run: MaintenanceRun, first: str, last: str, cutoff: datetime
    ) -> int:
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


def _is_archive_error(exc: StorageError) -> bool:
    return isinstance(exc, ArchiveError)
