"""Keyset paging: total orders, the row-value filter, and signed cursors.

Every paged read of the package (the QueryAPI's searches, the HTTP API, the
export) pages here. A :class:`KeysetOrder` is a total order (sort keys ending
with a unique one); :class:`RowsAfter` is the SQL filter for "after this
position" (``(k1, k2, …) > (v1, v2, …)``, one index range on both databases);
:func:`read_page` reads one page of a queryset and the cursor of the next.

A cursor holds the sort key of the last row of a page (for example its
``updated_at`` and ``id``), signed with ``SECRET_KEY`` by
:mod:`django.core.signing`. The signing salt names the query kind and the
``order_by``, so a cursor made for ``search_sessions`` ordered by
``updated_at_desc`` is refused by ``search_events`` or by another order:
anything malformed, tampered with or mismatched raises
``ValidationError("invalid_cursor")``. Rotating ``SECRET_KEY`` (with
``SECRET_KEY_FALLBACKS``) follows Django's usual rules. Cursors are opaque to
callers; their content is not a stable format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from django.core import signing
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, Expression, F, Model, QuerySet, Value
from django.db.models.expressions import Combinable
from django.db.models.sql.compiler import SQLCompiler

from agent_sessions.conf import app_settings
from agent_sessions.errors import ValidationError
from agent_sessions.validation import check_int, check_varchar, parse_datetime

if TYPE_CHECKING:
    from django.db.models.sql.compiler import _AsSqlType

__all__ = [
    "EVENT_ORDERS",
    "MAX_CURSOR_LENGTH",
    "RUN_ORDERS",
    "SESSION_ORDERS",
    "TOTAL_TOKENS",
    "KeysetOrder",
    "RowsAfter",
    "check_limit",
    "check_order",
    "cursor_position",
    "decode_cursor",
    "encode_cursor",
    "read_all",
    "read_page",
]

_M = TypeVar("_M", bound=Model)

#: Annotation holding ``token_usage["total_tokens"]`` when runs are ordered by it.
TOTAL_TOKENS = "total_tokens_value"


# --------------------------------------------------------------------------- orders


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
    "token_usage_desc": KeysetOrder((TOTAL_TOKENS, "id"), ("number", "text"), descending=True),
}
#: ``search_events`` orders.
EVENT_ORDERS: dict[str, KeysetOrder] = {
    "sequence_asc": KeysetOrder(
        ("sequence_number", "session_id", "id"), ("int", "text", "text"), descending=False
    ),
    "timestamp_asc": KeysetOrder(("timestamp", "id"), _DT_ID, descending=False),
    "timestamp_desc": KeysetOrder(("timestamp", "id"), _DT_ID, descending=True),
}


# --------------------------------------------------------------------------- paging


def check_order(order_by: object, orders: dict[str, KeysetOrder]) -> tuple[str, KeysetOrder]:
    if isinstance(order_by, str) and order_by in orders:
        return order_by, orders[order_by]
    raise ValidationError(
        "validation_error",
        f"order_by {order_by!r} is not one of: {', '.join(orders)}",
        {"allowed": list(orders)},
        field="order_by",
    )


def check_limit(limit: object, default: int) -> int:
    """A page size: ``limit`` checked against ``QUERY_MAX_LIMIT``, or ``default`` (capped)."""
    cap = app_settings.QUERY_MAX_LIMIT
    if limit is None:
        # A default configured above the cap (system check E005) still obeys the cap.
        return min(default, cap)
    return check_int(limit, "limit", minimum=1, maximum=cap)


def read_page(
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


def cursor_position(
    cursor: object, kind: str, order_name: str, order: KeysetOrder
) -> list[Any] | None:
    """The position a caller's cursor holds (None for no cursor: the first page).

    Raises:
        ValidationError: ``invalid_cursor``.
    """
    if cursor is None:
        return None
    return order.decode(decode_cursor(cursor, kind, order_name, len(order.keys)))


def read_all(queryset: QuerySet[Any], order: KeysetOrder, page_size: int) -> list[Any]:
    """Every row of ``queryset`` as a domain object, read in keyset pages in ``order``.

    No server-side cursor (``iterator()`` opens one on PostgreSQL, which a
    transaction-pooling proxy breaks), and no result set loaded at once: one
    page of model instances at a time next to the result.
    """
    result: list[Any] = []
    ordered = queryset.order_by(*order.order_by())
    rest = ordered
    while True:
        rows = list(rest[:page_size])
        result.extend(row.to_domain() for row in rows)
        if len(rows) < page_size:
            return result
        rest = ordered.filter(order.after([getattr(rows[-1], key) for key in order.keys]))


# --------------------------------------------------------------------------- signed cursors


#: Longer strings are refused before any decoding work (a real cursor is ~100 characters).
MAX_CURSOR_LENGTH = 2048

_SALT_PREFIX = "agent_sessions.query.cursor"


def _salt(kind: str, order_by: str) -> str:
    return f"{_SALT_PREFIX}:{kind}:{order_by}"


def encode_cursor(kind: str, order_by: str, position: list[Any]) -> str:
    """Sign ``position`` (JSON-serialisable sort-key values) for one query kind and order.

    Args:
        kind: The query, e.g. ``"sessions"``, ``"runs"``, ``"events"``.
        order_by: The ``order_by`` the page was read with.
        position: The sort key of the last row returned.

    Returns:
        An opaque, URL-safe string.
    """
    return signing.dumps(position, salt=_salt(kind, order_by), compress=True)


def decode_cursor(cursor: object, kind: str, order_by: str, length: int) -> list[Any]:
    """Verify a cursor and return the position it holds.

    Args:
        cursor: The cursor a caller passed back.
        kind: The query it must belong to.
        order_by: The ``order_by`` it must have been made with.
        length: How many sort-key values the position must hold.

    Returns:
        The position (a list of ``length`` JSON values).

    Raises:
        ValidationError: ``invalid_cursor`` when the cursor is not a string,
            is malformed, fails the signature check (tampered, another secret
            key, another kind or order), or holds an unexpected position.
    """
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise _invalid(f"cursor must be a string returned by a previous {kind} page")
    try:
        position = signing.loads(cursor, salt=_salt(kind, order_by))
    except (signing.BadSignature, ValueError, UnicodeError):
        raise _invalid(
            f"cursor is malformed, was tampered with, or does not belong to "
            f"{kind} ordered by {order_by!r}"
        ) from None
    if not isinstance(position, list) or len(position) != length:
        raise _invalid("cursor holds an unexpected position")
    return position


def _invalid(message: str) -> ValidationError:
    return ValidationError("invalid_cursor", message, field="cursor")
