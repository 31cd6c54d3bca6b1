"""The conversation view of a session (or one run): a transcript paged by sequence number.

One page is at most :data:`PAGE_SIZE` events in sequence order, read by
keyset on ``(session_id, sequence_number)`` (never ``OFFSET``), each with a
bounded preview of its ``data`` (:mod:`agent_sessions.admin.previews`), so a
page costs the same for the first and the 12,000th event and for 1 KB or
1 MB payloads. Positions: the newest page (default), ``?after=N`` (the page
after number N; ``after=0`` is the oldest page), ``?before=N`` (the page
before N) and ``?at=N`` (the page starting at N). Filters: ``?run=<run id>``
and ``?type=<event type>`` (repeatable) or ``?show=<group>`` (repeatable,
:data:`TYPE_GROUPS`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.db.models import QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.http import HttpRequest, QueryDict
from django.utils.http import urlencode

from agent_sessions import models
from agent_sessions.admin.display import compact_time, utc_timestamp
from agent_sessions.admin.previews import is_unread, parse_prefix, size_label, with_data_prefix
from agent_sessions.admin.transcript import Block, blocks_for, pair_tool_calls, tokens_of
from agent_sessions.core import EventType
from agent_sessions.errors import ValidationError
from agent_sessions.pricing import active_pricing_table, cost_usd, resolve_rates, run_cost_usd
from agent_sessions.validation import check_id

#: Events per conversation page.
PAGE_SIZE = 50
#: Runs listed in the conversation's run filter and summaries.
RUNS_LIMIT = 100
#: Sequence numbers are PostgreSQL ``integer``s.
MAX_SEQUENCE = 2**31 - 1

#: The ``?show=`` groups of event types.
TYPE_GROUPS: dict[str, tuple[str, ...]] = {
    "messages": ("message_sent", "message_received", "message_streamed"),
    "tools": ("tool_call_started", "tool_call_completed", "tool_call_failed"),
    "errors": (
        "error_occurred",
        "error_recovered",
        "run_failed",
        "session_failed",
        "tool_call_failed",
        "policy_violation",
    ),
    "usage": ("token_usage_updated", "turn_completed"),
    "approvals": ("tool_approval_requested", "tool_approval_granted", "tool_approval_denied"),
    "lifecycle": (
        "session_created",
        "session_started",
        "session_paused",
        "session_resumed",
        "session_completed",
        "session_failed",
        "session_cancelled",
        "run_started",
        "run_completed",
        "run_failed",
        "run_cancelled",
        "run_timeout",
    ),
    "workspace": ("workspace_snapshot_taken", "workspace_diff_computed"),
}
_KNOWN_TYPES = frozenset(t.value for t in EventType)
_HIGHLIGHTS = {
    "error": "asm-error",
    "policy": "asm-policy",
}


def parse_sequence(raw: str | None, *, minimum: int) -> int | None:
    """A sequence-number query parameter, or None when absent or out of range."""
    if raw is None or not raw.isdigit() or len(raw) > 10:
        return None
    value = int(raw)
    return value if minimum <= value <= MAX_SEQUENCE + 1 else None


@dataclass(frozen=True)
class ConversationQuery:
    """What one conversation page shows: filters and position (bad values are dropped)."""

    run_id: str | None = None
    types: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    before: int | None = None
    after: int | None = None

    @classmethod
    def from_request(cls, params: QueryDict) -> ConversationQuery:
        run_id: str | None = params.get("run") or None
        if run_id is not None:
            try:
                run_id = check_id(run_id, "run")
            except ValidationError:
                run_id = None
        types = tuple(sorted({t for t in params.getlist("type") if t in _KNOWN_TYPES}))
        groups = tuple(sorted({g for g in params.getlist("show") if g in TYPE_GROUPS}))
        after = parse_sequence(params.get("after"), minimum=0)
        at = parse_sequence(params.get("at"), minimum=1)
        if at is not None:
            after = at - 1
        before = None if after is not None else parse_sequence(params.get("before"), minimum=1)
        return cls(run_id=run_id, types=types, groups=groups, before=before, after=after)

    @property
    def event_types(self) -> tuple[str, ...]:
        """Every type the filters allow (empty: all)."""
        selected = set(self.types)
        for group in self.groups:
            selected.update(TYPE_GROUPS[group])
        return tuple(sorted(selected))

    def filter_params(self) -> list[tuple[str, str]]:
        """The filters as query parameters (for links that keep them)."""
        params = [("run", self.run_id)] if self.run_id else []
        params += [("show", group) for group in self.groups]
        params += [("type", event_type) for event_type in self.types]
        return params

    def url(self, **position: int) -> str:
        """A query string with these filters at ``position`` (``after=``/``before=``)."""
        params = self.filter_params() + [(k, str(v)) for k, v in position.items()]
        return "?" + urlencode(params) if params else "?"


@dataclass
class Entry:
    """One event of the transcript."""

    event: models.Event
    url: str
    raw_url: str
    blocks: list[Block]
    time: str
    elapsed: str
    cut: bool
    unread_size: str = ""
    tokens: dict[str, int] | None = None
    cost: float | None = None
    highlight: str = ""
    run: dict[str, Any] | None = None
    run_changed: bool = False
    ref: dict[str, Any] = field(default_factory=dict)


def format_elapsed(seconds: float | None) -> str:
    """Time between two events, e.g. ``+350 ms``, ``+4.2 s``, ``+3 min 12 s``."""
    if seconds is None:
        return ""
    sign = "+" if seconds >= 0 else "-"
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{sign}{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{sign}{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{sign}{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{sign}{days} d {hours} h"


def _events(session_id: str, query: ConversationQuery) -> QuerySet[models.Event]:
    events = models.Event.objects.filter(session_id=session_id)
    if query.run_id:
        events = events.filter(run_id=query.run_id)
    if query.event_types:
        events = events.filter(type__in=query.event_types)
    return events


def run_summaries(
    session_id: str,
    extra_ids: Sequence[str] = (),
    *,
    limit: int = RUNS_LIMIT,
    newest_first: bool = False,
) -> dict[str, dict[str, Any]]:
    """The session's runs (at most ``limit``, plus ``extra_ids``) with tokens and cost.

    Runs come oldest first, or newest first with ``newest_first``.

    Returns:
        ``{run_id: {"id", "status", "provider", "model", "tokens", "cost",
        "cost_source", "rates", "started_at", "ended_at"}}``, where ``cost``
        is the stored cost or the pricing table's (as the session's cost
        summary counts it) and ``rates`` price a turn of this run.
    """
    columns = ("id", "status", "provider", "token_usage", "cost_usd", "started_at", "ended_at")
    base = models.Run.objects.only(*columns).annotate(
        model=KeyTextTransform("model", "provider_metadata")
    )
    order = ("-started_at", "-id") if newest_first else ("started_at", "id")
    runs = list(base.filter(session_id=session_id).order_by(*order)[:limit]) if limit else []
    missing = sorted(set(extra_ids) - {run.id for run in runs})
    if missing:
        runs += list(base.filter(pk__in=missing))
    table = active_pricing_table()
    summaries: dict[str, dict[str, Any]] = {}
    for run in runs:
        model = getattr(run, "model", None)
        model = None if model is None else str(model)
        cost = run_cost_usd(
            stored_cost=run.cost_usd,
            provider=run.provider,
            model=model,
            token_usage=run.token_usage,
            table=table,
        )
        summaries[run.id] = {
            "id": run.id,
            "status": run.status,
            "provider": run.provider,
            "model": model,
            "token_usage": run.token_usage or {},
            "cost": cost,
            "cost_source": (
                "stored" if run.cost_usd is not None else ("pricing" if cost is not None else "")
            ),
            "rates": resolve_rates(table, run.provider, model),
            "started_at": compact_time(run.started_at),
            "ended_at": compact_time(run.ended_at),
        }
    return summaries


def conversation_page(
    session_id: str,
    query: ConversationQuery,
    *,
    event_url: Callable[[str], str],
    raw_url: Callable[[str], str],
    runs: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """One page of the transcript and its navigation.

    Args:
        session_id: The session.
        query: Filters and position.
        event_url: The admin page of an event id.
        raw_url: The raw-JSON download of an event id.
        runs: :func:`run_summaries` of the runs that may appear (empty when
            the user may not see runs: no run tokens or costs are shown).

    Returns:
        ``entries`` (oldest first), ``has_older``, ``has_newer``, the
        ``first``/``last`` sequence numbers shown and navigation URLs.
    """
    events = _events(session_id, query)
    columns = ("id", "type", "timestamp", "sequence_number", "run_id", "provider")
    page_rows = with_data_prefix(events.only(*columns))
    if query.after is not None:
        rows = list(
            page_rows.filter(sequence_number__gt=query.after).order_by("sequence_number")[
                : PAGE_SIZE + 1
            ]
        )
        has_newer = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        previous = (
            events.filter(sequence_number__lte=query.after)
            .order_by("-sequence_number")
            .values_list("timestamp", flat=True)
            .first()
            if rows
            else None
        )
        has_older = previous is not None or (
            not rows and events.filter(sequence_number__lte=query.after).exists()
        )
    else:
        newest = page_rows.order_by("-sequence_number")
        if query.before is not None:
            newest = newest.filter(sequence_number__lt=query.before)
        rows = list(newest[: PAGE_SIZE + 1])
        has_older = len(rows) > PAGE_SIZE
        previous = rows[PAGE_SIZE].timestamp if has_older else None
        rows = rows[:PAGE_SIZE][::-1]
        has_newer = (
            query.before is not None and events.filter(sequence_number__gte=query.before).exists()
        )
    entries = build_entries(rows, previous, event_url=event_url, raw_url=raw_url, runs=runs)
    first = rows[0].sequence_number if rows else None
    last = rows[-1].sequence_number if rows else None
    return {
        "entries": entries,
        "has_older": has_older,
        "has_newer": has_newer,
        "first_sequence": first,
        "last_sequence": last,
        "newest_url": query.url(),
        "oldest_url": query.url(after=0),
        "older_url": query.url(before=first) if has_older and first is not None else None,
        "newer_url": query.url(after=last) if has_newer and last is not None else None,
    }


def build_entries(
    rows: Sequence[models.Event],
    previous: dt.datetime | None,
    *,
    event_url: Callable[[str], str],
    raw_url: Callable[[str], str],
    runs: Mapping[str, dict[str, Any]],
) -> list[Entry]:
    """Transcript entries of ``rows`` (oldest first, annotated with ``data_prefix``).

    Args:
        rows: Events in sequence order.
        previous: The timestamp of the event before the first row, if any
            (the first entry's elapsed time).
        event_url: The admin page of an event id.
        raw_url: The raw-JSON download of an event id.
        runs: Run summaries (for per-run headers and per-turn costs).
    """
    entries: list[Entry] = []
    last_run: str | None = None
    for row in rows:
        unread = is_unread(row)
        data, cut = parse_prefix(getattr(row, "data_prefix", None))
        blocks = blocks_for(row.type, data)
        if unread:
            cut = True
            for block in blocks:
                block.text = ""
        tokens = tokens_of(data)
        run = runs.get(row.run_id) if row.run_id else None
        cost = None
        if tokens is not None and run is not None and run["rates"] is not None:
            cost = cost_usd(run["rates"], tokens)
        elapsed = (row.timestamp - previous).total_seconds() if previous is not None else None
        highlight = next((_HIGHLIGHTS[b.kind] for b in blocks if b.kind in _HIGHLIGHTS), "")
        if not highlight and any(b.kind == "tool_result" and b.is_error for b in blocks):
            highlight = "asm-error"
        url = event_url(row.id)
        entry = Entry(
            event=row,
            url=url,
            raw_url=raw_url(row.id),
            blocks=blocks,
            time=utc_timestamp(row.timestamp),
            elapsed=format_elapsed(elapsed),
            cut=cut,
            unread_size=size_label(getattr(row, "data_size", None)) if unread else "",
            tokens=tokens,
            cost=cost,
            highlight=highlight,
            run=run,
            run_changed=bool(row.run_id) and row.run_id != last_run,
            ref={
                "sequence_number": row.sequence_number,
                "url": url,
                "run_id": row.run_id,
                "timestamp": row.timestamp,
            },
        )
        entries.append(entry)
        last_run = row.run_id
        previous = row.timestamp
    pair_tool_calls((entry.ref, entry.blocks) for entry in entries)
    for block in (b for entry in entries for b in entry.blocks):
        if block.pair and block.pair.get("elapsed") is not None:
            block.pair["elapsed_text"] = format_elapsed(block.pair["elapsed"])
    return entries


def fragment_page(
    session_id: str,
    query: ConversationQuery,
    *,
    event_url: Callable[[str], str],
    raw_url: Callable[[str], str],
    runs: Mapping[str, dict[str, Any]],
    after: int,
) -> tuple[list[Entry], int]:
    """Entries after sequence number ``after`` (the live tail's next rows).

    Returns:
        ``(entries, last)``: at most :data:`PAGE_SIZE` entries and the
        highest sequence number shown (``after`` when none).
    """
    page = conversation_page(
        session_id,
        replace(query, after=after, before=None),
        event_url=event_url,
        raw_url=raw_url,
        runs=runs,
    )
    return page["entries"], page["last_sequence"] or after


def request_query(request: HttpRequest) -> ConversationQuery:
    """The :class:`ConversationQuery` of a request's GET parameters."""
    return ConversationQuery.from_request(request.GET)
