"""Waiting for a session's next append, for the stream and the long-poll endpoint.

The waiting itself is the process's shared listener
(:mod:`agent_sessions.listener`: one LISTEN connection per database alias
wakes every waiter on NOTIFY, and a catch-up check at
``WAIT_POLL_INTERVAL_SECONDS`` sees writers that send no NOTIFY; SQLite has
the check alone). A waiter holds no database connection and, when async, no
thread.
"""

from __future__ import annotations

from agent_sessions.listener import get_listener

__all__ = ["release_request_thread", "wait_for_append", "wait_for_append_async"]


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

    Why private attributes: asgiref (3.13) has no public way to end a
    context's thread early. Its public ``ThreadSensitiveContext(executor=...)``
    picks the executor for a block that the caller opens, but the thread to
    release belongs to the context that Django's ``ASGIHandler`` opened
    around the whole request, and asgiref shuts that thread down only when
    the context exits, after the response — for a stream, when the client
    leaves. ``SyncToAsync.thread_sensitive_context`` and
    ``context_to_thread_executor`` are the class attributes asgiref itself
    uses for that bookkeeping; the lookups are guarded, so a future asgiref
    that renames them costs a thread per stream, not an error
    (``tests/test_api_server.py`` counts the threads).
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


async def wait_for_append_async(alias: str, session_id: str, *, after: int, timeout: float) -> bool:
    """Wait until the session may have events after ``after``, at most ``timeout`` seconds.

    Cancelling the awaiting task (the client went away) ends the wait.

    Returns:
        True when an append may have happened (read again), False on timeout.
    """
    return await get_listener(alias).wait_async(session_id, after=after, timeout=timeout)


def wait_for_append(alias: str, session_id: str, *, after: int, timeout: float) -> bool:
    """The blocking twin of :func:`wait_for_append_async`, for WSGI servers."""
    return get_listener(alias).wait(session_id, after=after, timeout=timeout)
