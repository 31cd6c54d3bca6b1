"""Hot PostgreSQL statements sent straight to the driver, routed once per server connection.

The store's single append and the LangGraph saver's statements bypass Django's
cursor wrapper: they run on one reused psycopg cursor that binds parameters
server-side (nothing quoted in Python). Per server connection, one statement
decides how they run:

- whether the PL/pgSQL function a statement calls exists (migrations 0006,
  0007; a process started before ``migrate`` finds it from its next
  connection on), so the caller picks the call or its plain-SQL twin;
- whether statements may be prepared on the server. Django's default
  connection settings prepare nothing (``prepare_threshold=None``, as
  transaction-pooling proxies need), so every statement would be parsed and
  planned again. Preparing is safe when every statement of this client
  reaches the same server session, that is, on a direct connection: the
  backend process id the server announced when the connection opened is the
  one ``pg_backend_pid()`` reports. A transaction-pooling proxy (PgBouncer,
  pgcat, Odyssey) hands its clients a cancel key of its own, so behind one
  the ids differ and nothing is prepared. A connection that prepares by its
  own ``prepare_threshold`` is left to psycopg.

A statement that cannot run as routed (the function was dropped, or its
prepared statement vanished: a ``DEALLOCATE`` behind psycopg's back, a proxy
after all) raises :class:`AppendFunctionMissing` having done nothing; the
route is looked up again or stops preparing, and the caller runs the
statement again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from django.db import ProgrammingError
from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["AppendFunctionMissing", "Route", "execute", "route"]

_UNDEFINED_FUNCTION = "42883"
_UNDEFINED_PREPARED_STATEMENT = "26000"


class AppendFunctionMissing(Exception):
    """A statement could not run as routed; run it again (then routed anew).

    The function went away after it was found (a migration was reversed), or
    the statement prepared for it is gone from the server connection.
    """


class Route(NamedTuple):
    """How statements calling one function run on one server connection."""

    driver_connection: Any
    cursor: Any  # the connection's reused psycopg cursor
    function: bool  # the function exists
    prepare: bool  # a direct connection: statements may be prepared


def route(connection: BaseDatabaseWrapper, signature: str) -> Route:
    """The route of the statements that call the function ``signature`` (looked up once).

    Args:
        connection: A PostgreSQL Django connection (connected here if needed).
        signature: The function's ``regprocedure`` text, e.g.
            ``"asm_append_event(varchar, …)"``.
    """
    cached: tuple[Any, dict[str, Route]] | None = getattr(
        connection, "_agent_sessions_routes", None
    )
    # The hot path: this driver connection's route is known (one lookup per append).
    if cached is not None and cached[0] is connection.connection is not None:
        known = cached[1].get(signature)
        if known is not None:
            return known
    import psycopg

    connection.ensure_connection()
    driver_connection = connection.connection
    if cached is None or cached[0] is not driver_connection:
        cached = (driver_connection, {})
        connection._agent_sessions_routes = cached  # type: ignore[attr-defined]
    routes = cached[1]  # without ``signature``: the hot path above would have found it
    cursor = next(iter(routes.values())).cursor if routes else psycopg.Cursor(driver_connection)
    with connection.wrap_database_errors:
        cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL, pg_backend_pid()", [signature])
        row = cursor.fetchone()
    direct = row is not None and row[1] == driver_connection.info.backend_pid
    found = routes[signature] = Route(
        driver_connection,
        cursor,
        function=bool(row and row[0]),
        prepare=direct and driver_connection.prepare_threshold is None,
    )
    return found


def execute(
    connection: BaseDatabaseWrapper,
    signature: str,
    sql: str,
    params: Mapping[str, Any],
    *,
    without_function: str | None = None,
    may_prepare: bool = True,
) -> list[Any]:
    """Run ``sql`` (or ``without_function`` where the function is missing) and return its rows.

    Errors are wrapped as Django wraps ``execute()``'s (``IntegrityError``, …).

    Args:
        connection: The Django connection.
        signature: The function the route belongs to.
        sql: The statement, with ``%(name)s`` parameters.
        params: Its parameters.
        without_function: The statement to run instead when the route says
            the function does not exist (the same parameters); None runs
            ``sql`` whatever the route.
        may_prepare: False runs it unprepared whatever the route (inside the
            caller's transaction with no savepoint to return to, where a
            vanished prepared statement would abort the transaction).

    Raises:
        AppendFunctionMissing: the statement did nothing; run it again.
    """
    current = route(connection, signature)
    if without_function is not None and not current.function:
        sql = without_function
    prepare = current.prepare and may_prepare
    try:
        with connection.wrap_database_errors:
            if prepare:
                # psycopg prepares only while its connection has a threshold; lent
                # for this call, the connection's other statements stay unprepared
                # (a Django connection serves one thread at a time).
                current.driver_connection.prepare_threshold = 0
                try:
                    current.cursor.execute(sql, params, prepare=True)
                finally:
                    current.driver_connection.prepare_threshold = None
            else:
                current.cursor.execute(sql, params)
            rows: list[Any] = current.cursor.fetchall() if current.cursor.description else []
            return rows
    except ProgrammingError as exc:
        sqlstate = getattr(exc.__cause__, "sqlstate", None)
        routes = connection._agent_sessions_routes[1]  # type: ignore[attr-defined]
        if current.function and sqlstate == _UNDEFINED_FUNCTION:
            routes.pop(signature, None)  # looked up again on the next call
            raise AppendFunctionMissing from exc
        if prepare and sqlstate == _UNDEFINED_PREPARED_STATEMENT:
            # Deallocated behind psycopg's back, or a pooler after all: every
            # route of this connection runs unprepared from now on.
            for name, other in list(routes.items()):
                routes[name] = other._replace(prepare=False)
            raise AppendFunctionMissing from exc
        raise
