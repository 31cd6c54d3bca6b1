"""Numbers read from JSON columns inside SQL: the one vendor-specific place for it.

Token counts live in the ``token_usage`` JSON object of ``asm_runs``; sums,
filters and orderings on them must run in the database. Values written by
other applications may be strings, booleans or nested objects, so only JSON
numbers are read and anything else counts as missing (SQL NULL) instead of
failing the whole query:

- PostgreSQL: ``CASE WHEN jsonb_typeof(col -> 'key') = 'number'
  THEN (col ->> 'key')::numeric END`` (``numeric`` never overflows, whatever
  the magnitude);
- SQLite: ``CASE WHEN json_type(col, '$."key"') IN ('integer', 'real')
  THEN json_extract(col, '$."key"') END``.

Previews of large JSON columns (the admin's timelines) read only a bounded
prefix of the column's text (:class:`JSONTextPrefix`), and only of values
whose stored size (:class:`JSONStoredSize`) is at most a limit, so neither
the page nor the database's work grows with the payloads:

- PostgreSQL: ``CASE WHEN pg_column_size(col) <= m THEN left(col::text, n)
  END`` — ``pg_column_size`` reads a TOASTed value's size from its pointer,
  without fetching it, and ``jsonb`` prints short keys (``role``, ``type``)
  before long ones (``content``);
- SQLite: ``CASE WHEN length(col) <= m THEN substr(col, 1, n) END`` (the
  column is the JSON text as written).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.db import NotSupportedError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Expression, F, FloatField, IntegerField, TextField, Value
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce
from django.db.models.sql.compiler import SQLCompiler

__all__ = ["JSONNumber", "JSONStoredSize", "JSONTextPrefix", "as_int", "json_number"]


class JSONNumber(Expression):
    """The number stored under ``key`` in the JSON object column ``column``, else NULL."""

    output_field = FloatField()

    def __init__(self, column: str, key: str) -> None:
        super().__init__()
        # An F() until resolve_expression() puts the resolved column in its place.
        self.column: Any = F(column)
        self.key = key

    def get_source_expressions(self) -> list[Any]:
        return [self.column]

    def set_source_expressions(self, exprs: Sequence[Combinable | Expression]) -> None:
        (self.column,) = exprs

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Any:
        raise NotSupportedError(
            f"Reading JSON numbers in SQL is not implemented for {connection.vendor}."
        )

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.column)
        sql = (
            f"CASE WHEN jsonb_typeof({column} -> %s) = 'number' THEN ({column} ->> %s)::numeric END"
        )
        return sql, [*params, self.key, *params, self.key]

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.column)
        # A quoted path step, so that any key (dots, brackets) is taken literally.
        path = "$." + json.dumps(self.key)
        sql = (
            f"CASE WHEN json_type({column}, %s) IN ('integer', 'real') "
            f"THEN json_extract({column}, %s) END"
        )
        return sql, [*params, path, *params, path]


class JSONTextPrefix(Expression):
    """The first ``length`` characters of the JSON column ``column`` as text.

    NULL when the column is NULL, or when its stored size is above
    ``max_stored`` bytes (such a value is not even read).
    """

    output_field = TextField()

    def __init__(self, column: str, length: int, max_stored: int) -> None:
        super().__init__()
        self.column: Any = F(column)
        self.length = int(length)
        self.max_stored = int(max_stored)

    def get_source_expressions(self) -> list[Any]:
        return [self.column]

    def set_source_expressions(self, exprs: Sequence[Combinable | Expression]) -> None:
        (self.column,) = exprs

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Any:
        raise NotSupportedError(f"JSON text prefixes are not implemented for {connection.vendor}.")

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.column)
        sql = f"CASE WHEN pg_column_size({column}) <= %s THEN left(({column})::text, %s) END"
        return sql, [*params, self.max_stored, *params, self.length]

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.column)
        sql = f"CASE WHEN length({column}) <= %s THEN substr({column}, 1, %s) END"
        return sql, [*params, self.max_stored, *params, self.length]


class JSONStoredSize(Expression):
    """The stored size in bytes of the JSON column ``column`` (compressed on PostgreSQL).

    PostgreSQL: ``pg_column_size`` (no TOAST fetch); SQLite: ``length``.
    """

    output_field = IntegerField()

    def __init__(self, column: str) -> None:
        super().__init__()
        self.column: Any = F(column)

    def get_source_expressions(self) -> list[Any]:
        return [self.column]

    def set_source_expressions(self, exprs: Sequence[Combinable | Expression]) -> None:
        (self.column,) = exprs

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Any:
        raise NotSupportedError(f"JSON stored sizes are not implemented for {connection.vendor}.")

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.column)
        return f"pg_column_size({column})", list(params)

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.column)
        return f"length({column})", list(params)


def json_number(column: str, key: str, *, default: int | None = None) -> Any:
    """A SQL expression for ``column[key]`` as a number; ``default`` when missing or not a number.

    Args:
        column: Name of a JSON object column, e.g. ``"token_usage"``.
        key: The key to read, e.g. ``"input_tokens"``.
        default: Value used when the key is missing or not a number; None
            leaves SQL NULL (which ``SUM`` skips).

    Returns:
        A Django expression usable in ``annotate``, ``aggregate``, ``filter``
        and ``order_by``.
    """
    expression = JSONNumber(column, key)
    if default is None:
        return expression
    return Coalesce(expression, Value(default), output_field=FloatField())


def as_int(value: Any) -> int:
    """A database number (``Decimal`` on PostgreSQL, int/float on SQLite; None → 0) as an int.

    A non-finite value (a huge JSON number read as ``inf`` by the database)
    counts as missing, like any other value that is not a usable number.
    """
    try:
        return 0 if value is None else int(value)
    except (OverflowError, ValueError):
        return 0
