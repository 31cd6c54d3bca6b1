"""Waiting for a session's next append, for the stream and the long-poll endpoint.

The waiting itself belongs to the process's shared listener
(:mod:`agent_sessions.listener`: one LISTEN connection per database alias,
plus a catch-up poll for writers that send no NOTIFY). Until that module is
available this falls back to polling the session's counter, which is correct
but costs one short query per waiting reader and poll interval.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent_sessions.aio import run_in_worker
from agent_sessions.store import DjangoSessionStore

__all__ = ["release_request_thread", "wait_for_append", "wait_for_append_async"]

#: Fallback only: how often a waiting reader re-reads the session's counter.
FALLBACK_POLL_SECONDS = 0.25


def release_request_thread() -> None:
    """Let the current ASGI request's worker thread end while the request goes on waiting.

    Django's ASGI handler runs each request inside an asgiref
    ``ThreadSensitiveContext``; the first synchronous step of the request
    (the ``request_started`` receivers, synchronous middleware) starts a
    worker thread for that context, which then lives as long as the request
    — for a stream, as long as the client stays. Shutting that executor down
    once the synchronous steps are over ends the thread; should the request
    need one again (``request_finished`` at the very end), asgiref starts a
    fresh one. A no-op outside such a context, or with an executor that the
    caller supplied (not Django's case), or if asgiref's internals change.
    """
    try:
        from asgiref.sync import SyncToAsync

        context = SyncToAsync.thread_sensitive_context.get(None)
        if context is None or getattr(context, "_executor", None) is not None:
            return
        executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    except (AttributeError, TypeError):  # pragma: no cover - a future asgiref
        return
    if executor is not None:
        # Not waiting: the thread is idle now (the view is done with it) and exits by itself.
        executor.shutdown(wait=False)


def _listener(alias: str) -> Any | None:
    try:
        from agent_sessions.listener import get_listener
    except ImportError:
        return None
    return get_listener(alias)


async def wait_for_append_async(
    store: DjangoSessionStore, alias: str, session_id: str, *, after: int, timeout: float
) -> bool:
    """Wait until the session's counter passes ``after``, at most ``timeout`` seconds.

    Holds no database connection and no thread while it waits. Cancelling
    the awaiting task ends the wait.

    Returns:
        True when an append may have happened (read again), False on timeout.
    """
    listener = _listener(alias)
    if listener is not None:
        return bool(await listener.wait_async(session_id, after=after, timeout=timeout))
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(FALLBACK_POLL_SECONDS, remaining))
        if await run_in_worker(store.get_latest_sequence, session_id) > after:
            return True
    return False


def wait_for_append(
    store: DjangoSessionStore, alias: str, session_id: str, *, after: int, timeout: float
) -> bool:
    """The blocking twin of :func:`wait_for_append_async`, for WSGI servers."""
    listener = _listener(alias)
    if listener is not None:
        return bool(listener.wait(session_id, after=after, timeout=timeout))
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(FALLBACK_POLL_SECONDS, remaining))
        if store.get_latest_sequence(session_id) > after:
            return True
    return False
