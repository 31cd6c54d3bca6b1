"""Result types returned by the QueryAPI and Maintenance ports.

Plain dataclasses, and ``TypedDict`` shapes for the statistics and
summaries (the contract documents them as dicts: JSON-ready, compared and
indexed like dicts, typed for the checker). No Django dependency;
:mod:`agent_sessions.ports` re-exports them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from agent_sessions.core import Event, Run, Session

__all__ = [
    "CostSummary",
    "EventPage",
    "MaintenanceReport",
    "ModelCost",
    "ProviderCost",
    "ProviderUsage",
    "RestoreReport",
    "RunPage",
    "SessionPage",
    "SessionStats",
    "TextHit",
    "TextPage",
    "TokenTotals",
    "UsageSummary",
]


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of :meth:`~agent_sessions.ports.QueryAPI.search_sessions` results.

    Attributes:
        sessions: The sessions on this page, in the requested order.
        cursor: Opaque cursor for the next page; None when there is none.
        total_count: Number of matches ignoring limit and cursor; None when
            the query was made with ``with_total=False``.
    """

    sessions: list[Session]
    cursor: str | None
    total_count: int | None


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of :meth:`~agent_sessions.ports.QueryAPI.search_runs` results.

    Attributes:
        runs: The runs on this page, in the requested order.
        cursor: Opaque cursor for the next page; None when there is none.
    """

    runs: list[Run]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of :meth:`~agent_sessions.ports.QueryAPI.search_events` results.

    Attributes:
        events: The events on this page, in the requested order.
        cursor: Opaque cursor for the next page; None when there is none.
    """

    events: list[Event]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class TextHit:
    """One event found by :meth:`~agent_sessions.ports.QueryAPI.search_text`.

    Attributes:
        event: The matching event.
        rank: Relevance; higher is better. Comparable within one result list
            only (PostgreSQL: ``ts_rank_cd``; SQLite: the negated FTS5 ``bm25``).
        snippet: An extract of the event's text with the matched terms between
            ``[[`` and ``]]`` (empty when the database found none to show).
    """

    event: Event
    rank: float
    snippet: str


@dataclass(frozen=True, slots=True)
class TextPage:
    """One page of :meth:`~agent_sessions.ports.QueryAPI.search_text` results.

    Attributes:
        hits: The matches on this page: best rank first, then newest, then by id.
        cursor: Opaque cursor for the next page; None when there is none.
    """

    hits: list[TextHit]
    cursor: str | None


@dataclass(slots=True)
class MaintenanceReport:
    """What one maintenance run did (or, in a dry run, would do).

    Attributes:
        sessions_soft_deleted: Sessions that got ``deleted_at`` set.
        sessions_hard_deleted: Sessions removed with their runs, events,
            sequence counter and artifacts.
        events_pruned: Events deleted by the per-session and total caps.
        artifacts_cleaned: Artifacts deleted because their session is gone.
        orphaned_sequences_cleaned: Sequence counters deleted because their
            session has neither a row nor events.
        duration_ms: Wall-clock duration of the run, in milliseconds.
        errors: One message per failed step; empty when everything worked.
    """

    sessions_soft_deleted: int = 0
    sessions_hard_deleted: int = 0
    events_pruned: int = 0
    artifacts_cleaned: int = 0
    orphaned_sequences_cleaned: int = 0
    duration_ms: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no step failed."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """Return the report's fields as a JSON-ready dict (``errors`` is copied)."""
        data = dataclasses.asdict(self)
        data["errors"] = list(self.errors)
        return data


@dataclass(slots=True)
class RestoreReport:
    """What a restore did (or, in a dry run, would do).

    Attributes:
        files: The archive files read.
        dry_run: Nothing was written.
        sessions_restored, runs_restored, events_restored, artifacts_restored:
            Rows inserted (or that would be).
        counters_restored: Sequence counters created or raised.
        already_present: Records whose identical row was already there.
        records_read: Records read from the files.
        skipped_lines: Torn lines skipped (a write cut short by a crash).
        unverified_files: Files without a manifest (written by an older version).
        unconfirmed_skipped: Records after the durable part a manifest names
            (their batch failed before deleting anything): not restored.
        conflicts: ``"<table> <id>: <why>"`` for live rows that differ (at
            most ``agent_sessions.restore.MAX_CONFLICTS_LISTED``); empty when the restore ran.
        duration_ms: Wall-clock duration.
    """

    files: list[str] = field(default_factory=list)
    dry_run: bool = False
    sessions_restored: int = 0
    runs_restored: int = 0
    events_restored: int = 0
    artifacts_restored: int = 0
    counters_restored: int = 0
    already_present: int = 0
    records_read: int = 0
    skipped_lines: int = 0
    unverified_files: list[str] = field(default_factory=list)
    unconfirmed_skipped: int = 0
    conflicts: list[str] = field(default_factory=list)
    conflict_count: int = 0
    duration_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return {name: getattr(self, name) for name in self.__slots__}

    def summary(self) -> str:
        """One line for people."""
        verb = "Dry run, nothing written: would restore" if self.dry_run else "Restored"
        return (
            f"{verb} {self.sessions_restored} session(s), {self.runs_restored} run(s), "
            f"{self.events_restored} event(s), {self.artifacts_restored} artifact(s) and "
            f"{self.counters_restored} sequence counter(s) from {len(self.files)} file(s); "
            f"{self.already_present} record(s) already present ({self.duration_ms} ms)."
        )

    def _count(self, kind: str, n: int) -> None:
        name = f"{kind}s_restored"
        setattr(self, name, getattr(self, name) + n)


# ------------------------------------------------------------------- statistics and summaries


class TokenTotals(TypedDict):
    """Token counts summed over runs (``token_usage`` values; missing or non-numeric → 0)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class SessionStats(TypedDict):
    """:meth:`~agent_sessions.ports.QueryAPI.get_session_stats` of one session.

    ``providers_used`` is sorted; the event times are None without events;
    ``status_counts`` maps a run status to its number of runs.
    """

    event_count: int
    run_count: int
    token_totals: TokenTotals
    providers_used: list[str]
    first_event_at: datetime | None
    last_event_at: datetime | None
    status_counts: dict[str, int]


class ProviderUsage(TypedDict):
    """One provider's figures in a :class:`UsageSummary`."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    run_count: int


class UsageSummary(TypedDict):
    """:meth:`~agent_sessions.ports.QueryAPI.get_usage_summary`: token totals over runs.

    ``by_provider`` is keyed by provider, ``"unknown"`` for runs without one.
    """

    total_input_tokens: int
    total_output_tokens: int
    total_tokens: int
    run_count: int
    by_provider: dict[str, ProviderUsage]


class ProviderCost(TypedDict):
    """One provider's figures in a :class:`CostSummary`."""

    cost_usd: float
    run_count: int


class ModelCost(TypedDict):
    """One model's figures in a :class:`CostSummary`."""

    cost_usd: float
    input_tokens: int
    output_tokens: int


class CostSummary(TypedDict):
    """:meth:`~agent_sessions.ports.QueryAPI.get_cost_summary`: costs in USD over runs.

    ``by_provider`` and ``by_model`` are keyed ``"unknown"`` where runs have
    none; ``unmapped_runs`` counts runs with neither a stored cost nor rates.
    """

    total_cost_usd: float
    run_count: int
    by_provider: dict[str, ProviderCost]
    by_model: dict[str, ModelCost]
    unmapped_runs: int
