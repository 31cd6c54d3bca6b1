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
- the read runs inside :class:`read_from_primary`;
- the read runs inside an open ``transaction.atomic()`` block on the write
  database (the block's own writes are visible nowhere else).

:class:`read_from_primary` is the per-block switch, like the "pinning" of the
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

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["read_from_primary", "reads_pinned"]

_F = TypeVar("_F", bound=Callable[..., Any])

_pinned: ContextVar[int] = ContextVar("agent_sessions_read_from_primary", default=0)


class read_from_primary:  # lower case: used like a function, as contextlib's helpers are
    """Send every ``agent_sessions`` read inside the block to the write database.

    ``with read_from_primary():`` or ``async with read_from_primary():``;
    blocks nest. As a decorator (``@read_from_primary()``) it pins each call
    of a function or coroutine function. It does not change where Django's
    own ORM queries go, only this package's reads (store, query API,
    artifact registry, adapters), and only those made without an explicit
    ``using`` alias.
    """

    def __init__(self) -> None:
        self._tokens: list[Token[int]] = []

    def __enter__(self) -> None:
        self._tokens.append(_pinned.set(_pinned.get() + 1))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _pinned.reset(self._tokens.pop())

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)

    def __call__(self, func: _F) -> _F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def pinned_coroutine(*args: Any, **kwargs: Any) -> Any:
                with read_from_primary():
                    return await func(*args, **kwargs)

            return pinned_coroutine  # type: ignore[return-value]

        @functools.wraps(func)
        def pinned(*args: Any, **kwargs: Any) -> Any:
            with read_from_primary():
                return func(*args, **kwargs)

        return pinned  # type: ignore[return-value]


def reads_pinned() -> bool:
    """True inside :class:`read_from_primary`."""
    return _pinned.get() > 0
