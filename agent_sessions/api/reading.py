"""What the API reads, as short synchronous database accesses.

Each function here is one unit of database work that a view runs in a worker
thread (:func:`agent_sessions.aio.run_in_worker`), which closes or recycles
the thread's connection afterwards, so that nothing holds a connection
between two reads, however long a stream or long-poll lasts. Query
parameters are parsed here too, into the typed arguments of the store and
the QueryAPI, so that bad input becomes a
:class:`~agent_sessions.errors.ValidationError` like everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, overload

from django.db import router
from django.http import QueryDict

from agent_sessions import models
from agent_sessions.conf import app_settings
from agent_sessions.core import Event, EventType, Run, Session
from agent_sessions.db import db_for_read, translate_errors
from agent_sessions.errors import NotFoundError, ValidationError
from agent_sessions.filters import SessionFilterSet
from agent_sessions.query import SESSION_ORDERS, DjangoQueryAPI
from agent_sessions.store import DjangoSessionStore
from agent_sessions.validation import check_choice, check_id, check_int

__all__ = [
    "EventFilter",
    "EventWindow",
    "ExportRecord",
    "event_store",
    "export_pages",
    "int_param",
    "parse_event_filter",
    "read_window",
    "require_known_session",
    "session_detail",
    "session_page",
]

#: One line of an export: ``(kind, record)``, as in :mod:`agent_sessions.archive`.
ExportRecord = tuple[str, Session | Run | Event]

#: Rows per query while exporting: memory stays flat whatever the session's size.
EXPORT_PAGE_SIZE = 500


@overload
def int_param(
    query: QueryDict, name: str, *, minimum: int, maximum: int | None = ..., default: int
) -> int: ...
@overload
def int_param(
    query: QueryDict,
    name: str,
    *,
    minimum: int,
    maximum: int | None = ...,
    default: None = ...,
) -> int | None: ...
def int_param(
    query: QueryDict,
    name: str,
    *,
    minimum: int,
    maximum: int | None = None,
    default: int | None = None,
) -> int | None:
    """An integer query parameter, or ``default`` when absent.

    Raises:
        ValidationError: ``validation_error`` (``details["field"]`` = ``name``)
            when it is not a decimal integer in range.
    """
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    # int() would also accept "1_000" and, through str → int, huge digit strings.
    if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= 19):
        raise ValidationError(
            "validation_error", f"{name} must be an integer, got {raw[:40]!r}", field=name
        )
    return check_int(int(text), name, minimum=minimum, maximum=maximum)


def event_store() -> DjangoSessionStore:
    """The store the event endpoints read through: the database events are written to.

    Counter and events must come from the same database, and a reader that
    tails appends must not lag behind them on a replica (the store's own
    long-poll reads there too).
    """
    return DjangoSessionStore(using=router.db_for_write(models.Event))


# --------------------------------------------------------------------------- sessions


def session_page(query: QueryDict) -> dict[str, Any]:
    """``{"results", "next_cursor"}``: one page of ``search_sessions``.

    Filters are :class:`~agent_sessions.filters.SessionFilterSet`'s query
    parameters (``agent_id``, ``status``, ``provider``, ``tags``,
    ``created_after``, ``created_before``, ``include_deleted``), plus
    ``order_by``, ``limit`` and ``cursor``.
    """
    form = SessionFilterSet(query, queryset=models.Session.objects.none()).form
    if not form.is_valid():
        errors = form.errors
        code = "invalid_status" if "status" in errors else "validation_error"
        field = next(iter(errors))
        raise ValidationError(
            code,
            f"invalid filters: {errors.as_text()}",
            {"errors": errors.get_json_data()},
            field=field,
        )
    filters = {
        name: value for name, value in form.cleaned_data.items() if value not in (None, "", [])
    }
    if "include_deleted" in filters:
        filters["include_deleted"] = bool(filters["include_deleted"])
    order_by = query.get("order_by") or "updated_at_desc"
    if order_by not in SESSION_ORDERS:
        raise ValidationError(
            "validation_error",
            f"order_by {order_by[:40]!r} is not one of: {', '.join(SESSION_ORDERS)}",
            field="order_by",
        )
    page = DjangoQueryAPI().search_sessions(
        **filters,
        order_by=order_by,
        limit=int_param(query, "limit", minimum=1, maximum=app_settings.QUERY_MAX_LIMIT),
        cursor=query.get("cursor") or None,
        with_total=False,
    )
    return {
        "results": [session.to_dict() for session in page.sessions],
        "next_cursor": page.cursor,
    }


def session_detail(session_id: str) -> dict[str, Any]:
    """``{"session", "runs", "stats"}`` for one session (soft-deleted ones too).

    Runs are the oldest first, at most ``QUERY_MAX_LIMIT`` of them (a session
    with more is exported rather than shown); ``stats`` is
    :meth:`~agent_sessions.query.DjangoQueryAPI.get_session_stats`.

    Raises:
        NotFoundError: ``session_not_found`` when there is no session row.
    """
    session_id = check_id(session_id, "session_id")
    store = DjangoSessionStore()
    session = store.get_session(session_id)
    runs = store.list_runs(session_id, limit=app_settings.QUERY_MAX_LIMIT)
    stats = DjangoQueryAPI().get_session_stats(session_id)
    for key in ("first_event_at", "last_event_at"):
        if stats[key] is not None:
            stats[key] = stats[key].isoformat()
    return {
        "session": session.to_dict(),
        "runs": [run.to_dict() for run in runs],
        "stats": stats,
    }


def require_known_session(session_id: str) -> None:
    """Refuse a session id that has neither a session row nor any event.

    Events without a session row are legal data (CONTRACT §4) and stay
    readable, so the event endpoints accept such an id.

    Raises:
        ValidationError: ``session_id`` is not a valid id.
        NotFoundError: ``session_not_found``.
    """
    session_id = check_id(session_id, "session_id")
    alias = router.db_for_write(models.Event)
    with translate_errors("get_events"):
        known = (
            models.Session.objects.using(alias).filter(id=session_id).exists()
            or models.Event.objects.using(alias).filter(session_id=session_id).exists()
        )
    if not known:
        raise NotFoundError("session_not_found", details={"session_id": session_id})


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events of a session a reader wants, parsed from the query string.

    Attributes:
        run_id: Only this run's events.
        types: Only these event types (any of); None for all.
    """

    run_id: str | None = None
    types: tuple[str, ...] | None = None

    @property
    def filtered(self) -> bool:
        """True when some of the session's events may be left out."""
        return self.run_id is not None or self.types is not None


def parse_event_filter(query: QueryDict) -> EventFilter:
    """``run_id`` and ``type`` (repeatable, or comma-separated) from the query string.

    Raises:
        ValidationError: ``invalid_event_type`` for an unknown type,
            ``validation_error`` for a bad ``run_id``.
    """
    run_id = query.get("run_id") or None
    types: list[str] = []
    for value in query.getlist("type"):
        for part in value.split(","):
            if part:
                types.append(check_choice(part, EventType, "type", code="invalid_event_type").value)
    return EventFilter(
        run_id=check_id(run_id, "run_id", required=False),
        types=tuple(types) if types else None,
    )


@dataclass(frozen=True, slots=True)
class EventWindow:
    """Events read after a position, and the position to read after next time.

    Attributes:
        events: Matching events in sequence order.
        position: Every matching event with a sequence number up to this one
            has been read (it is the resume point: pass it as ``after``).
    """

    events: list[Event]
    position: int


def read_window(
    store: DjangoSessionStore,
    session_id: str,
    event_filter: EventFilter,
    *,
    after: int,
    limit: int,
) -> EventWindow:
    """Read up to ``limit`` matching events after ``after`` (one short database access).

    Why the counter is read first: the counter and the events it numbers are
    committed together, so every event numbered up to the counter's value is
    visible to the query that follows. When the page is not full, the reader
    has therefore seen every matching event up to that value, even if the
    filter left all of them out (or retention pruned them), and the next read
    — or the wait for a new append — starts there instead of scanning the
    same rows again.
    """
    counter = store.get_latest_sequence(session_id)
    events = store.get_events(
        session_id,
        after=after,
        run_id=event_filter.run_id,
        type=list(event_filter.types) if event_filter.types else None,
        limit=limit,
    )
    last = events[-1].sequence_number if events else None
    if last is not None and len(events) >= limit:
        return EventWindow(events, last)
    return EventWindow(events, max(after, counter, last or 0))


# --------------------------------------------------------------------------- export


def export_pages(session_id: str) -> Iterator[list[ExportRecord]]:
    """Yield the session's export one page at a time, each page one database query.

    The first page is ``[("session", Session)]``, then pages of ``("run",
    Run)`` (oldest started first), then pages of ``("event", Event)`` (by
    sequence number). Keyset-paged, :data:`EXPORT_PAGE_SIZE` rows per query,
    so memory stays flat whatever the session's size; no server-side cursor,
    so it works through a transaction pooler. Each ``next()`` is a short
    database access of its own: callers run them in a worker thread.

    Raises:
        NotFoundError: ``session_not_found`` (on the first ``next()``).
        ValidationError: ``session_id`` is not a valid id (on the first ``next()``).
    """
    session_id = check_id(session_id, "session_id")
    query_api = DjangoQueryAPI()
    yield [("session", DjangoSessionStore().get_session(session_id))]
    cursor: str | None = None
    while True:
        runs = query_api.search_runs(
            session_id=session_id,
            order_by="started_at_asc",
            limit=EXPORT_PAGE_SIZE,
            cursor=cursor,
        )
        if runs.runs:
            yield [("run", run) for run in runs.runs]
        cursor = runs.cursor
        if cursor is None:
            break
    # Events are read where the session was read, by keyset on the sequence number.
    store = DjangoSessionStore(using=db_for_read(None, models.Session))
    after: int | None = None
    while True:
        events = store.get_events(session_id, after=after, limit=EXPORT_PAGE_SIZE)
        if events:
            yield [("event", event) for event in events]
        if len(events) < EXPORT_PAGE_SIZE:
            break
        after = events[-1].sequence_number
