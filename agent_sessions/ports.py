"""The persistence contracts, as :class:`typing.Protocol` classes.

Each Protocol states what an implementation must do, in the manner of
Django's ``SessionBase``: code written against these types works with any
conforming backend (the Django ORM implementations in
:mod:`agent_sessions.store`, :mod:`agent_sessions.query` and
:mod:`agent_sessions.maintenance`, or a test double).

Conventions shared by every port:

- Datetimes going in must be timezone-aware (naive ones raise
  :class:`~agent_sessions.errors.ValidationError`); datetimes coming out are
  aware UTC with microsecond precision.
- Statuses and event types are accepted as enum members or their strings.
- Invalid input raises :class:`~agent_sessions.errors.ValidationError` before
  anything is written; a missing session or run raises
  :class:`~agent_sessions.errors.NotFoundError`; a database failure raises
  :class:`~agent_sessions.errors.StorageError`; missing tables raise
  :class:`~agent_sessions.errors.MigrationRequiredError`. Raw database
  exceptions never escape, and a failed call leaves no partial write.
- Sequence parameters accept any sequence (list, tuple…), not only lists.

The Protocols are ``runtime_checkable``, so ``isinstance(obj, SessionStore)``
checks that the methods exist (not their signatures).

This module has no Django dependency.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from agent_sessions.core import Event, Run, Session
from agent_sessions.results import (
    CostSummary,
    EventPage,
    MaintenanceReport,
    RestoreReport,
    RunPage,
    SessionPage,
    TextHit,
    TextPage,
    UsageSummary,
)
from agent_sessions.retention import RetentionPolicy

__all__ = [
    "ArtifactRegistry",
    "EventPage",
    "Maintenance",
    "MaintenanceReport",
    "QueryAPI",
    "RestoreReport",
    "RunPage",
    "SessionPage",
    "SessionStore",
    "TextHit",
    "TextPage",
]


@runtime_checkable
class SessionStore(Protocol):
    """Durable storage of sessions, runs and per-session ordered events."""

    def save_session(self, session: Session) -> None:
        """Insert the session, or replace every column but ``id`` of the stored one.

        The session is validated again before writing (its attributes may have
        changed since construction).

        Raises:
            ValidationError: the session holds an invalid value.
        """
        ...

    def get_session(self, session_id: str) -> Session:
        """Return the stored session, soft-deleted or not.

        Raises:
            NotFoundError: ``session_not_found`` when no row has this id.
        """
        ...

    def list_sessions(
        self,
        *,
        status: str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Session]:
        """Return sessions, soft-deleted included, newest ``created_at`` first, then by id.

        Args:
            status: Only sessions with this :class:`~agent_sessions.core.SessionStatus`.
            agent_id: Only sessions of this agent.
            limit: At most this many.
            offset: Skip this many first.

        Raises:
            ValidationError: ``invalid_status`` for an unknown status.
        """
        ...

    def delete_session(self, session_id: str) -> None:
        """Delete the session with its runs, events, sequence counter and artifacts.

        One transaction; deleting a missing session is not an error (idempotent).
        """
        ...

    def save_run(self, run: Run) -> None:
        """Insert the run, or replace every column but ``id`` of the stored one.

        Raises:
            ValidationError: the run holds an invalid value.
        """
        ...

    def get_run(self, run_id: str) -> Run:
        """Return the stored run.

        Raises:
            NotFoundError: ``run_not_found`` when no row has this id.
        """
        ...

    def list_runs(
        self,
        session_id: str,
        *,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Return the session's runs, oldest ``started_at`` first.

        Raises:
            ValidationError: ``invalid_status`` for an unknown status.
        """
        ...

    def get_active_run(self, session_id: str) -> Run | None:
        """Return the session's ``running`` run (the latest started if several), or None.

        Read-after-write consistent: a run saved just before is seen.
        """
        ...

    def append_event(self, event: Event) -> Event:
        """Store the event with the next sequence number (as :meth:`append_event_with_sequence`)."""
        ...

    def append_event_with_sequence(self, event: Event) -> Event:
        """Store the event with the session's next sequence number, and return the stored event.

        Numbers start at 1 per session and are gap-free for successful appends
        under any concurrency; a caller-supplied ``sequence_number`` is ignored.
        Appending an id that is already stored returns the stored event
        unchanged (even if the content differs) and consumes no number. A
        rejected append consumes no number.

        Raises:
            ValidationError: the event holds an invalid value.
        """
        ...

    def append_events(self, events: Sequence[Event]) -> list[Event]:
        """Store several events in one transaction; return the stored events in input order.

        Numbers are contiguous per session. Duplicates (already stored, or
        repeated within the batch) return the same stored event and consume no
        number. Any invalid event → nothing is written.

        Raises:
            ValidationError: an event holds an invalid value.
        """
        ...

    def flush(
        self,
        *,
        session: Session,
        run: Run,
        events: Sequence[Event],
        provider_metadata: dict[str, Any] | None = None,
    ) -> None:
        """Save the session, the run and append the events atomically.

        ``provider_metadata``, when given, is recorded on the run in the same
        write. Any invalid part → ``ValidationError`` and nothing is written.
        """
        ...

    def get_events(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        type: str | Sequence[str] | None = None,
        since: datetime | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        wait_timeout_ms: int | None = None,
    ) -> list[Event]:
        """Return the session's events in ascending sequence order.

        Filters are AND-ed. ``type`` is one type or a sequence of types (any
        of). ``since`` is strict (``timestamp > since``); ``after`` and
        ``before`` are strict bounds on ``sequence_number``; ``limit`` applies
        after ordering.

        With ``wait_timeout_ms`` (long-poll): when the query would return
        nothing, block until a matching event is appended or the timeout
        passes, then return what matches (possibly ``[]``). Appends that do not
        match do not end the wait early.

        Raises:
            ValidationError: an unknown event type or an invalid argument.
        """
        ...

    def get_latest_sequence(self, session_id: str) -> int:
        """Return the session's sequence counter: the last number handed out, 0 when none."""
        ...


@runtime_checkable
class ArtifactRegistry(Protocol):
    """Index of artifacts (files, blobs) stored elsewhere, keyed by a unique ``key``.

    Artifacts are returned as dicts of their columns. Soft-deleted artifacts
    are invisible to every read.
    """

    def register(
        self,
        *,
        key: str,
        byte_size: int,
        checksum_sha256: str,
        storage_backend: str,
        storage_ref: str,
        session_id: str | None = None,
        run_id: str | None = None,
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> dict[str, Any]:
        """Record an artifact and return it as a dict; ``id`` is generated (``art_…``) unless given.

        Raises:
            ValidationError: the key is already registered, or a value is invalid.
        """
        ...

    def get_by_key(self, key: str) -> dict[str, Any] | None:
        """Return the artifact with this key, or None (also when soft-deleted)."""
        ...

    def list_by_session(self, session_id: str) -> list[dict[str, Any]]:
        """Return the session's artifacts, oldest first (then by id)."""
        ...

    def session_stats(self, session_id: str) -> dict[str, int]:
        """Return ``{"artifact_count": n, "total_bytes": n}`` over the session's live artifacts."""
        ...

    def delete(self, key: str) -> None:
        """Soft-delete the artifact with this key; a missing or deleted key is not an error."""
        ...


@runtime_checkable
class QueryAPI(Protocol):
    """Read-only search and reporting across sessions, runs and events.

    Limits default to 50 (sessions, runs) or 100 (events) and must be integers
    from 1 to the configured cap (1000); otherwise ``ValidationError``. Paging
    is keyset-based with opaque signed cursors, stable under concurrent
    inserts, ties broken by id; a page's ``cursor`` is None when there is no
    further page. A malformed, tampered or mismatched cursor raises
    ``ValidationError("invalid_cursor")``. An unknown ``order_by`` raises
    ``ValidationError``. Filters are AND-ed; one that takes a list matches any
    of its values (a single value is accepted too); datetime bounds are
    inclusive. Statistics and summaries are computed in the database.
    """

    def search_sessions(
        self,
        *,
        agent_id: str | None = None,
        status: str | Sequence[str] | None = None,
        provider: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        include_deleted: bool = False,
        order_by: str = "updated_at_desc",
        limit: int | None = None,
        cursor: str | None = None,
        with_total: bool = True,
    ) -> SessionPage:
        """Return a page of sessions: ``SessionPage(sessions, cursor, total_count)``.

        A session matches ``provider`` when any of its runs has it; ``tags``:
        the session carries every listed tag. Soft-deleted sessions are
        excluded unless ``include_deleted``. ``order_by`` is
        ``updated_at_desc``, ``created_at_desc`` or ``created_at_asc``.
        ``total_count`` counts all matches, ignoring limit and cursor (one
        ``COUNT``); None when ``with_total`` is False.

        Raises:
            ValidationError: ``invalid_status``, ``invalid_cursor``, or
                ``validation_error`` (limit, order_by, types of arguments).
        """
        ...

    def get_session_stats(self, session_id: str) -> dict[str, Any]:
        """Return counts and totals for one session (soft-deleted included).

        The :class:`~agent_sessions.results.SessionStats` keys:
        ``event_count``, ``run_count``, ``token_totals`` (``input_tokens``,
        ``output_tokens``, ``total_tokens``), ``providers_used`` (sorted
        distinct run providers), ``first_event_at``/``last_event_at`` (None
        without events), ``status_counts`` (run status → count).

        Raises:
            NotFoundError: ``session_not_found``.
            ValidationError: ``session_id`` is not a valid id.
        """
        ...

    def search_runs(
        self,
        *,
        session_id: str | None = None,
        provider: str | None = None,
        status: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        min_tokens: int | None = None,
        order_by: str = "started_at_desc",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RunPage:
        """Return a page of runs: ``RunPage(runs, cursor)``.

        ``min_tokens`` (≥ 0) is compared inclusively with
        ``token_usage["total_tokens"]`` (missing counts as 0). ``order_by`` is
        ``started_at_desc``, ``started_at_asc`` or ``token_usage_desc`` (by
        ``total_tokens``).

        Raises:
            ValidationError: ``invalid_status``, ``invalid_cursor``, or
                ``validation_error`` (limit, order_by, min_tokens, types).
        """
        ...

    def get_usage_summary(
        self,
        *,
        session_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> UsageSummary:
        """Return token totals over the matching runs (``since``/``until`` bound ``started_at``).

        Keys: ``total_input_tokens``, ``total_output_tokens``, ``total_tokens``,
        ``run_count``, ``by_provider`` (provider, or ``"unknown"`` → the same
        four figures). Token values are read from ``token_usage``; a missing
        or non-numeric one counts as 0, and ``total_tokens`` sums the stored
        ``total_tokens`` values.

        Raises:
            ValidationError: a bad argument.
        """
        ...

    def get_cost_summary(
        self,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        pricing_table: dict[str, Any] | None = None,
    ) -> CostSummary:
        """Return costs in USD over the matching runs (``agent_id``: runs of its sessions).

        Keys: ``total_cost_usd``, ``run_count``, ``by_provider`` (``cost_usd``,
        ``run_count``), ``by_model`` (``cost_usd``, ``input_tokens``,
        ``output_tokens``), ``unmapped_runs``. A run's cost is its stored
        ``cost_usd`` when set (0.0 included), else computed from the pricing
        table (``pricing_table``, else the configured or default one) by
        provider and ``provider_metadata["model"]``: the exact model, else the
        longest model prefix, else the provider's ``default``; cache tokens
        default to the input rate. Runs with neither count in
        ``unmapped_runs`` (cost 0). Missing providers and models are
        ``"unknown"``.

        Raises:
            ValidationError: a bad argument or pricing table.
        """
        ...

    def search_events(
        self,
        *,
        session_ids: Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        providers: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        correlation_id: str | None = None,
        order_by: str = "sequence_asc",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> EventPage:
        """Return a page of events across sessions: ``EventPage(events, cursor)``.

        ``since``/``until`` bound ``timestamp``. ``order_by`` is
        ``sequence_asc`` (then session id, then id), ``timestamp_asc`` or
        ``timestamp_desc``.

        Raises:
            ValidationError: ``invalid_event_type``, ``invalid_cursor``, or
                ``validation_error`` (limit, order_by, types of arguments).
        """
        ...

    def count_events(
        self,
        *,
        session_ids: Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        providers: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        correlation_id: str | None = None,
    ) -> int:
        """Return how many events :meth:`search_events` would find with these filters.

        Raises:
            ValidationError: ``invalid_event_type`` or ``validation_error``.
        """
        ...

    def search_text(
        self,
        q: str,
        *,
        agent_id: str | None = None,
        session_ids: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TextPage:
        """Return a page of events whose ``data`` string values match ``q`` (docs/search.md).

        ``q`` is plain user text, 1 to 1,000 characters: words (all must
        occur), ``"exact phrase"``, ``-excluded``, ``OR`` between
        alternatives; nothing else is an operator, and punctuation alone finds
        nothing. Keys are not searched; events of every writer are. Hits
        (``event``, ``rank`` — higher is better, ``snippet`` with matched
        terms between ``[[`` and ``]]``) come best rank first, then newest,
        then by id. Events of soft-deleted sessions are excluded unless
        ``include_deleted``. The cursor is bound to ``q``.

        Raises:
            ValidationError: bad ``q`` (empty, too long, NUL, only
                exclusions), unknown type, bad limit or cursor
                (``invalid_cursor``, also for another ``q``'s cursor).
            SearchUnavailableError: the database has no full-text engine.
        """
        ...

    def export_session(self, session_id: str, *, include_artifacts: bool = False) -> dict[str, Any]:
        """Return ``{"session": Session, "runs": [Run…], "events": [Event…]}`` (soft-deleted too).

        Runs oldest first, events by sequence; ``"artifacts"`` (the session's
        live artifacts as dicts of their columns, oldest first) is added only
        when ``include_artifacts`` is True.

        Raises:
            NotFoundError: ``session_not_found``.
            ValidationError: ``session_id`` is not a valid id.
        """
        ...


@runtime_checkable
class Maintenance(Protocol):
    """Applies a :class:`~agent_sessions.retention.RetentionPolicy` and checks consistency.

    Every step works in bounded batches of ``policy.batch_size`` (one short
    transaction each). With ``dry_run=True`` a step returns what a real run
    would do and changes nothing.
    """

    def execute(self, policy: RetentionPolicy, *, dry_run: bool = False) -> MaintenanceReport:
        """Validate the policy, then soft delete, hard delete, prune events and clean orphans.

        A failing step is recorded in ``report.errors`` with its count 0; the
        other steps still run.

        Raises:
            ValidationError: the policy is invalid (nothing is done).
        """
        ...

    def soft_delete_expired_sessions(
        self, policy: RetentionPolicy, *, dry_run: bool = False
    ) -> int:
        """Set ``deleted_at`` on expired, non-exempt sessions; return how many."""
        ...

    def hard_delete_expired_sessions(
        self, policy: RetentionPolicy, *, dry_run: bool = False
    ) -> int:
        """Delete sessions soft-deleted longer than the policy allows, with everything
        that belongs to them (one atomic cascade per session); return how many."""
        ...

    def prune_session_events(
        self, session_id: str, policy: RetentionPolicy, *, dry_run: bool = False
    ) -> int:
        """Delete the session's events above ``max_events_per_session``; return how many.

        ``prune_event_types_first`` go first, oldest first, then the oldest
        others; ``session_created``, ``run_started``, ``run_completed``,
        ``run_failed`` and ``error_occurred`` are never pruned. The sequence
        counter is never lowered.
        """
        ...

    def clean_orphaned_artifacts(self, *, dry_run: bool = False) -> int:
        """Delete artifacts whose (non-null) session has no row; return how many."""
        ...

    def restore(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        dry_run: bool = False,
        batch_size: int = 1000,
    ) -> RestoreReport:
        """Bring back what archive files (written with ``archive_before_prune``) hold.

        Verifies every file (manifest SHA-256 and counts) and refuses, before
        writing anything, to overwrite a live row that differs from its
        archived record. Rows already present and identical are left alone,
        so restoring twice gives the same rows. Sequence numbers are kept;
        counters never go below the highest restored sequence number.

        Args:
            paths: Archive files (``asm-archive-….jsonl``); one path is accepted too.
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
        ...

    def health_check(self) -> list[str]:
        """Return one message per consistency problem found; empty means healthy."""
        ...
