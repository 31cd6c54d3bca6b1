"""Read-only search and reporting across sessions, runs and events (CONTRACT §6).

:class:`DjangoQueryAPI` validates its typed arguments, filters through the
FilterSets of :mod:`agent_sessions.filters`, pages with signed keyset cursors
(:mod:`agent_sessions.paging`) and computes statistics, usage and cost with
aggregate SQL (:mod:`agent_sessions.summaries`)::

    from agent_sessions.query import DjangoQueryAPI

    api = DjangoQueryAPI()
    page = api.search_sessions(status=["active", "paused"], tags=["prod"], limit=20)
    while page.cursor:
        page = api.search_sessions(status=["active", "paused"], tags=["prod"],
                                   limit=20, cursor=page.cursor)

No call loads more than one page of rows into Python, except
:meth:`DjangoQueryAPI.export_session`, whose result is the whole session.
:meth:`DjangoQueryAPI.search_text` runs the full-text index's SQL from
:mod:`agent_sessions.search` with the same FilterSets' conditions.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import django_filters
from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections
from django.db.models import Exists, Model, OuterRef, QuerySet

from agent_sessions import models, summaries
from agent_sessions.aio import QueryAsyncMixin
from agent_sessions.artifacts import DjangoArtifactRegistry
from agent_sessions.conf import app_settings
from agent_sessions.core import EventType, RunStatus, SessionStatus
from agent_sessions.db import (
    check_alias,
    db_for_read,
    reconnecting,
    savepoint_in_transaction,
    translate_errors,
)
from agent_sessions.errors import (
    MigrationRequiredError,
    NotFoundError,
    SearchUnavailableError,
    StorageError,
    ValidationError,
)
from agent_sessions.filters import EventFilterSet, RunFilterSet, SessionFilterSet, total_tokens
from agent_sessions.paging import (
    EVENT_ORDERS,
    RUN_ORDERS,
    SESSION_ORDERS,
    TOTAL_TOKENS,
    KeysetOrder,
    RowsAfter,
    check_limit,
    check_order,
    cursor_position,
    decode_cursor,
    encode_cursor,
    read_all,
    read_page,
)
from agent_sessions.pricing import active_pricing_table, check_pricing_table
from agent_sessions.results import (
    CostSummary,
    EventPage,
    RunPage,
    SessionPage,
    TextHit,
    TextPage,
    UsageSummary,
)
from agent_sessions.search import (
    SEARCH_INDEX_DROPPED,
    RankedId,
    TextQuery,
    fts5_available,
    parse_text_query,
    ranked_matches,
    snippets,
)
from agent_sessions.summaries import UNKNOWN
from agent_sessions.telemetry import query_attributes, traced
from agent_sessions.validation import (
    BIGINT_MAX,
    check_bool,
    check_choice,
    check_datetime,
    check_id,
    check_int,
    check_tags,
)

__all__ = [
    "EVENT_ORDERS",
    "RUN_ORDERS",
    "SESSION_ORDERS",
    "UNKNOWN",
    "DjangoQueryAPI",
    "KeysetOrder",
    "RowsAfter",
]

_M = TypeVar("_M", bound=Model)


# --------------------------------------------------------------------------- argument checks


def _any_of(value: object, field: str, check_item: Callable[[object], str]) -> list[str] | None:
    """One value or a collection of values (any of), each checked; None when not given."""
    if value is None:
        return None
    if isinstance(value, str):
        return [check_item(value)]
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValidationError(
            "validation_error",
            f"{field} must be a string or a list of strings, not {type(value).__name__}",
            field=field,
        )
    return [check_item(item) for item in value]


def _ids(field: str) -> Callable[[object], str]:
    return lambda item: check_id(item, field)


def _choice(enum_class: type[enum.Enum], field: str, code: str) -> Callable[[object], str]:
    def check(item: object) -> str:
        if not isinstance(item, str):
            raise ValidationError(code, f"{field} {item!r} is not a string", field=field)
        return str(check_choice(item, enum_class, field, code=code).value)

    return check


def _filtered(
    filterset_class: type[django_filters.FilterSet],
    data: dict[str, Any],
    queryset: QuerySet[_M],
) -> QuerySet[_M]:
    """Apply a FilterSet to already validated arguments (None means "not given")."""
    filterset = filterset_class(
        {name: value for name, value in data.items() if value is not None}, queryset=queryset
    )
    if not filterset.is_valid():
        # The arguments were validated already; this only guards against drift.
        errors = filterset.form.errors
        raise ValidationError(
            "validation_error",
            f"invalid filters: {errors.as_text()}",
            {"errors": errors.get_json_data()},
        )
    return filterset.qs


# --------------------------------------------------------------------------- the API


class DjangoQueryAPI(QueryAsyncMixin):
    """The :class:`~agent_sessions.ports.QueryAPI` on a Django database (read-only).

    Each method is documented once, on the Protocol (``inspect.getdoc`` and
    ``help()`` find it there). Here: limits come from the settings
    ``QUERY_DEFAULT_LIMIT``, ``QUERY_EVENT_DEFAULT_LIMIT`` and
    ``QUERY_MAX_LIMIT``; :meth:`search_text` raises
    ``SearchUnavailableError`` on SQLite without FTS5.

    Args:
        using: Database alias to read from; None follows the database routers,
            whose read database may be a lagging replica: searches, stats and
            summaries are fine a little stale (see ``docs/deploying.md``).
        consistent: With the routers, read from the write database instead.
            :func:`agent_sessions.routing.read_from_primary` does the same for
            a block, and reads inside an ``atomic()`` block on the write
            database stay on it.
    """

    def __init__(self, using: str | None = None, *, consistent: bool = False) -> None:
        self.using = check_alias(using)
        self.consistent = consistent

    def _objects(self, model: type[_M]) -> QuerySet[_M]:
        return model._default_manager.using(
            db_for_read(self.using, model, consistent=self.consistent)
        )

    # ----------------------------------------------------------------- sessions

    @traced("search_sessions", query_attributes)
    @reconnecting
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
        order_name, order = check_order(order_by, SESSION_ORDERS)
        limit = check_limit(limit, app_settings.QUERY_DEFAULT_LIMIT)
        data = {
            "agent_id": check_id(agent_id, "agent_id", required=False),
            "status": _any_of(status, "status", _choice(SessionStatus, "status", "invalid_status")),
            "provider": _any_of(provider, "provider", _ids("provider")),
            "tags": None if tags is None else check_tags(tags, "tags"),
            "created_after": check_datetime(created_after, "created_after", required=False),
            "created_before": check_datetime(created_before, "created_before", required=False),
            "include_deleted": check_bool(include_deleted, "include_deleted"),
        }
        with_total = check_bool(with_total, "with_total")
        position = cursor_position(cursor, "sessions", order_name, order)
        with translate_errors("search_sessions"):
            queryset = _filtered(SessionFilterSet, data, self._objects(models.Session))
            total = queryset.count() if with_total else None
            rows, next_cursor = read_page(queryset, "sessions", order_name, order, position, limit)
        return SessionPage([row.to_domain() for row in rows], next_cursor, total)

    @traced("get_session_stats", query_attributes)
    @reconnecting
    def get_session_stats(self, session_id: str) -> dict[str, Any]:
        session_id = check_id(session_id, "session_id")
        with translate_errors("get_session_stats"):
            if not self._objects(models.Session).filter(id=session_id).exists():
                raise NotFoundError("session_not_found", details={"session_id": session_id})
            stats = summaries.session_stats(
                self._objects(models.Run).filter(session_id=session_id),
                self._objects(models.Event).filter(session_id=session_id),
            )
        # The SessionStats shape, annotated as a plain dict while a caller
        # (api.reading.session_detail) rewrites its datetimes in place.
        return dict(stats)

    # ----------------------------------------------------------------- runs

    @traced("search_runs", query_attributes)
    @reconnecting
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
        order_name, order = check_order(order_by, RUN_ORDERS)
        limit = check_limit(limit, app_settings.QUERY_DEFAULT_LIMIT)
        data = {
            "session_id": check_id(session_id, "session_id", required=False),
            "provider": _any_of(provider, "provider", _ids("provider")),
            "status": _any_of(status, "status", _choice(RunStatus, "status", "invalid_status")),
            "started_after": check_datetime(started_after, "started_after", required=False),
            "started_before": check_datetime(started_before, "started_before", required=False),
            "min_tokens": check_int(
                min_tokens, "min_tokens", minimum=0, maximum=BIGINT_MAX, required=False
            ),
        }
        position = cursor_position(cursor, "runs", order_name, order)
        with translate_errors("search_runs"):
            queryset = _filtered(RunFilterSet, data, self._objects(models.Run))
            if TOTAL_TOKENS in order.keys:
                queryset = queryset.annotate(**{TOTAL_TOKENS: total_tokens()})
            rows, next_cursor = read_page(queryset, "runs", order_name, order, position, limit)
        return RunPage([row.to_domain() for row in rows], next_cursor)

    def _run_filters(
        self,
        *,
        session_id: object = None,
        agent_id: object = None,
        provider: object = None,
        since: object = None,
        until: object = None,
    ) -> dict[str, Any]:
        return {
            "session_id": check_id(session_id, "session_id", required=False),
            "agent_id": check_id(agent_id, "agent_id", required=False),
            "provider": _any_of(provider, "provider", _ids("provider")),
            "started_after": check_datetime(since, "since", required=False),
            "started_before": check_datetime(until, "until", required=False),
        }

    @traced("get_usage_summary", query_attributes)
    @reconnecting
    def get_usage_summary(
        self,
        *,
        session_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> UsageSummary:
        data = self._run_filters(session_id=session_id, provider=provider, since=since, until=until)
        with translate_errors("get_usage_summary"):
            runs = _filtered(RunFilterSet, data, self._objects(models.Run))
            return summaries.usage_summary(runs)

    @traced("get_cost_summary", query_attributes)
    @reconnecting
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
        data = self._run_filters(
            session_id=session_id, agent_id=agent_id, provider=provider, since=since, until=until
        )
        table = (
            active_pricing_table()
            if pricing_table is None
            else check_pricing_table(pricing_table, "pricing_table")
        )
        with translate_errors("get_cost_summary"):
            runs = _filtered(RunFilterSet, data, self._objects(models.Run))
            return summaries.cost_summary(runs, table)

    # ----------------------------------------------------------------- events

    @staticmethod
    def _event_filters(
        session_ids: object,
        run_ids: object,
        types: object,
        providers: object,
        since: object,
        until: object,
        correlation_id: object,
    ) -> dict[str, Any]:
        """The checked filters of :meth:`search_events` and :meth:`count_events`."""
        return {
            "session_ids": _any_of(session_ids, "session_ids", _ids("session_ids")),
            "run_ids": _any_of(run_ids, "run_ids", _ids("run_ids")),
            "types": _any_of(types, "types", _choice(EventType, "types", "invalid_event_type")),
            "providers": _any_of(providers, "providers", _ids("providers")),
            "since": check_datetime(since, "since", required=False),
            "until": check_datetime(until, "until", required=False),
            "correlation_id": check_id(correlation_id, "correlation_id", required=False),
        }

    @traced("search_events", query_attributes)
    @reconnecting
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
        order_name, order = check_order(order_by, EVENT_ORDERS)
        limit = check_limit(limit, app_settings.QUERY_EVENT_DEFAULT_LIMIT)
        data = self._event_filters(
            session_ids, run_ids, types, providers, since, until, correlation_id
        )
        position = cursor_position(cursor, "events", order_name, order)
        with translate_errors("search_events"):
            queryset = _filtered(EventFilterSet, data, self._objects(models.Event))
            rows, next_cursor = read_page(queryset, "events", order_name, order, position, limit)
        return EventPage([row.to_domain() for row in rows], next_cursor)

    @traced("count_events", query_attributes)
    @reconnecting
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
        data = self._event_filters(
            session_ids, run_ids, types, providers, since, until, correlation_id
        )
        with translate_errors("count_events"):
            return _filtered(EventFilterSet, data, self._objects(models.Event)).count()

    # ----------------------------------------------------------------- full-text search

    @traced("search_text", query_attributes)
    @reconnecting
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
        query = parse_text_query(q)
        limit = check_limit(limit, app_settings.QUERY_EVENT_DEFAULT_LIMIT)
        data = {
            "session_ids": _any_of(session_ids, "session_ids", _ids("session_ids")),
            "types": _any_of(types, "types", _choice(EventType, "types", "invalid_event_type")),
            "since": check_datetime(since, "since", required=False),
            "until": check_datetime(until, "until", required=False),
        }
        agent_id = check_id(agent_id, "agent_id", required=False)
        include_deleted = check_bool(include_deleted, "include_deleted")
        cursor_order = _text_cursor_order(query)
        after = None
        if cursor is not None:
            after = _TEXT_ORDER.decode(
                decode_cursor(cursor, "text", cursor_order, len(_TEXT_ORDER.keys))
            )
        if query.is_empty:
            return TextPage([], None)
        alias = db_for_read(self.using, models.Event, consistent=self.consistent)
        narrowed = agent_id is not None or any(value is not None for value in data.values())
        with (
            _search_available(alias),
            translate_errors("search_text"),
            savepoint_in_transaction(alias),
        ):
            events = _filtered(EventFilterSet, data, self._objects(models.Event))
            sessions = self._objects(models.Session).filter(id=OuterRef("session_id"))
            if agent_id is not None:
                events = events.filter(Exists(sessions.filter(agent_id=agent_id)))
            if not include_deleted:
                events = events.exclude(Exists(sessions.filter(deleted_at__isnull=False)))
            try:
                if narrowed:
                    found = self._narrowed_matches(alias, query, events, after, limit + 1)
                else:
                    found = self._screened_matches(alias, query, events, after, limit + 1)
            except EmptyResultSet:
                return TextPage([], None)
            except ValueError:
                raise ValidationError(
                    "invalid_cursor", "cursor holds an unexpected position", field="cursor"
                ) from None
            page = found[:limit]
            texts = snippets(alias, query, [match.event_id for match, _ in page])
        hits = [
            TextHit(row.to_domain(), match.rank, texts.get(match.event_id, ""))
            for match, row in page
        ]
        next_cursor = None
        if len(found) > limit:
            next_cursor = encode_cursor("text", cursor_order, list(page[-1][0].position))
        return TextPage(hits, next_cursor)

    def _narrowed_matches(
        self,
        alias: str,
        query: TextQuery,
        events: QuerySet[models.Event],
        after: list[Any] | None,
        wanted: int,
    ) -> list[tuple[RankedId, models.Event]]:
        # Explicit filters can leave few matches: rank only those, joined to their events.
        where = _where_sql(events, alias)
        found = ranked_matches(alias, query, after=after, count=wanted, where=where)
        rows = self._objects(models.Event).in_bulk([match.event_id for match in found])
        return [(match, rows[match.event_id]) for match in found if match.event_id in rows]

    def _screened_matches(
        self,
        alias: str,
        query: TextQuery,
        events: QuerySet[models.Event],
        after: list[Any] | None,
        wanted: int,
    ) -> list[tuple[RankedId, models.Event]]:
        # No explicit filter: rank from the index alone (no join per match, the
        # cost of a common word), then keep the candidates whose events pass
        # the default filters (live sessions); read further candidates in the
        # same order while too many were screened out.
        batch = max(2 * wanted, _MIN_CANDIDATES)
        kept: list[RankedId] = []
        while True:
            candidates = ranked_matches(alias, query, after=after, count=batch)
            passing = set(
                events.filter(id__in=[m.event_id for m in candidates]).values_list("id", flat=True)
            )
            kept.extend(match for match in candidates if match.event_id in passing)
            if len(kept) >= wanted or len(candidates) < batch:
                break
            after = list(candidates[-1].position)
            batch = min(batch * 4, _MAX_CANDIDATES)
        # Full rows only for what is returned.
        rows = events.in_bulk([match.event_id for match in kept[:wanted]])
        return [(match, rows[match.event_id]) for match in kept[:wanted] if match.event_id in rows]

    # ----------------------------------------------------------------- export

    @traced("export_session", query_attributes)
    @reconnecting
    def export_session(self, session_id: str, *, include_artifacts: bool = False) -> dict[str, Any]:
        session_id = check_id(session_id, "session_id")
        include_artifacts = check_bool(include_artifacts, "include_artifacts")
        with translate_errors("export_session"):
            row = self._objects(models.Session).filter(id=session_id).first()
            if row is None:
                raise NotFoundError("session_not_found", details={"session_id": session_id})
            runs = self._objects(models.Run).filter(session_id=session_id)
            events = self._objects(models.Event).filter(session_id=session_id)
            export: dict[str, Any] = {
                "session": row.to_domain(),
                "runs": read_all(runs, _EXPORT_RUNS, _EXPORT_PAGE),
                "events": read_all(events, _EXPORT_EVENTS, _EXPORT_PAGE),
            }
        if include_artifacts:
            export["artifacts"] = DjangoArtifactRegistry(
                self.using, consistent=self.consistent
            ).list_by_session(session_id)
        return export


#: Page size and orders of :meth:`DjangoQueryAPI.export_session`'s reads.
_EXPORT_PAGE = 2000
_EXPORT_RUNS = KeysetOrder(("started_at", "id"), ("datetime", "text"), descending=False)
_EXPORT_EVENTS = KeysetOrder(("sequence_number", "id"), ("int", "text"), descending=False)


#: ``search_text``'s order: rank, then newest, then id, all descending (the
#: timestamp travels as the index stores it, so positions compare exactly).
_TEXT_ORDER = KeysetOrder(("rank", "timestamp", "id"), ("number", "text", "text"), descending=True)
#: The fewest and the most candidates one ranking query of search_text reads.
_MIN_CANDIDATES = 50
_MAX_CANDIDATES = 20_000


def _text_cursor_order(query: TextQuery) -> str:
    # The cursor's signature covers the query text, so a cursor reused with another q fails.
    digest = hashlib.sha256(query.text.encode("utf-8")).hexdigest()[:32]
    return f"rank:{digest}"


def _where_sql(queryset: QuerySet[Any], alias: str) -> tuple[str, list[Any]] | None:
    """The WHERE condition of ``queryset`` as SQL on ``"asm_events"``; None when it has none.

    Raises:
        EmptyResultSet: the filters can match nothing.
    """
    query = queryset.query
    if not query.where:
        return None
    compiler = query.get_compiler(using=alias)
    try:
        sql, params = compiler.compile(query.where)
    except FullResultSet:
        return None
    return sql, list(params)


@contextmanager
def _search_available(alias: str) -> Iterator[None]:
    """``SearchUnavailableError`` for a missing index: SQLite without FTS5, or one dropped
    (``asm_search_index --drop``), told by the table the error names (no query: the
    transaction may be aborted). Any other failure passes as is."""
    try:
        yield
    except (MigrationRequiredError, StorageError) as exc:
        if connections[alias].vendor == "sqlite" and not fts5_available():
            raise SearchUnavailableError(details=exc.details) from exc
        cause = str(exc.details.get("cause", ""))
        if isinstance(exc, MigrationRequiredError) and "asm_events_search" in cause:
            raise SearchUnavailableError(message=SEARCH_INDEX_DROPPED, details=exc.details) from exc
        raise
