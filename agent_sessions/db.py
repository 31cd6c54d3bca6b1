"""Database plumbing shared by the store, the query API and maintenance.

The one place that knows how PostgreSQL and SQLite report trouble, so that
callers see :class:`~agent_sessions.errors.MigrationRequiredError` or
:class:`~agent_sessions.errors.StorageError` and never a raw driver error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connections, router

from agent_sessions.errors import (
    AgentSessionsError,
    MigrationRequiredError,
    StorageError,
    ValidationError,
)
from agent_sessions.routing import reads_pinned
from agent_sessions.validation import check_varchar

#: SQLSTATEs for "undefined table" and "undefined column" (PostgreSQL).
MISSING_SCHEMA_SQLSTATES = frozenset({"42P01", "42703"})
MISSING_SCHEMA_SQLITE = ("no such table", "no such column", "has no column named")


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a (wrapped) psycopg error, or None."""
    cause: BaseException | None = exc
    while cause is not None:
        state = getattr(cause, "sqlstate", None)
        if state:
            return str(state)
        cause = cause.__cause__
    return None


def is_missing_schema(exc: BaseException) -> bool:
    """True when ``exc`` says a table or column does not exist."""
    if sqlstate(exc) in MISSING_SCHEMA_SQLSTATES:
        return True
    text = str(exc).lower()
    return any(marker in text for marker in MISSING_SCHEMA_SQLITE)


def is_sqlite_locked(exc: BaseException) -> bool:
    """True for SQLite's "database is locked"/"busy" errors, which are worth a retry."""
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


@contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    """Turn database failures inside the block into agent_sessions errors.

    Args:
        operation: What was being done, for the message (``"append_event"``).

    Raises:
        MigrationRequiredError: a table or column is missing.
        StorageError: any other database failure; ``details["cause"]`` holds
            the driver's message and ``details["sqlstate"]`` its code.
    """
    try:
        yield
    except AgentSessionsError:
        raise
    except DatabaseError as exc:
        details = {"operation": operation, "cause": str(exc), "sqlstate": sqlstate(exc)}
        if is_missing_schema(exc):
            raise MigrationRequiredError(details=details) from exc
        raise StorageError(
            "storage_error", f"{operation} failed in the database: {exc}", details=details
        ) from exc


def check_alias(using: str | None) -> str | None:
    """Return ``using`` when it names a configured database (or is None).

    Raises:
        ValidationError: ``using`` is not a string or not in ``settings.DATABASES``.
    """
    if (
        using is not None
        and check_varchar(using, "using", required=True) not in connections.settings
    ):
        raise ValidationError(
            "validation_error",
            f"using={using!r} is not a database alias in settings.DATABASES",
            {"aliases": list(connections.settings)},
            field="using",
        )
    return using


def db_for_write(using: str | None, model: type) -> str:
    """The alias to write ``model`` to: ``using`` when given, else the routers' choice."""
    return using or router.db_for_write(model)


def db_for_read(using: str | None, model: type, *, consistent: bool = False) -> str:
    """The alias to read ``model`` from.

    ``using`` when given. Otherwise the routers' write database when the read
    must see the latest writes (``consistent``, inside
    :func:`~agent_sessions.routing.read_from_primary`, or inside an open
    ``atomic()`` block on the write database, whose writes no other connection
    sees yet), else the routers' read database (possibly a lagging replica).
    See :mod:`agent_sessions.routing`.
    """
    if using:
        return using
    write_alias = router.db_for_write(model)
    if consistent or reads_pinned() or connections[write_alias].in_atomic_block:
        return write_alias
    return router.db_for_read(model)
