"""One shared listener per process and database, which wakes readers waiting for events.

Long-polls (``get_events(wait_timeout_ms=...)``), :meth:`stream_events` and
the HTTP stream all wait for the same thing: "session S may now have events
after sequence number N". Instead of each reader opening its own LISTEN
connection, every waiter of a process registers with the one
:class:`EventListener` of its database alias, which a background thread runs:

- On PostgreSQL it holds **one** dedicated connection (the *direct
  connection*, see below) that ``LISTEN``\\ s on
  :data:`~agent_sessions.sequences.NOTIFY_CHANNEL`, and wakes the waiters of a
  session as soon as a notification for it arrives. For every session being
  waited on it holds a shared advisory *watch* lock, which tells appending
  transactions to send ``pg_notify`` (see :mod:`agent_sessions.sequences`).
- On every database it also **re-checks** the sessions being waited on at a
  bounded interval (``AGENT_SESSIONS["WAIT_POLL_INTERVAL_SECONDS"]``, 0.5 s by
  default), with one cheap query for all of them (the highest stored
  sequence number per session, an index lookup each). So events appended by
  writers that send no NOTIFY (ASM's Elixir store, plain SQL, a writer behind
  another pooler) are seen within that interval; on SQLite, and whenever the
  direct connection is unavailable, this polling is the only mechanism. A
  session gets the same check as soon as a new waiter registers for it, so a
  commit that raced the registration is never missed.

Waiting readers hold neither a database connection nor, when async, a thread
while they wait: a synchronous waiter blocks on a :class:`threading.Event`, an
async one awaits an :class:`asyncio.Future` resolved from the listener thread.
The listener thread uses one connection while anybody waits (the direct
LISTEN connection, which also runs the checks; a Django connection of the
alias instead when there is no direct connection), and none once nobody has
waited for :data:`IDLE_DISCONNECT_SECONDS`.

**The direct connection.** ``LISTEN`` and session-level advisory locks are
session state, which a transaction-pooling proxy (PgBouncer with
``pool_mode = transaction``) would leave on a server connection that other
clients then get. The listener therefore opens its connection with the
parameters of ``AGENT_SESSIONS["DIRECT_DATABASE"]`` (an alias that bypasses
the pooler; by default the alias itself). When that alias is not set
explicitly and the server reports a port other than the one configured (a
proxy is in between), or when ``DIRECT_DATABASE`` maps the alias to None,
the listener does not LISTEN and readers are woken by the interval check
alone. A lost direct connection is reopened with back-off; meanwhile the
interval check goes on.

Public interface (used by the store, :mod:`agent_sessions.aio` and the HTTP
views)::

    listener = get_listener("default")          # process-wide, started lazily, thread-safe
    listener.wait(session_id, after=12, timeout=5.0)              # sync; bool
    await listener.wait_async(session_id, after=12, timeout=5.0)  # async; bool

Both return True as soon as the session may have events with
``sequence_number > after`` (re-query to find out: the wake-up may be for
events another reader's filter wants), False when ``timeout`` seconds pass
first. :func:`shutdown_listeners` stops every listener of the process
(tests call it before dropping their database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import threading
import time
from typing import Any

from django.db import connections

from agent_sessions.conf import app_settings
from agent_sessions.db import proxy_in_between
from agent_sessions.sequences import NOTIFY_CHANNEL, WATCH_LOCK_CLASS

__all__ = [
    "IDLE_DISCONNECT_SECONDS",
    "LISTENER_APPLICATION_NAME",
    "EventListener",
    "get_listener",
    "shutdown_listeners",
]

logger = logging.getLogger(__name__)

#: The ``application_name`` of the direct connection, unless the alias sets one.
LISTENER_APPLICATION_NAME = "agent_sessions listener"
#: Once nobody has waited for this long, the listener closes its connections.
IDLE_DISCONNECT_SECONDS = 10.0
#: How soon a watch lock that a committing writer held is tried again.
_WATCH_RETRY_SECONDS = 0.05
#: Back-off between attempts to reopen a lost direct connection.
_RECONNECT_FIRST_SECONDS = 0.1
_RECONNECT_MAX_SECONDS = 5.0
#: After a proxy was detected on the direct alias, how long before looking again.
_PROXY_RECHECK_SECONDS = 60.0
#: SQLite's bound-parameter limit is 999 in old builds; stay well below it.
_SQLITE_CHUNK = 500

_HIGHEST_SEQUENCES_POSTGRES = """
SELECT s.id, (SELECT max(e.sequence_number) FROM asm_events e WHERE e.session_id = s.id)
FROM unnest(%s::varchar[]) AS s(id)
"""
_HIGHEST_SEQUENCES_SQLITE = (
    "SELECT session_id, max(sequence_number) FROM asm_events "
    "WHERE session_id IN ({}) GROUP BY session_id"
)
_WATCH = (
    f"SELECT s, pg_try_advisory_lock_shared({WATCH_LOCK_CLASS}, hashtext(s)) "
    "FROM unnest(%s::text[]) AS s"
)
_UNWATCH = (
    f"SELECT pg_advisory_unlock_shared({WATCH_LOCK_CLASS}, hashtext(s)) "
    "FROM unnest(%s::text[]) AS s"
)

_listeners: dict[tuple[int, str], EventListener] = {}
_listeners_lock = threading.Lock()


def get_listener(alias: str) -> EventListener:
    """The process's listener for database ``alias``, created on first use.

    Thread-safe; a forked child gets a listener of its own.
    """
    key = (os.getpid(), alias)
    with _listeners_lock:
        listener = _listeners.get(key)
        if listener is None:
            listener = _listeners[key] = EventListener(alias)
        return listener


def shutdown_listeners(timeout: float = 5.0) -> None:
    """Stop every listener of this process and close their connections.

    Waiters still registered time out as usual. A later :func:`get_listener`
    starts a new listener.
    """
    with _listeners_lock:
        stopping = [_listeners.pop(key) for key in list(_listeners) if key[0] == os.getpid()]
    for listener in stopping:
        listener.stop(timeout)


def _resolve(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(True)


class _Waiter:
    """One waiting reader: a session, the number it has seen, and how to wake it."""

    __slots__ = ("after", "event", "future", "loop", "session_id", "woken")

    def __init__(
        self, session_id: str, after: int, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.session_id = session_id
        self.after = after
        self.loop = loop
        self.event = threading.Event() if loop is None else None
        self.future: asyncio.Future[bool] | None = None if loop is None else loop.create_future()
        self.woken = False

    def wake(self) -> None:
        """Wake the reader (called by the listener thread, under the listener's lock)."""
        if self.woken:
            return
        self.woken = True
        if self.event is not None:
            self.event.set()
        elif self.loop is not None and self.future is not None:
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(_resolve, self.future)


class EventListener:
    """Wakes readers waiting for new events of a session (one per process and alias).

    Obtain it with :func:`get_listener`; see the module docstring.

    Args:
        alias: The database alias whose ``asm_events`` readers wait on.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._lock = threading.Lock()
        self._waiters: dict[str, list[_Waiter]] = {}
        # Sessions with a waiter registered since the last check of them.
        self._unchecked: set[str] = set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._stopping = False
        # State below is only touched by the listener thread.
        self._direct: Any = None  # psycopg.Connection LISTENing, or None
        self._watched: set[str] = set()
        self._notified: set[str] = set()
        self._next_check = 0.0
        self._reconnect_at = 0.0
        self._reconnect_pause = _RECONNECT_FIRST_SECONDS
        self._idle_since: float | None = None
        self._warned_proxy = False

    # ----------------------------------------------------------------- waiting

    def wait(self, session_id: str, *, after: int, timeout: float) -> bool:
        """Block until ``session_id`` may have events after ``after``, at most ``timeout`` s.

        Args:
            session_id: The session to wait for.
            after: The highest sequence number the caller has seen (or 0).
            timeout: Seconds to wait at most.

        Returns:
            True when woken (a notification for the session, or the check
            found ``sequence_number > after``); False when the time ran out.
        """
        if timeout <= 0:
            return False
        waiter = _Waiter(session_id, after)
        self._register(waiter)
        try:
            assert waiter.event is not None
            return waiter.event.wait(timeout)
        finally:
            self._unregister(waiter)

    async def wait_async(self, session_id: str, *, after: int, timeout: float) -> bool:
        """Async :meth:`wait`: awaits a future, holding no thread and no connection.

        Cancelling the awaiting task unregisters the waiter and leaves nothing behind.
        """
        if timeout <= 0:
            return False
        waiter = _Waiter(session_id, after, asyncio.get_running_loop())
        self._register(waiter)
        try:
            assert waiter.future is not None
            async with asyncio.timeout(timeout):
                return await waiter.future
        except TimeoutError:
            return False
        finally:
            self._unregister(waiter)

    @property
    def waiting(self) -> int:
        """How many readers are waiting right now."""
        with self._lock:
            return sum(len(waiters) for waiters in self._waiters.values())

    @property
    def listening(self) -> bool:
        """True while the direct connection LISTENs (else readers are woken by the check)."""
        return self._direct is not None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close its connections (waiters time out as usual)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._poke()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _register(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.setdefault(waiter.session_id, []).append(waiter)
            self._unchecked.add(waiter.session_id)
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name=f"agent_sessions-listener-{self.alias}", daemon=True
                )
                self._thread.start()
        self._poke()

    def _unregister(self, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(waiter.session_id)
            if waiters is None or waiter not in waiters:
                return
            waiters.remove(waiter)
            if waiters:
                return
            del self._waiters[waiter.session_id]
        # Release the session's watch lock soon: writers stop notifying it.
        self._poke()

    def _poke(self) -> None:
        # A full buffer (OSError) means the thread has been poked already.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    sessions = set(self._waiters)
                    unchecked, self._unchecked = self._unchecked & sessions, set()
                try:
                    self._step(sessions, unchecked)
                except Exception:
                    # Never leave waiters without a listener: start afresh shortly.
                    logger.exception("agent_sessions: the event listener of %r failed", self.alias)
                    self._close_direct()
                    with contextlib.suppress(Exception):
                        connections[self.alias].close()
                    with self._lock:
                        self._unchecked |= set(self._waiters)
                    time.sleep(_RECONNECT_MAX_SECONDS / 5)
        finally:
            self._close_direct()
            with contextlib.suppress(Exception):
                connections[self.alias].close()
            with self._lock:
                self._thread = None

    def _step(self, sessions: set[str], unchecked: set[str]) -> None:
        """One round: connect, watch, check what is due, then sleep until something happens."""
        now = time.monotonic()
        if not sessions:
            self._sleep(self._go_idle(now))
            return
        self._idle_since = None
        self._connect_direct(now)
        pending = self._sync_watches(sessions)
        if now >= self._next_check:
            self._next_check = now + app_settings.WAIT_POLL_INTERVAL_SECONDS
            to_check = sessions
        else:
            # A session whose watch lock a committing writer still holds
            # is checked once the lock is ours, so that its commit is seen.
            to_check = unchecked - pending
        if pending & unchecked:
            with self._lock:
                self._unchecked |= pending & unchecked
        if to_check:
            self._check(to_check)
        timeout = self._next_check - time.monotonic()
        if pending:
            timeout = min(timeout, _WATCH_RETRY_SECONDS)
        if self._direct is None:
            # Reopen a lost direct connection when its back-off ends.
            timeout = min(timeout, self._reconnect_at - time.monotonic())
        self._sleep(timeout)

    def _go_idle(self, now: float) -> float | None:
        """Release what nobody waits for; returns how long to sleep (None: until poked)."""
        if self._watched:
            self._unwatch(self._watched)
        connections[self.alias].close()
        if self._direct is None:
            return None
        if self._idle_since is None:
            self._idle_since = now
        remaining = self._idle_since + IDLE_DISCONNECT_SECONDS - now
        if remaining <= 0:
            self._close_direct()
            return None
        return remaining

    def _sleep(self, timeout: float | None) -> None:
        """Wait for a poke or a notification (or the timeout), then wake notified waiters."""
        readable: list[Any] = [self._wake_r]
        if self._direct is not None:
            readable.append(self._direct.fileno())
        if timeout is not None:
            timeout = max(0.0, timeout)
        ready, _, _ = select.select(readable, [], [], timeout)
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass
        if self._direct is not None:
            self._read_notifications()
        self._wake_notified()

    # ----------------------------------------------------------------- notifications

    def _connect_direct(self, now: float) -> None:
        if self._direct is not None or now < self._reconnect_at:
            return
        if connections[self.alias].vendor != "postgresql":
            self._reconnect_at = float("inf")
            return
        direct_alias = app_settings.direct_database(self.alias)
        if direct_alias is None or direct_alias not in connections.settings:
            # Polling only (the system check reports an unknown alias).
            self._reconnect_at = now + _PROXY_RECHECK_SECONDS
            return
        try:
            direct = _open_direct(direct_alias)
        except Exception as exc:
            logger.warning(
                "agent_sessions: cannot open the LISTEN connection on %r (%s); "
                "waiting readers are woken by polling every %s s",
                direct_alias,
                exc,
                app_settings.WAIT_POLL_INTERVAL_SECONDS,
            )
            self._reconnect_at = now + self._reconnect_pause
            self._reconnect_pause = min(self._reconnect_pause * 2, _RECONNECT_MAX_SECONDS)
            return
        try:
            proxy = (
                None
                if app_settings.direct_database_is_explicit(self.alias)
                else _proxy_in_between(direct, connections[direct_alias].settings_dict)
            )
            if proxy is not None:
                direct.close()
                if not self._warned_proxy:
                    self._warned_proxy = True
                    logger.warning(
                        "agent_sessions: database %r seems to be reached through a proxy or "
                        "pooler (%s); LISTEN would leave state on pooled connections, so "
                        "waiting readers are woken by polling. Point "
                        'AGENT_SESSIONS["DIRECT_DATABASE"] at an alias that bypasses it.',
                        direct_alias,
                        proxy,
                    )
                self._reconnect_at = now + _PROXY_RECHECK_SECONDS
                return
            direct.add_notify_handler(self._on_notification)
            direct.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except Exception as exc:
            direct.close()
            logger.warning("agent_sessions: LISTEN failed on %r: %s", direct_alias, exc)
            self._reconnect_at = now + self._reconnect_pause
            self._reconnect_pause = min(self._reconnect_pause * 2, _RECONNECT_MAX_SECONDS)
            return
        self._direct = direct
        self._watched = set()
        self._reconnect_pause = _RECONNECT_FIRST_SECONDS
        # Commits before LISTEN sent us nothing: check everyone once more.
        with self._lock:
            self._unchecked |= set(self._waiters)

    def _on_notification(self, notification: Any) -> None:
        self._notified.add(notification.payload)

    def _read_notifications(self) -> None:
        direct = self._direct
        try:
            direct.pgconn.consume_input()
            # The handler registered in _connect_direct collects them.
            while (raw := direct.pgconn.notifies()) is not None:
                direct.pgconn.notify_handler(raw)
        except Exception as exc:
            self._lost_direct(exc)

    def _wake_notified(self) -> None:
        if not self._notified:
            return
        notified, self._notified = self._notified, set()
        with self._lock:
            for session_id in notified:
                for waiter in self._waiters.get(session_id, ()):
                    waiter.wake()

    def _sync_watches(self, sessions: set[str]) -> set[str]:
        """Hold watch locks on exactly ``sessions``; returns those whose lock is not ours yet."""
        if self._direct is None:
            return set()
        stale = self._watched - sessions
        if stale:
            self._unwatch(stale)
        wanted = sorted(sessions - self._watched)
        if not wanted or self._direct is None:
            return set()
        try:
            rows = self._direct.execute(_WATCH, [wanted]).fetchall()
        except Exception as exc:
            self._lost_direct(exc)
            return set()
        acquired = {session_id for session_id, ok in rows if ok}
        self._watched |= acquired
        return set(wanted) - acquired

    def _unwatch(self, session_ids: set[str]) -> None:
        released = sorted(session_ids)
        self._watched = self._watched - session_ids
        if self._direct is None:
            return
        try:
            self._direct.execute(_UNWATCH, [released])
        except Exception as exc:
            self._lost_direct(exc)

    def _lost_direct(self, exc: BaseException) -> None:
        logger.warning(
            "agent_sessions: the LISTEN connection of %r was lost (%s); reconnecting",
            self.alias,
            exc,
        )
        self._close_direct()
        self._reconnect_at = time.monotonic()

    def _close_direct(self) -> None:
        direct, self._direct = self._direct, None
        self._watched = set()
        if direct is not None:
            try:
                direct.close()
            except Exception:
                logger.debug("closing the LISTEN connection failed", exc_info=True)

    # ----------------------------------------------------------------- the check

    def _check(self, session_ids: set[str]) -> None:
        """Wake the waiters whose session's highest stored number is above their ``after``."""
        wanted = sorted(session_ids)
        rows: list[Any]
        if self._direct is not None:
            # The direct connection reaches the same database: no second connection.
            try:
                rows = self._direct.execute(_HIGHEST_SEQUENCES_POSTGRES, [wanted]).fetchall()
            except Exception as exc:
                self._lost_direct(exc)
            else:
                self._wake_above(rows)
                return
        connection = connections[self.alias]
        try:
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute(_HIGHEST_SEQUENCES_POSTGRES, [wanted])
                    rows = cursor.fetchall()
                else:
                    rows = []
                    for start in range(0, len(wanted), _SQLITE_CHUNK):
                        chunk = wanted[start : start + _SQLITE_CHUNK]
                        cursor.execute(
                            _HIGHEST_SEQUENCES_SQLITE.format(", ".join(["%s"] * len(chunk))),
                            chunk,
                        )
                        rows.extend(cursor.fetchall())
        except Exception as exc:
            # Waiters keep waiting (their own queries report real failures);
            # the next check runs on a fresh connection.
            logger.warning("agent_sessions: the listener's check on %r failed: %s", self.alias, exc)
            connection.close()
            return
        self._wake_above(rows)

    def _wake_above(self, rows: list[Any]) -> None:
        """Wake waiters whose ``after`` is below their session's highest number in ``rows``."""
        highest = {session_id: int(number) for session_id, number in rows if number is not None}
        with self._lock:
            for session_id, number in highest.items():
                for waiter in self._waiters.get(session_id, ()):
                    if number > waiter.after:
                        waiter.wake()


def _open_direct(alias: str) -> Any:
    """A new autocommit psycopg connection with the parameters of ``alias``."""
    import psycopg

    params = dict(connections[alias].get_connection_params())
    # Django's cursor class and adapters are for its own connections.
    params.pop("cursor_factory", None)
    params.pop("context", None)
    # Named, so that operators (and tests) can tell it in pg_stat_activity.
    params.setdefault("application_name", LISTENER_APPLICATION_NAME)
    return psycopg.connect(**params, autocommit=True)


def _proxy_in_between(direct: Any, settings_dict: dict[str, Any]) -> str | None:
    row = direct.execute("SELECT inet_server_port()").fetchone()
    return proxy_in_between(settings_dict, None if row is None else row[0])
