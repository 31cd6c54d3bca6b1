"""The one write path, and the database plumbing shared by every module.

How ``agent_sessions`` touches a database, in one place:

- :func:`run_write` runs a write in one transaction on an alias: SQLite's
  write lock first (so concurrent writers queue on the busy timeout instead
  of failing), retries while SQLite stays locked, retries when the work
  asks for it (:class:`RetryTransaction`: a lost race on a new id), error
  translation, and **recovery from a lost connection**: the unusable
  connection is closed and, when the operation is safe to repeat (appends
  are idempotent by event id, upserts by id) and this is not the caller's
  own ``atomic()`` block, the write runs once more on a fresh connection.
- :func:`run_read` does the same for a read (always safe to repeat).
- :func:`translate_errors` turns database failures into
  :class:`~agent_sessions.errors.MigrationRequiredError` or
  :class:`~agent_sessions.errors.StorageError`, never a raw driver error;
  on a lost connection it closes the connection (outside an ``atomic()``
  block), so that the *next* call reconnects even where nothing retries.
  Django itself only recycles connections at request boundaries, and this
  API is also called outside requests (workers, ``asyncio`` tasks, cron).

Nothing here leaves session state on a connection: settings are
``SET LOCAL``, advisory locks transaction-scoped (see
:mod:`agent_sessions.locks` and :mod:`agent_sessions.listener` for what
needs a session, on a dedicated connection).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, ParamSpec, TypeVar

from django.db import Error as DjangoError
from django.db import OperationalError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from agent_sessions.errors import (
    AgentSessionsError,
    MigrationRequiredError,
    StorageError,
    ValidationError,
)
from agent_sessions.eventlog.sql import take_sqlite_write_lock
from agent_sessions.routing import reads_pinned
from agent_sessions.validation import check_varchar

_T = TypeVar("_T")
_P = ParamSpec("_P")

#: How long a write keeps retrying when SQLite reports "database is locked"
#: (only when it owns the transaction; inside the caller's ``atomic()``
#: block the error is raised at once as StorageError).
SQLITE_LOCK_RETRY_SECONDS = 30.0
#: How often a write runs again when its work raises :class:`RetryTransaction`.
RETRY_TRANSACTION_LIMIT = 5

#: SQLSTATEs of a connection the server ended: class 08 (connection
#: exception), admin/crash/cannot-connect-now shutdowns, idle-session timeout.
CONNECTION_LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P05"})
_CONNECTION_LOST_TEXT = (
    "the connection is lost",
    "the connection is closed",
    "connection already closed",
    "server closed the connection",
    "terminating connection",
    "consuming input failed",
    "could not receive data from server",
    "could not send data to server",
    "no connection to the server",
    "ssl connection has been closed",
)

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


def is_connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` says the database connection is gone (not a refused statement)."""
    state = sqlstate(exc)
    if state is not None and (state.startswith("08") or state in CONNECTION_LOST_SQLSTATES):
        return True
    cause: BaseException | None = exc
    while cause is not None:
        text = str(cause).lower()
        if any(marker in text for marker in _CONNECTION_LOST_TEXT):
            return True
        cause = cause.__cause__
    return False


def discard_broken_connections() -> None:
    """Close this thread's connections whose driver connection is broken.

    Only outside an ``atomic()`` block: inside one, Django closes the
    connection itself when the block fails to roll back. The next use of a
    closed connection opens a new one.
    """
    for connection in connections.all(initialized_only=True):
        driver = connection.connection
        if driver is None or connection.in_atomic_block:
            continue
        if getattr(driver, "closed", False) or not _usable(connection):
            # close() of a broken connection can fail; the wrapper forgets it anyway.
            try:
                connection.close()
            except DjangoError:
                connection.connection = None


def _usable(connection: BaseDatabaseWrapper) -> bool:
    if not connection.errors_occurred:
        return True
    return bool(connection.is_usable())


def _driver_errors() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installations
        return ()
    return (psycopg.Error,)


#: What :func:`translate_errors` turns into agent_sessions errors: Django's
#: wrapped errors (InterfaceError included) and raw driver errors.
_TRANSLATED: tuple[type[BaseException], ...] = (DjangoError, *_driver_errors())


@contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    """Turn database failures inside the block into agent_sessions errors.

    On a lost connection the broken connection is closed (see
    :func:`discard_broken_connections`), so that the next call reconnects;
    ``details["connection_lost"]`` is then True.

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
    except _TRANSLATED as exc:
        details: dict[str, Any] = {
            "operation": operation,
            "cause": str(exc),
            "sqlstate": sqlstate(exc),
        }
        if is_missing_schema(exc):
            raise MigrationRequiredError(details=details) from exc
        if is_connection_lost(exc):
            details["connection_lost"] = True
            discard_broken_connections()
        raise StorageError(
            "storage_error", f"{operation} failed in the database: {exc}", details=details
        ) from exc


class RetryTransaction(Exception):
    """Raised by a write's work to have :func:`run_write` run the whole transaction again.

    For a race the retry resolves, such as losing the insert of a new event
    id to a concurrent transaction (the retry finds the winner's row).
    """

    def before_retry(self, connection: BaseDatabaseWrapper) -> None:
        """Repair what made the work fail, after the rollback and before it runs again.

        Runs in its own short transaction (inside the caller's, when the
        write is nested). The default does nothing.
        """


def _lost(exc: StorageError) -> bool:
    return bool(exc.details.get("connection_lost"))


def run_write(
    alias: str,
    operation: str,
    work: Callable[[BaseDatabaseWrapper], _T],
    *,
    single_statement: bool = False,
    retry_safe: bool = True,
) -> _T:
    """Run ``work(connection)`` in one transaction on ``alias``: the one write path.

    The transaction takes SQLite's write lock first. It runs again when it
    raised :class:`RetryTransaction` (at most :data:`RETRY_TRANSACTION_LIMIT`
    times) and, on SQLite, while the database stays locked (for at most
    :data:`SQLITE_LOCK_RETRY_SECONDS`). When the connection was lost, the
    connection is closed and — if ``retry_safe`` and this is the outermost
    transaction — the write runs once more on a new connection. Inside the
    caller's own ``atomic()`` block nothing is retried (the block's earlier
    work cannot be replayed): the error is raised.

    Args:
        alias: The database alias to write to.
        operation: What is being done, for error messages.
        work: Does the writing; receives the connection.
        single_statement: ``work`` is atomic by itself when the connection
            is in autocommit: it runs exactly one statement, or (the SQLite
            single append) opens and commits its own transaction. Outside any
            transaction it then runs without Django's BEGIN/COMMIT (two round
            trips fewer on the hot append path); a failure still undoes all
            of it.
        retry_safe: Running ``work`` twice has the effect of running it once
            (an append by event id, an upsert by id), so it may be repeated
            when the connection was lost, even after a COMMIT whose outcome
            is unknown.

    Returns:
        What ``work`` returned.

    Raises:
        StorageError: the database failed (``details["connection_lost"]``
            when the connection went away and the write was not retried or
            failed again).
        MigrationRequiredError: a table or column is missing.
    """
    connection = connections[alias]
    deadline = time.monotonic() + SQLITE_LOCK_RETRY_SECONDS
    pause = 0.005
    races = 0
    reconnected = False
    while True:
        outermost = not connection.in_atomic_block
        locked = False
        try:
            with translate_errors(operation):
                try:
                    if single_statement and outermost and connection.get_autocommit():
                        return work(connection)
                    with transaction.atomic(using=alias):
                        if _needs_write_lock(connection):
                            with connection.cursor() as cursor:
                                take_sqlite_write_lock(cursor)
                        return work(connection)
                except OperationalError as exc:
                    if not (outermost and is_sqlite_locked(exc) and time.monotonic() < deadline):
                        raise
                    locked = True
        except RetryTransaction as exc:
            races += 1
            if races > RETRY_TRANSACTION_LIMIT:
                raise StorageError(
                    "storage_error",
                    f"{operation} kept colliding with concurrent writes of the same id",
                    details={"operation": operation, "cause": str(exc.__cause__)},
                ) from exc
            with translate_errors(operation), transaction.atomic(using=alias):
                exc.before_retry(connection)
            continue
        except StorageError as exc:
            if _lost(exc) and outermost and retry_safe and not reconnected:
                reconnected = True
                continue
            raise
        if locked:
            # Jitter spreads out writers that were all woken by the same commit.
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 0.2)


@contextmanager
def write_block(alias: str, operation: str) -> Iterator[BaseDatabaseWrapper]:
    """:func:`run_write` for work that has to be a ``with`` block (a generator's step).

    One transaction on ``alias`` with SQLite's write lock taken first and
    errors translated. Nothing is retried (a block cannot be replayed): a
    lost connection raises ``StorageError`` and the next call reconnects.

    Yields:
        The connection.
    """
    connection = connections[alias]
    with translate_errors(operation), transaction.atomic(using=alias):
        if _needs_write_lock(connection):
            with connection.cursor() as cursor:
                take_sqlite_write_lock(cursor)
        yield connection


def savepoint_in_transaction(alias: str) -> AbstractContextManager[Any]:
    """A savepoint when a transaction is open on ``alias``, else nothing.

    For a read that may fail in an expected way (a search whose index was
    dropped): on PostgreSQL the failure would otherwise abort the caller's
    transaction (``ATOMIC_REQUESTS``, say), and with it the rest of the request.
    """
    if connections[alias].in_atomic_block:
        return transaction.atomic(using=alias)
    return nullcontext()


def _needs_write_lock(connection: BaseDatabaseWrapper) -> bool:
    """SQLite, unless its transactions already start with ``BEGIN IMMEDIATE``.

    Django's ``OPTIONS["transaction_mode"] = "IMMEDIATE"`` takes the write
    lock at BEGIN (inside a nested block, the outer BEGIN took it), so the
    extra statement would only cost a round trip.
    """
    if connection.vendor != "sqlite":
        return False
    return getattr(connection, "transaction_mode", None) != "IMMEDIATE"


def reconnecting(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """Decorator for a public read method: run it once more after a lost connection.

    For methods that only read (the query API): when the call failed because
    a connection was lost, and no connection of this thread is inside an
    ``atomic()`` block, the whole call runs again on a new connection.
    """

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(*args, **kwargs)
        except StorageError as exc:
            if not _lost(exc) or any(
                c.in_atomic_block for c in connections.all(initialized_only=True)
            ):
                raise
        return method(*args, **kwargs)

    return call


def run_read(alias: str, operation: str, work: Callable[[BaseDatabaseWrapper], _T]) -> _T:
    """Run the read ``work(connection)`` on ``alias``, translating errors.

    When the connection was lost, the read runs once more on a new
    connection, unless it is inside the caller's ``atomic()`` block.

    Raises:
        StorageError: the database failed.
        MigrationRequiredError: a table or column is missing.
    """
    connection = connections[alias]
    try:
        with translate_errors(operation):
            return work(connection)
    except StorageError as exc:
        if not _lost(exc) or connection.in_atomic_block:
            raise
    with translate_errors(operation):
        return work(connection)


def proxy_in_between(settings_dict: dict[str, Any], server_port: int | None) -> str | None:
    """Describe the proxy between us and PostgreSQL, or None when none is visible.

    A pooler such as PgBouncer listens on its own port and reaches the server
    on the server's: when the server reports (``inet_server_port()``) another
    port than the one the alias dials, something is in between. Unix sockets
    and aliases without an explicit ``PORT`` are taken as direct.

    Args:
        settings_dict: The alias's ``DATABASES`` entry.
        server_port: What ``SELECT inet_server_port()`` returned on it.
    """
    configured = settings_dict.get("PORT")
    host = str(settings_dict.get("HOST") or "")
    if not configured or host.startswith("/") or server_port is None:
        return None
    if int(server_port) == int(configured):
        return None
    return f"port {configured} configured, the server listens on {server_port}"


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
