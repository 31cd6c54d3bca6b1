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
  calls) and, at the latest, when their event loop is done with them: at
  ``loop.shutdown_asyncgens()`` (``asyncio.run()`` and ``Runner.run_sync``
  call it; the hook is armed again when the same loop is used afterwards),
  when the thread that opened them exits (a worker thread calling
  ``Runner.run_sync``), when their loop is found closed without that call
  (checked on every later use of the fast path, from any loop), and at
  interpreter exit. A connection that failed, or was left inside a
  transaction by a cancellation, is closed instead of being reused.

Only single, self-contained statements go this way. Anything that needs a
transaction of several statements (a batch, ADK's app/user state) keeps the
worker-thread path, and so does every database other than PostgreSQL.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from django.db import Error as DjangoError
from django.db import connections

from agent_sessions.db import is_connection_lost

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
        # Lent out right now: closed too when the loop is found gone mid-use.
        self.lent: set[psycopg.AsyncConnection[Any]] = set()
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
            self.lent.add(connection)
            reusable = False
            try:
                yield connection
                reusable = True
            finally:
                self.lent.discard(connection)
                if (
                    reusable
                    and generation == self.generation
                    and not connection.closed
                    and connection.info.transaction_status == pq.TransactionStatus.IDLE
                ):
                    self.idle.append(connection)
                else:
                    await connection.close()

    def close_now(self) -> None:
        """Close every connection synchronously, in use or not (the loop cannot run any more)."""
        self.generation += 1
        connections_, self.idle, self.lent = [*self.idle, *self.lent], [], set()
        for connection in connections_:
            # Sends the protocol's Terminate and closes the socket without awaiting.
            connection.pgconn.finish()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when they are given back."""
        self.generation += 1
        idle, self.idle = self.idle, []
        for connection in idle:
            await connection.close()


class _LoopPools:
    """The pools of one event loop, and whether its shutdown hook is armed.

    Holds no reference to the loop itself, so that the registry below can
    key it weakly.
    """

    def __init__(self) -> None:
        self.pools: dict[str, _Pool] = {}
        self.hook_armed = False

    def close_now(self) -> None:
        """Close every connection synchronously (the loop is gone or cannot run)."""
        for pool in self.pools.values():
            pool.close_now()
        self.pools.clear()


# Event loop → its pools. Weak keys: a loop that is gone takes its entry with it.
# The shutdown hook (an async generator) is kept by the loop only, as an
# attribute, so that nothing here keeps a finished loop alive.
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPools] = (
    weakref.WeakKeyDictionary()
)
_registry_lock = threading.Lock()
_thread_state = threading.local()
_HOOK_ATTRIBUTE = "_agent_sessions_pgasync_closer"


class _ThreadGuard:
    """Kept in a thread-local: when the thread exits it is dropped, closing its loops' pools.

    A worker thread that called ``Runner.run_sync`` leaves its default loop
    open (the SDK keeps it for the next call), so nothing else would ever
    close those connections.
    """

    def __init__(self) -> None:
        self.loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        weakref.finalize(self, _close_loops_sync, self.loops)


def _close_loops_sync(loops: weakref.WeakSet[asyncio.AbstractEventLoop]) -> None:
    with _registry_lock:
        found = [_registry.pop(loop, None) for loop in list(loops)]
    for entry in found:
        if entry is not None:
            entry.close_now()


def _sweep_closed_loops() -> None:
    """Close the pools of loops that were closed without ``shutdown_asyncgens()``."""
    with _registry_lock:
        closed = [loop for loop in list(_registry) if loop.is_closed()]
        found = [_registry.pop(loop) for loop in closed]
    for entry in found:
        entry.close_now()


@atexit.register
def _close_all_at_exit() -> None:
    with _registry_lock:
        found = list(_registry.values())
        _registry.clear()
    for entry in found:
        entry.close_now()


async def _close_at_loop_shutdown(entry: _LoopPools) -> AsyncIterator[None]:
    # Suspended at its yield for the life of the loop; loop.shutdown_asyncgens()
    # resumes it into finally. The loop may run again afterwards (Runner.run_sync
    # keeps it), so the hook is marked spent and armed again on the next use.
    try:
        yield
    finally:
        entry.hook_armed = False
        for pool in list(entry.pools.values()):
            await pool.aclose()
        entry.pools.clear()


async def _pool(alias: str) -> _Pool:
    loop = asyncio.get_running_loop()
    _sweep_closed_loops()
    with _registry_lock:
        entry = _registry.get(loop)
        if entry is None:
            entry = _registry[loop] = _LoopPools()
    if not entry.hook_armed:
        closer = _close_at_loop_shutdown(entry)
        # The first step registers the generator with the loop's shutdown list
        # (which holds it weakly); the loop keeps it alive as an attribute.
        await anext(closer)
        try:
            setattr(loop, _HOOK_ATTRIBUTE, closer)
        except AttributeError:  # pragma: no cover - a loop without __dict__ (uvloop)
            _hooks_without_loop_attribute[loop] = closer
        entry.hook_armed = True
        guard = getattr(_thread_state, "guard", None)
        if guard is None:
            guard = _thread_state.guard = _ThreadGuard()
        guard.loops.add(loop)
    pool = entry.pools.get(alias)
    if pool is None:
        pool = entry.pools[alias] = _Pool(alias)
    return pool


# Loops whose class takes no attributes keep their hook here instead.
_hooks_without_loop_attribute: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, AsyncIterator[None]
] = weakref.WeakKeyDictionary()


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
    try:
        return await _execute(pool, sql, params)
    except DjangoError as exc:
        if not is_connection_lost(exc):
            raise
    # The server ended the connection (a restart, pg_terminate_backend, an
    # idle timeout): the idle ones are likely gone too. Once more on a new
    # one; every statement that comes this way is safe to repeat (appends
    # are idempotent by event id, the rest are reads).
    await pool.aclose()
    return await _execute(pool, sql, params)


async def _execute(pool: _Pool, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    with connections[pool.alias].wrap_database_errors:
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
    entry = _registry.get(asyncio.get_running_loop())
    for name, pool in list(entry.pools.items() if entry else ()):
        if alias is None or name == alias:
            await pool.aclose()
