"""Model fields that store values the way AgentSessionManager's Ecto schema does.

ASM's tables are shared with Elixir services, so the column types are fixed by
``asm_schema_postgres.sql`` rather than by Django's defaults:

* timestamps are ``timestamp without time zone`` holding UTC wall-clock time,
  whatever ``USE_TZ``/``TIME_ZONE`` say (:class:`UTCDateTimeField`);
* tags are ``varchar(255)[]`` on PostgreSQL and a JSON array in text elsewhere
  (:class:`TagsField`);
* JSON maps that another writer left NULL read back as ``{}``
  (:class:`JSONObjectField`);
* string primary keys get no extra ``*_like`` index (:class:`AsmIdField`).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Col, Expression
from django.db.models.sql.compiler import SQLCompiler

from agent_sessions.errors import ValidationError

if TYPE_CHECKING:
    from django.db.models.sql.compiler import _AsSqlType

UTC = dt.UTC


class AsmIdField(models.CharField):  # type: ignore[type-arg]
    """A ``varchar(255)`` primary key without Django's extra ``*_like`` index.

    On PostgreSQL Django adds a ``varchar_pattern_ops`` index next to every
    indexed ``varchar`` column whose type name starts with ``varchar``. ASM's
    schema has no such index, so the type is spelled ``character varying``,
    which PostgreSQL treats as the same type.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 255)
        super().__init__(*args, **kwargs)

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        if connection.vendor == "postgresql":
            return f"character varying({self.max_length})"
        return super().db_type(connection)


class UTCDateTimeField(models.DateTimeField):  # type: ignore[type-arg]
    """An aware-UTC datetime kept as UTC wall-clock time without a zone.

    The column is ``timestamp without time zone`` on PostgreSQL (as Ecto's
    ``:utc_datetime_usec``) and ``datetime`` text on SQLite. Values are
    converted to UTC and stripped of their zone on the way in, and come back
    aware (UTC) whatever the project's ``USE_TZ``. Naive datetimes are refused,
    because their zone cannot be known.
    """

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        if connection.vendor == "postgresql":
            return "timestamp"
        return super().db_type(connection)

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        if value is None or not isinstance(value, dt.datetime):
            return super().get_db_prep_value(value, connection, prepared)
        value = to_utc_naive(value)
        if connection.vendor == "postgresql":
            return value
        # A fixed width keeps text comparisons in SQLite chronological.
        return value.isoformat(" ", timespec="microseconds")

    def from_db_value(
        self, value: Any, expression: Any, connection: BaseDatabaseWrapper
    ) -> dt.datetime | None:
        if value is None:
            return None
        stamp: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = super().pre_save(model_instance, add)
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            raise ValidationError(
                "validation_error",
                f"{self.name}: naive datetimes are not accepted; pass an aware (UTC) datetime.",
                details={"field": self.name},
            )
        return value


def to_utc_naive(value: dt.datetime) -> dt.datetime:
    """Return ``value`` as naive UTC wall-clock time (refusing naive input)."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError("naive datetimes are not accepted; pass an aware (UTC) datetime")
    return value.astimezone(UTC).replace(tzinfo=None)


class JSONObjectField(models.JSONField):
    """A JSON map column that reads SQL NULL as ``{}``.

    ASM's columns are nullable with a ``'{}'`` default; rows written by other
    applications may still hold NULL, which ASM itself treats as an empty map.
    Only whole-column reads are converted; ``metadata__key`` lookups keep
    their own NULL semantics.
    """

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        result = super().from_db_value(value, expression, connection)
        if result is None and isinstance(expression, Col):
            return {}
        return result


class EmptyTags(Expression):
    """The database default of ``tags``: an empty array (a JSON ``[]`` on SQLite)."""

    output_field = models.TextField()
    # A constant, so Django's check fields.E012 accepts it as a db_default.
    allowed_default = True

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> _AsSqlType:
        if connection.vendor == "postgresql":
            return "ARRAY[]::varchar[]", ()
        return "'[]'", ()

    def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        return ("agent_sessions.fields.EmptyTags", (), {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EmptyTags)

    def __hash__(self) -> int:
        return hash(EmptyTags)


class TagsField(models.Field):  # type: ignore[type-arg]
    """A list of strings: ``varchar(255)[]`` on PostgreSQL, JSON text elsewhere.

    Query with the ``has_all`` lookup (``tags__has_all=["a", "b"]``): rows that
    carry every listed tag, evaluated in the database on both backends.
    """

    description = "List of tags"

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        if connection.vendor == "postgresql":
            return "varchar(255)[]"
        return "text"

    def get_internal_type(self) -> str:
        return "TagsField"

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        if value is None:
            return None
        value = list(value)
        if connection.vendor == "postgresql":
            return value
        return json.dumps(value, ensure_ascii=False)

    def from_db_value(
        self, value: Any, expression: Any, connection: BaseDatabaseWrapper
    ) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return list(json.loads(value))
        return list(value)

    def to_python(self, value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return list(json.loads(value))
        return list(value)

    def value_to_string(self, obj: models.Model) -> str:
        return json.dumps(self.value_from_object(obj))


@TagsField.register_lookup
class HasAllTags(models.Lookup):
    """``tags__has_all=[...]``: the row carries every listed tag."""

    lookup_name = "has_all"

    def get_db_prep_lookup(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        return ("%s", [self.lhs.output_field.get_db_prep_value(list(value), connection)])

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> _AsSqlType:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} @> ({rhs})::varchar[]", (*lhs_params, *rhs_params)
        # Every wanted tag must appear among the row's tags.
        sql = (
            f"NOT EXISTS (SELECT 1 FROM json_each({rhs}) AS wanted WHERE wanted.value "
            f"NOT IN (SELECT have.value FROM json_each(COALESCE({lhs}, '[]')) AS have))"
        )
        return sql, (*rhs_params, *lhs_params)


@TagsField.register_lookup
class HasAnyTags(HasAllTags):
    """``tags__has_any=[...]``: the row carries at least one listed tag (NULL tags: none)."""

    lookup_name = "has_any"

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> _AsSqlType:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} && ({rhs})::varchar[]", (*lhs_params, *rhs_params)
        sql = (
            f"EXISTS (SELECT 1 FROM json_each(COALESCE({lhs}, '[]')) AS have "
            f"WHERE have.value IN (SELECT wanted.value FROM json_each({rhs}) AS wanted))"
        )
        return sql, (*lhs_params, *rhs_params)


class AsmIndex(models.Index):
    """An index with ASM's long Ecto-style name (``asm_events_session_id_type_index``).

    Django caps index names at 30 characters for Oracle's sake; the asm_*
    names are longer, and PostgreSQL and SQLite both accept 63.
    """

    max_name_length = 63


class UniqueIndex(AsmIndex):
    """A ``CREATE UNIQUE INDEX`` (not a constraint), as ASM's migration makes."""

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        template = schema_editor.sql_create_index.replace("CREATE INDEX", "CREATE UNIQUE INDEX", 1)
        kwargs.setdefault("sql", template)
        return super().create_sql(model, schema_editor, using=using, **kwargs)
