"""Async-native single-statement appends on PostgreSQL, without a worker-thread hop.

The adapters' most frequent call, appending one record, is a single SQL
statement on PostgreSQL (:mod:`agent_sessions.sequences`,
:mod:`agent_sessions.integrations.pgsql`). Run through Django's ORM it has to
hop to a worker thread (Django connections are synchronous), which costs more
than the statement's own server time. This module runs those statements on a
small pool of private ``psycopg.AsyncConnection`` objects instead, awaited
directly on the event loop.

The connections:

- are built from the Django alias's ``get_connection_params()`` (same server,
  database, user and options), in autocommit, with the session time zone of
  Django's own connection (so naive UTC timestamps mean the same thing);
- prepare the statements they run (they are private: nobody else's
  statements share them). Behind a transaction-pooling proxy that cannot
  handle prepared statements, use an adapter's ``fast_path=False``;
- live in one pool per event loop and alias (at most :data:`POOL_SIZE`
  connections, opened on demand, reused while idle);
- are closed by :func:`aclose_connections` (what the adapters' ``aclose()``
  calls) and, at the latest, when the event loop shuts down: ``asyncio.run()``
  (and every runner that calls ``loop.shutdown_asyncgens()``) closes them.
  A connection that failed, or was left inside a transaction by a
  cancellation, is closed instead of being reused.

Only single, self-contained statements go this way. Anything that needs a
transaction of several statements (a batch, ADK's app/user state) keeps the
worker-thread path, and so does every database other than PostgreSQL.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from django.db import connections

if TYPE_CHECKING:
    import psycopg

__all__ = ["POOL_SIZE", "aclose_connections", "execute_one"]

#: The most connections one event loop keeps per database alias. One suffices
#: for a single conversation; a few let concurrent tasks append in parallel.
POOL_SIZE = 4


class _Pool:
    """The private connections of one event loop to one database alias."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.slots = asyncio.Semaphore(POOL_SIZE)
        # Bumped by aclose(): a connection handed out before is closed on release.
        self.generation = 0

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        wrapper = connections[self.alias]
        params = dict(wrapper.get_connection_params())
        # Django's cursor class and adapters are for its own connections.
        params.pop("cursor_factory", None)
        params.pop("context", None)
        # Prepared on first use: planning the CTEs is a good part of their cost.
        params["prepare_threshold"] = 0
        connection = await psycopg.AsyncConnection.connect(**params, autocommit=True)
        try:
            # Django sets the same on its connections; naive timestamps rely on it.
            await connection.execute(
                "SELECT set_config('TimeZone', %s, false)", [wrapper.timezone_name]
            )
        except BaseException:
            await connection.close()
            raise
        return connection

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Lend a connection (opened if none is idle) and take it back afterwards."""
        from psycopg import pq

        async with self.slots:
            generation = self.generation
            connection = self.idle.pop() if self.idle else await self._connect()
            reusable = False
            try:
                yield connection
                reusable = True
            finally:
                if (
                    reusable
                    and generation == self.generation
                    and not connection.closed
                    and connection.info.transaction_status == pq.TransactionStatus.IDLE
                ):
                    self.idle.append(connection)
                else:
                    await connection.close()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when they are given back."""
        self.generation += 1
        idle, self.idle = self.idle, []
        for connection in idle:
            await connection.close()


# Event loop → alias → pool. Weak keys: a loop that is gone takes its entry with it.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Pool]] = (
    weakref.WeakKeyDictionary()
)
# Event loop → the async generator whose finally closes its pools at loop shutdown
# (the loop only keeps weak references to async generators).
_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncIterator[None]] = (
    weakref.WeakKeyDictionary()
)


async def _close_at_loop_shutdown(pools: dict[str, _Pool]) -> AsyncIterator[None]:
    # Suspended at its yield for the life of the loop; loop.shutdown_asyncgens()
    # (run by asyncio.run() before closing the loop) resumes it into finally.
    try:
        yield
    finally:
        for pool in list(pools.values()):
            await pool.aclose()
        pools.clear()


async def _pool(alias: str) -> _Pool:
    loop = asyncio.get_running_loop()
    pools = _pools.get(loop)
    if pools is None:
        pools = _pools[loop] = {}
        closer = _close_at_loop_shutdown(pools)
        # The first step registers the generator with the loop's shutdown list.
        await anext(closer)
        _closers[loop] = closer
    pool = pools.get(alias)
    if pool is None:
        pool = pools[alias] = _Pool(alias)
    return pool


async def execute_one(alias: str, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Run one self-contained statement in autocommit and return its first row.

    Driver errors (connecting included) become the matching ``django.db``
    errors, as on Django's own connections; callers translate them with
    :func:`~agent_sessions.db.translate_errors` after handling those they
    expect (an ``IntegrityError``, say).

    Args:
        alias: A PostgreSQL database alias.
        sql: The statement, with ``%(name)s`` parameters.
        params: Its parameters.

    Returns:
        The first row of the result, or None when there is none.

    Raises:
        django.db.DatabaseError: the database failed.
    """
    pool = await _pool(alias)
    with connections[alias].wrap_database_errors:
        async with pool.connection() as connection:
            cursor = await connection.execute(sql, params)
            row: tuple[Any, ...] | None = await cursor.fetchone()
            return row


async def aclose_connections(alias: str | None = None) -> None:
    """Close the running event loop's private connections (to ``alias``, or all).

    Later appends open new ones as needed, so this is safe to call while
    other tasks still use the adapters.

    Args:
        alias: Only this database alias; None: every alias.
    """
    pools = _pools.get(asyncio.get_running_loop(), {})
    for name, pool in list(pools.items()):
        if alias is None or name == alias:
            await pool.aclose()
