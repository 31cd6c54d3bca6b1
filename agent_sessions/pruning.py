"""Event pruning: the ``max_events_per_session`` and ``max_total_events`` algorithms.

:class:`EventPruning` is mixed into
:class:`~agent_sessions.maintenance.DjangoMaintenance`, which supplies the
transactions (``_write``), the progress reports and the archive; this module
knows which events go, in which order, and how to find them in bounded
slices of the table:

- Per session: over-cap sessions are found window by window of the
  ``(session_id, …)`` index, packed into batches whose excess adds up to
  about ``batch_size`` events, and each batch is pruned by one ranked
  statement (:func:`over_cap_sql`): ``prune_event_types_first`` types
  first, then by sequence number, never :data:`PROTECTED_EVENT_TYPES`.
- Across sessions (``max_total_events``): the oldest events (``timestamp``,
  then ``sequence_number``, then id), first of the preferred types, then of
  the others, walked by keyset.

With an archive, a batch's event ids are read (and locked), archived and
deleted by those ids only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import astuple
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.models import Count, Exists, Q, QuerySet

from agent_sessions import models as m
from agent_sessions.archive import ArchiveWriter
from agent_sessions.db import translate_errors
from agent_sessions.eventlog.codec import stored_timestamp
from agent_sessions.locks import AdvisoryLockHolder
from agent_sessions.paging import KeysetOrder
from agent_sessions.retention import RetentionPolicy

if TYPE_CHECKING:
    from agent_sessions.maintenance_run import MaintenanceRun as _Run

__all__ = ["PROTECTED_EVENT_TYPES", "EventPruning", "excess", "over_cap_sql", "pack_by_excess"]

#: Event types that pruning never deletes: they anchor a session's history.
PROTECTED_EVENT_TYPES: frozenset[str] = frozenset(
    {"session_created", "run_started", "run_completed", "run_failed", "error_occurred"}
)

#: Rows fetched per round trip when archived rows are read.
READ_CHUNK = 2000

# Pruning looks for over-cap sessions in windows of this many times batch_size
# events, and at least _MIN_WINDOW_EVENTS: a window's cost is mostly per query
# at small batch sizes, and its memory (one small dict per session) stays bounded.
_WINDOW_FACTOR = 10
_MIN_WINDOW_EVENTS = 10_000

# Migration 0008's function: one max_total_events batch (PostgreSQL).
_PRUNE_OLDEST_SIGNATURE = (
    "asm_prune_oldest_events(timestamp, integer, varchar, varchar[], varchar[], integer,"
    " boolean, bigint, integer, text)"
)
_CALL_PRUNE_OLDEST = (
    "SELECT pruned, last_timestamp, last_sequence, last_id FROM asm_prune_oldest_events("
    "%s::timestamp, %s, %s, %s::varchar[], %s::varchar[], %s, %s, %s, %s, %s)"
)
# A key below every stored event's (timestamp, sequence_number, id): where the walk starts.
_BEFORE_OLDEST = ("-infinity", 0, "")

# The order in which max_total_events prunes: oldest first, a total order.
_OLDEST_FIRST = KeysetOrder(
    ("timestamp", "sequence_number", "id"), ("datetime", "int", "text"), descending=False
)


class EventPruning:
    """The pruning steps of a maintenance run (a mixin of ``DjangoMaintenance``)."""

    if TYPE_CHECKING:
        # What the class this is mixed into provides.
        @property
        def alias(self) -> str: ...
        def _events(self) -> QuerySet[m.Event]: ...
        def _write(self, run: _Run, operation: str) -> AbstractContextManager[None]: ...
        def _one_statement(
            self, run: _Run, operation: str
        ) -> AbstractContextManager[tuple[bool, AdvisoryLockHolder | None]]: ...
        def _report(self, run: _Run, step: str, rows: int, total: int) -> None: ...
        def _hard_deletable(self, cutoff: datetime) -> Exists: ...

    def _prune_sessions(self, policy: RetentionPolicy, run: _Run, *, session_id: str | None) -> int:
        cap = policy.max_events_per_session
        assert cap is not None
        events = self._events()
        if session_id is not None:
            events = events.filter(session_id=session_id)
        if run.hard_delete_cutoff is not None:
            events = events.exclude(self._hard_deletable(run.hard_delete_cutoff))
        unprotected = ~Q(type__in=PROTECTED_EVENT_TYPES)
        over_cap = (
            events.values("session_id")
            .annotate(total=Count("id"), prunable=Count("id", filter=unprotected))
            .filter(total__gt=cap, prunable__gt=0)
            .order_by("session_id")
        )
        if session_id is not None:
            with translate_errors("prune_events"):
                windows: Iterable[list[dict[str, Any]]] = [[dict(g) for g in over_cap]]
        else:
            windows = self._session_windows(over_cap, policy.batch_size)
        pruned = 0
        for groups in windows:
            for chunk in pack_by_excess(groups, cap, policy.batch_size):
                if run.dry_run:
                    pruned += sum(excess(group, cap) for group in chunk)
                    self._report(run, "prune_events", len(chunk), pruned)
                else:
                    first, last = chunk[0]["session_id"], chunk[-1]["session_id"]
                    planned = sum(excess(group, cap) for group in chunk)
                    pruned += self._prune_over_cap(first, last, cap, policy, run, pruned, planned)
        return pruned

    def _session_windows(
        self, over_cap: QuerySet[Any], batch_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the over-cap sessions window by window of about ``10 * batch_size`` events
        (at least 10,000).

        Each window is a range of session ids found by walking the
        ``(session_id, …)`` index, so every aggregate reads a bounded slice of
        the table and the whole walk reads it once, whatever plan the
        database would pick for an open-ended ``GROUP BY … LIMIT``.
        """
        window_rows = max(batch_size * _WINDOW_FACTOR, _MIN_WINDOW_EVENTS)
        last: str | None = None
        while True:
            ahead = self._events() if last is None else self._events().filter(session_id__gt=last)
            page = over_cap if last is None else over_cap.filter(session_id__gt=last)
            with translate_errors("prune_events"):
                bound = list(
                    ahead.order_by("session_id").values_list("session_id", flat=True)[
                        window_rows - 1 : window_rows
                    ]
                )
                if bound:
                    page = page.filter(session_id__lte=bound[0])
                groups = list(page)
            if groups:
                yield groups
            if not bound:
                return
            last = bound[0]

    def _prune_over_cap(
        self,
        first: str,
        last: str,
        cap: int,
        policy: RetentionPolicy,
        run: _Run,
        pruned_before: int,
        planned: int,
    ) -> int:
        """Delete the events above the cap of the sessions ``first..last``, a batch per
        transaction.

        Sessions within the range that are not over the cap have no excess,
        so nothing of theirs qualifies; no list of ids travels to the database.
        Stops once the ``planned`` excess (what a dry run counts) is gone,
        instead of paying for one more, empty, ranking of the range.
        """
        select, params = over_cap_sql(first, last, cap, policy.prune_event_types_first)
        params.append(policy.batch_size)
        pruned = 0
        while True:
            with (
                self._write(run, "prune_events"),
                connections[self.alias].cursor() as cursor,
            ):
                if run.archive is None:
                    cursor.execute(f"DELETE FROM asm_events WHERE id IN ({select})", params)
                    found = deleted = int(cursor.rowcount)
                else:
                    cursor.execute(select, params)
                    ids = [row[0] for row in cursor.fetchall()]
                    found, deleted = len(ids), self._delete_events(ids, run.archive)
            pruned += deleted
            if deleted:
                self._report(run, "prune_events", deleted, pruned_before + pruned)
            if found < policy.batch_size or pruned >= planned:
                return pruned

    def _prune_total(self, policy: RetentionPolicy, run: _Run, already_pruned: int) -> int:
        cap = policy.max_total_events
        assert cap is not None
        events = self._events()
        if run.hard_delete_cutoff is not None:
            events = events.exclude(self._hard_deletable(run.hard_delete_cutoff))
        unprotected = events.exclude(type__in=PROTECTED_EVENT_TYPES)
        with translate_errors("prune_events"):
            excess = events.count() - cap
            if run.dry_run:
                # Per-session pruning already deleted unprotected events only.
                excess -= already_pruned
                if excess <= 0:
                    return 0
                prunable = unprotected.count() - already_pruned
                pruned = max(0, min(excess, prunable))
                self._report(run, "prune_events", pruned, already_pruned + pruned)
                return pruned
        first = [t for t in policy.prune_event_types_first if t not in PROTECTED_EVENT_TYPES]
        protected = sorted(PROTECTED_EVENT_TYPES)
        # Each phase: (only these types, or None for any; never these types).
        phases: list[tuple[list[str] | None, list[str]]] = [
            (first, protected),
            (None, sorted({*protected, *first})),
        ]
        walk = self._prune_oldest_postgres if self._prunes_by_function(run) else self._prune_oldest
        pruned = 0
        for only, never in phases:
            if excess <= pruned:
                break
            if only == []:
                continue
            pruned += walk(
                run, only, never, excess - pruned, policy, reported_before=already_pruned + pruned
            )
        return pruned

    def _prunes_by_function(self, run: _Run) -> bool:
        """Whether batches of ``max_total_events`` can go through migration 0008's function.

        PostgreSQL without an archive (archived rows are read, written and
        synced before their delete, which takes a transaction of several
        statements), once the migration has created the function.
        """
        connection = connections[self.alias]
        if connection.vendor != "postgresql" or run.archive is not None:
            return False
        with translate_errors("prune_events"), connection.cursor() as cursor:
            cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [_PRUNE_OLDEST_SIGNATURE])
            row = cursor.fetchone()
        return bool(row and row[0])

    def _prune_oldest_postgres(
        self,
        run: _Run,
        only: list[str] | None,
        never: list[str],
        limit: int,
        policy: RetentionPolicy,
        *,
        reported_before: int,
    ) -> int:
        """:meth:`_prune_oldest` through ``asm_prune_oldest_events`` (migration 0008).

        A batch is one call: select the next events after the last key,
        delete them, check the run's lock, return their number and the new
        last key. Outside a transaction the call is the batch's whole
        transaction (autocommit, ``synchronous_commit`` off for it alone):
        one round trip, and a statement the server plans once per connection
        instead of for every batch. The lock is checked here before the
        first batch; each batch's own check, just before its commit, is also
        the check before the next one.
        """
        pruned = 0
        after: Sequence[Any] = _BEFORE_OLDEST
        if run.lock is not None:
            run.lock.check()
        with connections[self.alias].cursor() as cursor:
            while pruned < limit:
                size = min(policy.batch_size, limit - pruned)
                with self._one_statement(run, "prune_events") as (own_commit, holder):
                    lock = [None] * 3 if holder is None else astuple(holder)
                    cursor.execute(
                        _CALL_PRUNE_OLDEST, [*after, only, never, size, own_commit, *lock]
                    )
                    row = cursor.fetchone()
                if row is None:
                    break
                deleted, after = int(row[0]), row[1:]
                pruned += deleted
                self._report(run, "prune_events", deleted, reported_before + pruned)
        return pruned

    def _prune_oldest(
        self,
        run: _Run,
        only: list[str] | None,
        never: list[str],
        limit: int,
        policy: RetentionPolicy,
        *,
        reported_before: int,
    ) -> int:
        """Delete up to ``limit`` of the oldest events of types ``only`` (None: any) but never
        ``never``, walking (timestamp, sequence, id).

        Each batch starts right after the previous one's last key: the
        row-value comparison is an index condition on ``asm_events``'
        ``timestamp`` index, so a batch reads from its position on instead
        of rescanning the table from the oldest event (the walk stays linear
        in the table's size). ``reported_before`` is what the step already
        reported (earlier phases, per-session pruning), so progress counts on.
        """
        candidates = self._events().exclude(type__in=never)
        if only is not None:
            candidates = candidates.filter(type__in=only)
        ordered = candidates.order_by(*_OLDEST_FIRST.keys)
        pruned = 0
        last: Sequence[Any] | None = None
        while pruned < limit:
            page = ordered if last is None else ordered.filter(_OLDEST_FIRST.after(last))
            size = min(policy.batch_size, limit - pruned)
            with self._write(run, "prune_events"):
                if run.archive is None:
                    keys = self._delete_oldest(page, size)
                    deleted = len(keys)
                else:
                    keys = list(page.values_list(*_OLDEST_FIRST.keys)[:size])
                    deleted = self._delete_events([key[2] for key in keys], run.archive)
            if not keys:
                break
            pruned += deleted
            last = keys[-1]
            self._report(run, "prune_events", deleted, reported_before + pruned)
        return pruned

    def _delete_oldest(self, page: QuerySet[m.Event], size: int) -> list[tuple[Any, ...]]:
        """Delete the first ``size`` events of ``page`` in one statement; their sort keys, sorted.

        Without an archive nothing needs reading first: the batch is selected
        and deleted by one ``DELETE … WHERE id IN (SELECT … LIMIT n)
        RETURNING`` round trip (PostgreSQL and SQLite ≥ 3.35).
        """
        select, params = page.values("id")[:size].query.sql_with_params()
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                f"DELETE FROM asm_events WHERE id IN ({select}) "
                'RETURNING "timestamp", sequence_number, id',
                params,
            )
            rows = cursor.fetchall()
        return sorted((stored_timestamp(stamp), number, id_) for stamp, number, id_ in rows)

    def _delete_events(self, ids: Sequence[str], archive: ArchiveWriter | None) -> int:
        """Archive (when asked) then delete these events; call inside a transaction."""
        if not ids:
            return 0
        doomed = self._events().filter(id__in=ids)
        if archive is not None:
            # Locked as they are read, and deleted by these ids only: exactly
            # what the archive holds goes.
            rows = doomed.select_for_update().order_by("session_id", "sequence_number")
            archive.write("event", (row.to_domain() for row in rows.iterator(READ_CHUNK)))
            archive.sync()
        return int(doomed.delete()[0])


def excess(group: dict[str, Any], cap: int) -> int:
    """How many of a session's events pruning removes: its excess, within its unprotected ones."""
    return min(int(group["total"]) - cap, int(group["prunable"]))


def pack_by_excess(
    groups: list[dict[str, Any]], cap: int, batch_size: int
) -> Iterator[list[dict[str, Any]]]:
    """Split sessions into runs whose excess adds up to about ``batch_size`` events.

    One transaction then prunes a whole run of sessions (a session whose own
    excess is larger still gets its own run, pruned ``batch_size`` at a time).
    """
    chunk: list[dict[str, Any]] = []
    size = 0
    for group in groups:
        size_of = excess(group, cap)
        if chunk and (size + size_of > batch_size or len(chunk) >= batch_size):
            yield chunk
            chunk, size = [], 0
        chunk.append(group)
        size += size_of
    if chunk:
        yield chunk


def over_cap_sql(
    first: str, last: str, cap: int, prune_first: Sequence[str]
) -> tuple[str, list[Any]]:
    """Select the next events to prune from sessions ``first..last``, in pruning order.

    Ranks each session's unprotected events (``prune_first`` types first,
    then by sequence) and keeps those within the session's excess over the
    cap, where the excess counts protected events too. The caller appends the
    LIMIT parameter. Portable SQL: window functions exist in PostgreSQL and
    SQLite >= 3.25.
    """
    protected = sorted(PROTECTED_EVENT_TYPES)
    not_protected = ", ".join(["%s"] * len(protected))
    if prune_first:
        first_types = ", ".join(["%s"] * len(prune_first))
        priority = f'CASE WHEN e."type" IN ({first_types}) THEN 0 ELSE 1 END'
        priority_params: list[Any] = list(prune_first)
    else:
        priority, priority_params = "0", []
    sql = f"""
        SELECT ranked.id FROM (
            SELECT e.id, e.session_id,
                   ROW_NUMBER() OVER (
                       PARTITION BY e.session_id ORDER BY {priority}, e.sequence_number
                   ) AS position,
                   totals.total - %s AS excess
            FROM asm_events AS e
            JOIN (
                SELECT session_id, COUNT(*) AS total FROM asm_events
                WHERE session_id >= %s AND session_id <= %s
                GROUP BY session_id HAVING COUNT(*) > %s
            ) AS totals ON totals.session_id = e.session_id
            WHERE e.session_id >= %s AND e.session_id <= %s AND e."type" NOT IN ({not_protected})
        ) AS ranked
        WHERE ranked.position <= ranked.excess
        ORDER BY ranked.session_id, ranked.position
        LIMIT %s
    """
    params = [*priority_params, cap, first, last, cap, first, last, *protected]
    return sql, params
