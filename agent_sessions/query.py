"""Read-only search and reporting across sessions, runs and events (CONTRACT §6).

:class:`DjangoQueryAPI` validates its typed arguments, filters through the
FilterSets of :mod:`agent_sessions.filters`, pages with signed keyset cursors
(:mod:`agent_sessions.cursors`) and computes statistics, usage and cost with
aggregate SQL::

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
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import django_filters
from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    Expression,
    F,
    Max,
    Min,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.expressions import Combinable
from django.db.models.fields.json import KeyTextTransform
from django.db.models.sql.compiler import SQLCompiler

from agent_sessions import models
from agent_sessions.aio import QueryAsyncMixin
from agent_sessions.artifacts import DjangoArtifactRegistry
from agent_sessions.conf import app_settings
from agent_sessions.core import EventType, RunStatus, SessionStatus
from agent_sessions.cursors import decode_cursor, encode_cursor
from agent_sessions.db import check_alias, db_for_read, reconnecting, translate_errors
from agent_sessions.errors import (
    MigrationRequiredError,
    NotFoundError,
    SearchUnavailableError,
    StorageError,
    ValidationError,
)
from agent_sessions.filters import EventFilterSet, RunFilterSet, SessionFilterSet, total_tokens
from agent_sessions.jsonsql import as_int, json_number
from agent_sessions.pricing import (
    TOKEN_KEYS,
    active_pricing_table,
    check_pricing_table,
    cost_usd,
    resolve_rates,
)
from agent_sessions.results import EventPage, RunPage, SessionPage, TextHit, TextPage
from agent_sessions.search import (
    RankedId,
    TextQuery,
    fts5_available,
    parse_text_query,
    ranked_matches,
    snippets,
)
from agent_sessions.telemetry import query_attributes, traced
from agent_sessions.validation import (
    BIGINT_MAX,
    check_bool,
    check_choice,
    check_datetime,
    check_id,
    check_int,
    check_tags,
    check_varchar,
    parse_datetime,
)

if TYPE_CHECKING:
    from django.db.models.sql.compiler import _AsSqlType

__all__ = [
    "EVENT_ORDERS",
    "RUN_ORDERS",
    "SESSION_ORDERS",
    "DjangoQueryAPI",
    "KeysetOrder",
    "RowsAfter",
]

_M = TypeVar("_M", bound=Model)

#: Shown as the provider or model of runs that have none.
UNKNOWN = "unknown"

#: Annotation holding ``token_usage["total_tokens"]`` when runs are ordered by it.
_TOTAL_TOKENS = "total_tokens_value"


# --------------------------------------------------------------------------- keyset orders


@dataclass(frozen=True)
class KeysetOrder:
    """A total order for keyset paging: sort keys ending with a unique one, one direction.

    Attributes:
        keys: Field (or annotation) names, most significant first; the last
            makes the order total (``id``).
        kinds: How each key's value travels in a cursor: ``"datetime"``,
            ``"text"``, ``"int"`` or ``"number"``.
        descending: True for newest/largest first.
    """

    keys: tuple[str, ...]
    kinds: tuple[str, ...]
    descending: bool

    def order_by(self) -> list[str]:
        """The ``QuerySet.order_by`` arguments."""
        sign = "-" if self.descending else ""
        return [sign + key for key in self.keys]

    def after(self, position: Sequence[Any]) -> RowsAfter:
        """A filter for the rows strictly after ``position`` in this order."""
        return RowsAfter(self.keys, position, descending=self.descending)

    def position_of(self, row: Model) -> list[Any]:
        """The JSON-serialisable sort key of ``row``, for a cursor."""
        return [
            _encode_value(getattr(row, key), kind)
            for key, kind in zip(self.keys, self.kinds, strict=True)
        ]

    def decode(self, values: Sequence[Any]) -> list[Any]:
        """Turn a cursor's values back into query parameters.

        Raises:
            ValidationError: ``invalid_cursor`` when a value has the wrong kind.
        """
        try:
            return [_decode_value(v, kind) for v, kind in zip(values, self.kinds, strict=True)]
        except (ValidationError, TypeError, ValueError):
            raise ValidationError(
                "invalid_cursor", "cursor holds an unexpected position", field="cursor"
            ) from None


class RowsAfter(Expression):
    """``(k1, k2, …) > (v1, v2, …)`` (``<`` when descending): a row-value comparison.

    Standard SQL that PostgreSQL and SQLite both evaluate; PostgreSQL turns it
    into one index range over a matching composite index, so a deep page
    starts reading right at its position (the expanded ``a > x OR (a = x AND
    …)`` form cannot, when many rows share the leading key).
    """

    output_field = BooleanField()
    conditional = True

    def __init__(self, keys: Sequence[str], values: Sequence[Any], *, descending: bool) -> None:
        super().__init__()
        self.keys: list[Any] = [F(key) for key in keys]
        self.values = list(values)
        self.descending = descending

    def get_source_expressions(self) -> list[Any]:
        return self.keys

    def set_source_expressions(self, exprs: Sequence[Combinable | Expression]) -> None:
        self.keys = list(exprs)

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> _AsSqlType:
        columns: list[str] = []
        values: list[str] = []
        params: list[str | int] = []
        value_params: list[str | int] = []
        for key, value in zip(self.keys, self.values, strict=True):
            sql, key_params = compiler.compile(key)
            columns.append(sql)
            params.extend(key_params)
            # The key's own field prepares the value (UTC wall-clock time, etc.).
            sql, key_params = compiler.compile(Value(value, output_field=key.output_field))
            values.append(sql)
            value_params.extend(key_params)
        operator = "<" if self.descending else ">"
        sql = f"({', '.join(columns)}) {operator} ({', '.join(values)})"
        return sql, (*params, *value_params)


def _encode_value(value: Any, kind: str) -> Any:
    if kind == "datetime":
        return value.isoformat()
    if kind == "number":
        # Decimal on PostgreSQL, int or float on SQLite: one portable spelling.
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def _decode_value(value: Any, kind: str) -> Any:
    if kind == "datetime":
        return parse_datetime(value, "cursor")
    if kind == "text":
        return check_varchar(value, "cursor", required=True)
    if kind == "int":
        return check_int(value, "cursor")
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise ValueError(f"unexpected {kind} value in cursor")


_DT_ID = ("datetime", "text")

#: ``search_sessions`` orders.
SESSION_ORDERS: dict[str, KeysetOrder] = {
    "updated_at_desc": KeysetOrder(("updated_at", "id"), _DT_ID, descending=True),
    "created_at_desc": KeysetOrder(("created_at", "id"), _DT_ID, descending=True),
    "created_at_asc": KeysetOrder(("created_at", "id"), _DT_ID, descending=False),
}
#: ``search_runs`` orders.
RUN_ORDERS: dict[str, KeysetOrder] = {
    "started_at_desc": KeysetOrder(("started_at", "id"), _DT_ID, descending=True),
    "started_at_asc": KeysetOrder(("started_at", "id"), _DT_ID, descending=False),
    "token_usage_desc": KeysetOrder((_TOTAL_TOKENS, "id"), ("number", "text"), descending=True),
}
#: ``search_events`` orders.
EVENT_ORDERS: dict[str, KeysetOrder] = {
    "sequence_asc": KeysetOrder(
        ("sequence_number", "session_id", "id"), ("int", "text", "text"), descending=False
    ),
    "timestamp_asc": KeysetOrder(("timestamp", "id"), _DT_ID, descending=False),
    "timestamp_desc": KeysetOrder(("timestamp", "id"), _DT_ID, descending=True),
}


# --------------------------------------------------------------------------- argument checks


def _check_order(order_by: object, orders: dict[str, KeysetOrder]) -> tuple[str, KeysetOrder]:
    if isinstance(order_by, str) and order_by in orders:
        return order_by, orders[order_by]
    raise ValidationError(
        "validation_error",
        f"order_by {order_by!r} is not one of: {', '.join(orders)}",
        {"allowed": list(orders)},
        field="order_by",
    )


def _check_limit(limit: object, default: int) -> int:
    cap = app_settings.QUERY_MAX_LIMIT
    if limit is None:
        # A default configured above the cap (system check E005) still obeys the cap.
        return min(default, cap)
    return check_int(limit, "limit", minimum=1, maximum=cap)


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


def _page(
    queryset: QuerySet[_M],
    kind: str,
    order_name: str,
    order: KeysetOrder,
    position: list[Any] | None,
    limit: int,
) -> tuple[list[_M], str | None]:
    """One page after ``position``, and the cursor of the next page (None after the last)."""
    if position is not None:
        queryset = queryset.filter(order.after(position))
    # One row more than asked tells whether another page exists.
    rows = list(queryset.order_by(*order.order_by())[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(kind, order_name, order.position_of(rows[-1]))


def _position(cursor: object, kind: str, order_name: str, order: KeysetOrder) -> list[Any] | None:
    if cursor is None:
        return None
    return order.decode(decode_cursor(cursor, kind, order_name, len(order.keys)))


# --------------------------------------------------------------------------- the API


class DjangoQueryAPI(QueryAsyncMixin):
    """The :class:`~agent_sessions.ports.QueryAPI` on a Django database (read-only).

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
        """Return a page of sessions matching every given filter.

        Args:
            agent_id: Only this agent's sessions.
            status: A status or a list of statuses (any of).
            provider: A provider or a list (any of); a session matches when
                any of its runs has one of them.
            tags: The session carries every one of these tags.
            created_after: ``created_at`` at or after this (aware) datetime.
            created_before: ``created_at`` at or before this datetime.
            include_deleted: Include soft-deleted sessions.
            order_by: ``updated_at_desc`` (default), ``created_at_desc`` or
                ``created_at_asc``; ties are broken by id.
            limit: Page size, 1..``QUERY_MAX_LIMIT`` (default ``QUERY_DEFAULT_LIMIT``).
            cursor: The ``cursor`` of the previous page.
            with_total: Count all matches (one ``COUNT`` query); False skips it.

        Returns:
            ``SessionPage(sessions, cursor, total_count)``; ``cursor`` is None
            after the last page, ``total_count`` None when ``with_total`` is False.

        Raises:
            ValidationError: ``invalid_status`` for an unknown status,
                ``invalid_cursor`` for a bad cursor, ``validation_error`` for
                any other bad argument (limit, order_by, types).
        """
        order_name, order = _check_order(order_by, SESSION_ORDERS)
        limit = _check_limit(limit, app_settings.QUERY_DEFAULT_LIMIT)
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
        position = _position(cursor, "sessions", order_name, order)
        with translate_errors("search_sessions"):
            queryset = _filtered(SessionFilterSet, data, self._objects(models.Session))
            total = queryset.count() if with_total else None
            rows, next_cursor = _page(queryset, "sessions", order_name, order, position, limit)
        return SessionPage([row.to_domain() for row in rows], next_cursor, total)

    @traced("get_session_stats", query_attributes)
    @reconnecting
    def get_session_stats(self, session_id: str) -> dict[str, Any]:
        """Return counts and totals for one session, computed in SQL.

        Soft-deleted sessions are included.

        Args:
            session_id: The session.

        Returns:
            ``{"event_count", "run_count", "token_totals": {"input_tokens",
            "output_tokens", "total_tokens"}, "providers_used", "first_event_at",
            "last_event_at", "status_counts"}``. ``providers_used`` is the sorted
            distinct non-null run providers; the event times are None without
            events; ``status_counts`` maps run status → count.

        Raises:
            NotFoundError: ``session_not_found``.
            ValidationError: ``session_id`` is not a valid id.
        """
        session_id = check_id(session_id, "session_id")
        with translate_errors("get_session_stats"):
            if not self._objects(models.Session).filter(id=session_id).exists():
                raise NotFoundError("session_not_found", details={"session_id": session_id})
            events = (
                self._objects(models.Event)
                .filter(session_id=session_id)
                .aggregate(count=Count("id"), first=Min("timestamp"), last=Max("timestamp"))
            )
            groups: list[Any] = list(
                self._objects(models.Run)
                .filter(session_id=session_id)
                .order_by()
                .values("status", "provider")
                .annotate(run_count=Count("id"), **_token_sums())
            )
        token_totals = dict.fromkeys(("input_tokens", "output_tokens", "total_tokens"), 0)
        status_counts: dict[str, int] = {}
        providers: set[str] = set()
        for group in groups:
            for key in token_totals:
                token_totals[key] += as_int(group[key])
            status_counts[group["status"]] = status_counts.get(group["status"], 0) + int(
                group["run_count"]
            )
            if group["provider"] is not None:
                providers.add(group["provider"])
        return {
            "event_count": int(events["count"]),
            "run_count": sum(status_counts.values()),
            "token_totals": token_totals,
            "providers_used": sorted(providers),
            "first_event_at": events["first"],
            "last_event_at": events["last"],
            "status_counts": status_counts,
        }

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
        """Return a page of runs matching every given filter.

        Args:
            session_id: Only this session's runs.
            provider: A provider (a list is accepted too: any of).
            status: A run status (a list is accepted too: any of).
            started_after: ``started_at`` at or after this (aware) datetime.
            started_before: ``started_at`` at or before this datetime.
            min_tokens: ``token_usage["total_tokens"]`` at least this (≥ 0;
                a missing value counts as 0).
            order_by: ``started_at_desc`` (default), ``started_at_asc`` or
                ``token_usage_desc`` (by ``total_tokens``); ties by id.
            limit: Page size, 1..``QUERY_MAX_LIMIT`` (default ``QUERY_DEFAULT_LIMIT``).
            cursor: The ``cursor`` of the previous page.

        Returns:
            ``RunPage(runs, cursor)``; ``cursor`` is None after the last page.

        Raises:
            ValidationError: ``invalid_status``, ``invalid_cursor`` or
                ``validation_error`` (limit, order_by, min_tokens, types).
        """
        order_name, order = _check_order(order_by, RUN_ORDERS)
        limit = _check_limit(limit, app_settings.QUERY_DEFAULT_LIMIT)
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
        position = _position(cursor, "runs", order_name, order)
        with translate_errors("search_runs"):
            queryset = _filtered(RunFilterSet, data, self._objects(models.Run))
            if _TOTAL_TOKENS in order.keys:
                queryset = queryset.annotate(**{_TOTAL_TOKENS: total_tokens()})
            rows, next_cursor = _page(queryset, "runs", order_name, order, position, limit)
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
    ) -> dict[str, Any]:
        """Return token totals over the matching runs, computed in SQL (``GROUP BY provider``).

        Token values are read from ``token_usage`` in the database; a missing
        or non-numeric value counts as 0. ``total_tokens`` sums the stored
        ``total_tokens`` values.

        Args:
            session_id: Only this session's runs.
            provider: Only runs of this provider (a list: any of).
            since: ``started_at`` at or after this (aware) datetime.
            until: ``started_at`` at or before this datetime.

        Returns:
            ``{"total_input_tokens", "total_output_tokens", "total_tokens",
            "run_count", "by_provider": {provider: {"input_tokens",
            "output_tokens", "total_tokens", "run_count"}}}``; runs without a
            provider count under ``"unknown"``.

        Raises:
            ValidationError: a bad argument.
        """
        data = self._run_filters(session_id=session_id, provider=provider, since=since, until=until)
        with translate_errors("get_usage_summary"):
            groups: list[Any] = list(
                _filtered(RunFilterSet, data, self._objects(models.Run))
                .order_by()
                .values("provider")
                .annotate(run_count=Count("id"), **_token_sums())
            )
        by_provider: dict[str, dict[str, int]] = {}
        for group in groups:
            bucket = by_provider.setdefault(
                group["provider"] if group["provider"] is not None else UNKNOWN,
                dict.fromkeys(("input_tokens", "output_tokens", "total_tokens", "run_count"), 0),
            )
            for key in bucket:
                bucket[key] += as_int(group[key])
        return {
            "total_input_tokens": sum(b["input_tokens"] for b in by_provider.values()),
            "total_output_tokens": sum(b["output_tokens"] for b in by_provider.values()),
            "total_tokens": sum(b["total_tokens"] for b in by_provider.values()),
            "run_count": sum(b["run_count"] for b in by_provider.values()),
            "by_provider": by_provider,
        }

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
    ) -> dict[str, Any]:
        """Return costs in USD over the matching runs.

        One ``GROUP BY provider, provider_metadata->>'model'`` query sums the
        stored ``cost_usd`` of runs that have one (a stored 0.0 is a cost) and
        the token counts of runs that have none; the rates are then applied
        per group in Python (cost is linear in the token counts). Rates: the
        exact model, else the longest model prefix, else the provider's
        ``default``; cache tokens default to the input rate.

        Args:
            session_id: Only this session's runs.
            agent_id: Only runs of this agent's sessions.
            provider: Only runs of this provider (a list: any of).
            since: ``started_at`` at or after this (aware) datetime.
            until: ``started_at`` at or before this datetime.
            pricing_table: Rates to use instead of the configured
                ``PRICING_TABLE`` (or :data:`~agent_sessions.pricing.DEFAULT_PRICING_TABLE`).

        Returns:
            ``{"total_cost_usd", "run_count", "by_provider": {provider:
            {"cost_usd", "run_count"}}, "by_model": {model: {"cost_usd",
            "input_tokens", "output_tokens"}}, "unmapped_runs"}``. Runs with
            no stored cost and no rates count in ``unmapped_runs`` (and cost
            0); missing providers and models are ``"unknown"``.

        Raises:
            ValidationError: a bad argument or pricing table.
        """
        data = self._run_filters(
            session_id=session_id, agent_id=agent_id, provider=provider, since=since, until=until
        )
        table = (
            active_pricing_table()
            if pricing_table is None
            else check_pricing_table(pricing_table, "pricing_table")
        )
        unpriced = Q(cost_usd__isnull=True)
        with translate_errors("get_cost_summary"):
            groups: list[Any] = list(
                _filtered(RunFilterSet, data, self._objects(models.Run))
                .order_by()
                .values("provider", model=KeyTextTransform("model", "provider_metadata"))
                .annotate(
                    run_count=Count("id"),
                    stored_runs=Count("cost_usd"),
                    stored_cost=Sum("cost_usd"),
                    input_tokens=Sum(json_number("token_usage", "input_tokens")),
                    output_tokens=Sum(json_number("token_usage", "output_tokens")),
                    **{
                        f"unpriced_{key}": Sum(json_number("token_usage", key), filter=unpriced)
                        for key in TOKEN_KEYS.values()
                    },
                )
            )
        summary: dict[str, Any] = {
            "total_cost_usd": 0.0,
            "run_count": 0,
            "by_provider": {},
            "by_model": {},
            "unmapped_runs": 0,
        }
        for group in groups:
            provider_name = group["provider"]
            model_name = None if group["model"] is None else str(group["model"])
            cost = float(group["stored_cost"] or 0.0)
            unpriced_runs = int(group["run_count"]) - int(group["stored_runs"])
            if unpriced_runs:
                rates = resolve_rates(table, provider_name, model_name)
                if rates is None:
                    summary["unmapped_runs"] += unpriced_runs
                else:
                    tokens = {key: as_int(group[f"unpriced_{key}"]) for key in TOKEN_KEYS.values()}
                    cost += cost_usd(rates, tokens)
            by_provider = summary["by_provider"].setdefault(
                provider_name if provider_name is not None else UNKNOWN,
                {"cost_usd": 0.0, "run_count": 0},
            )
            by_provider["cost_usd"] += cost
            by_provider["run_count"] += int(group["run_count"])
            by_model = summary["by_model"].setdefault(
                model_name if model_name is not None else UNKNOWN,
                {"cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0},
            )
            by_model["cost_usd"] += cost
            by_model["input_tokens"] += as_int(group["input_tokens"])
            by_model["output_tokens"] += as_int(group["output_tokens"])
            summary["total_cost_usd"] += cost
            summary["run_count"] += int(group["run_count"])
        return summary

    # ----------------------------------------------------------------- events

    def _event_filters(
        self,
        *,
        session_ids: object,
        run_ids: object,
        types: object,
        providers: object,
        since: object,
        until: object,
        correlation_id: object,
    ) -> dict[str, Any]:
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
        """Return a page of events across sessions.

        Args:
            session_ids: Events of any of these sessions.
            run_ids: Events of any of these runs.
            types: Events of any of these types.
            providers: Events of any of these providers.
            since: ``timestamp`` at or after this (aware) datetime.
            until: ``timestamp`` at or before this datetime.
            correlation_id: Only events with this correlation id.
            order_by: ``sequence_asc`` (default: sequence number, then session
                id, then id), ``timestamp_asc`` or ``timestamp_desc`` (ties by id).
            limit: Page size, 1..``QUERY_MAX_LIMIT`` (default
                ``QUERY_EVENT_DEFAULT_LIMIT``).
            cursor: The ``cursor`` of the previous page.

        Returns:
            ``EventPage(events, cursor)``; ``cursor`` is None after the last page.

        Raises:
            ValidationError: ``invalid_event_type``, ``invalid_cursor`` or
                ``validation_error`` (limit, order_by, types of arguments).
        """
        order_name, order = _check_order(order_by, EVENT_ORDERS)
        limit = _check_limit(limit, app_settings.QUERY_EVENT_DEFAULT_LIMIT)
        data = self._event_filters(
            session_ids=session_ids,
            run_ids=run_ids,
            types=types,
            providers=providers,
            since=since,
            until=until,
            correlation_id=correlation_id,
        )
        position = _position(cursor, "events", order_name, order)
        with translate_errors("search_events"):
            queryset = _filtered(EventFilterSet, data, self._objects(models.Event))
            rows, next_cursor = _page(queryset, "events", order_name, order, position, limit)
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
        """Return how many events :meth:`search_events` would find with these filters.

        Raises:
            ValidationError: ``invalid_event_type`` or ``validation_error``.
        """
        data = self._event_filters(
            session_ids=session_ids,
            run_ids=run_ids,
            types=types,
            providers=providers,
            since=since,
            until=until,
            correlation_id=correlation_id,
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
        """Find events whose ``data`` holds the words of ``q`` (see docs/search.md).

        Every string value inside ``data`` is searched (keys are not), in
        events written by any writer. Syntax: words (all must occur),
        ``"exact phrase"``, ``-excluded`` (word or phrase), ``OR`` between
        alternatives; nothing else is an operator.

        Args:
            q: The user's text, 1 to 1,000 characters.
            agent_id: Only events of this agent's sessions.
            session_ids: Only events of these sessions (any of).
            types: Only events of these types (any of).
            since: ``timestamp`` at or after this (aware) datetime.
            until: ``timestamp`` at or before this datetime.
            include_deleted: Include events of soft-deleted sessions.
            limit: Page size, 1..``QUERY_MAX_LIMIT`` (default
                ``QUERY_EVENT_DEFAULT_LIMIT``).
            cursor: The ``cursor`` of the previous page of the same ``q``.

        Returns:
            ``TextPage(hits, cursor)``: hits (``event``, ``rank``, ``snippet``)
            best rank first, then newest, then by id (descending); ``cursor``
            is None after the last page. A query of punctuation only has no hits.

        Raises:
            ValidationError: ``q`` empty, blank, too long, holding a NUL
                character, or only excluded terms; ``invalid_cursor`` for a
                bad cursor or one made for another ``q``;
                ``invalid_event_type``; any other bad argument.
            SearchUnavailableError: SQLite without FTS5.
        """
        query = parse_text_query(q)
        limit = _check_limit(limit, app_settings.QUERY_EVENT_DEFAULT_LIMIT)
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
        with _search_available(alias), translate_errors("search_text"):
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
        """Return a whole session: the session, its runs and its events (and artifacts).

        Args:
            session_id: The session (soft-deleted ones too).
            include_artifacts: Add ``"artifacts"``: the session's live
                artifacts as dicts of their columns, oldest first (the shape
                :class:`~agent_sessions.store.DjangoArtifactRegistry` returns).

        Returns:
            ``{"session": Session, "runs": [Run…] (oldest started first),
            "events": [Event…] (by sequence)}``, plus ``"artifacts"`` when asked.

        Raises:
            NotFoundError: ``session_not_found``.
            ValidationError: ``session_id`` is not a valid id.
        """
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
                "runs": _keyset_domain(runs, _EXPORT_RUNS),
                "events": _keyset_domain(events, _EXPORT_EVENTS),
            }
        if include_artifacts:
            export["artifacts"] = DjangoArtifactRegistry(
                self.using, consistent=self.consistent
            ).list_by_session(session_id)
        return export


def _token_sums() -> dict[str, Any]:
    """``SUM`` of each token count read from ``token_usage`` (non-numbers skipped)."""
    return {
        key: Sum(json_number("token_usage", key))
        for key in ("input_tokens", "output_tokens", "total_tokens")
    }


#: Page size and orders of :meth:`DjangoQueryAPI.export_session`'s reads.
_EXPORT_PAGE = 2000
_EXPORT_RUNS = KeysetOrder(("started_at", "id"), _DT_ID, descending=False)
_EXPORT_EVENTS = KeysetOrder(("sequence_number", "id"), ("int", "text"), descending=False)


def _keyset_domain(queryset: QuerySet[Any], order: KeysetOrder) -> list[Any]:
    """Every row of ``queryset`` as a domain object, read in keyset pages in ``order``.

    No server-side cursor (``iterator()`` opens one on PostgreSQL, which a
    transaction-pooling proxy breaks), and no result set loaded at once: one
    page of model instances at a time next to the result.
    """
    result: list[Any] = []
    ordered = queryset.order_by(*order.order_by())
    page = ordered
    while True:
        rows = list(page[:_EXPORT_PAGE])
        result.extend(row.to_domain() for row in rows)
        if len(rows) < _EXPORT_PAGE:
            return result
        page = ordered.filter(order.after([getattr(rows[-1], key) for key in order.keys]))


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
    """Say :class:`SearchUnavailableError` when a missing index is due to SQLite lacking FTS5."""
    try:
        yield
    except (MigrationRequiredError, StorageError) as exc:
        connection = connections[alias]
        if connection.vendor == "sqlite" and not fts5_available():
            raise SearchUnavailableError(details=exc.details) from exc
        raise
