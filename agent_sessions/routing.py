"""Read-your-writes behind a primary/replica database router.

Projects that scale reads out route them to a streaming replica (Django's
multi-database documentation shows the router: reads → replica, writes →
primary). A replica lags the primary, so a read that must see a write just
made has to go to the write database. ``agent_sessions`` sends a read there
(instead of to ``router.db_for_read``) when any of these holds:

- the operation reads back its own writes or decides a write on what it reads
  (the store's ``get_active_run`` and long-poll, existence checks before a
  write, the framework adapters' conversation history);
- the store, query API or registry was built with ``consistent=True``;
- the read runs inside :func:`read_from_primary`;
- the read runs inside an open ``transaction.atomic()`` block on the write
  database (the block's own writes are visible nowhere else).

:func:`read_from_primary` is the per-block switch, like the "pinning" of the
well-known multi-database routers::

    from agent_sessions.routing import read_from_primary

    store.append_event(event)
    with read_from_primary():
        events = store.get_events(session_id)   # sees the event just written

The pin is kept in a :mod:`contextvars` variable: it covers the current thread
or asyncio task (and the worker threads the ``a*`` methods run in), never
another request's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["read_from_primary", "reads_pinned"]

_pinned: ContextVar[int] = ContextVar("agent_sessions_read_from_primary", default=0)


@contextmanager
def read_from_primary() -> Iterator[None]:
    """Send every ``agent_sessions`` read inside the block to the write database.

    Blocks nest; also usable as a decorator of a synchronous function. It does
    not change where Django's own ORM queries go, only this package's reads
    (store, query API, artifact registry, adapters), and only those made
    without an explicit ``using`` alias.
    """
    token = _pinned.set(_pinned.get() + 1)
    try:
        yield
    finally:
        _pinned.reset(token)


def reads_pinned() -> bool:
    """True inside :func:`read_from_primary`."""
    return _pinned.get() > 0
