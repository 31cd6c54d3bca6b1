"""The views behind :mod:`agent_sessions.urls`: read-only JSON, JSON Lines and SSE.

Every view is a coroutine. Its database work runs in worker threads through
:func:`agent_sessions.aio.run_in_worker`, one short access at a time, so that
under ASGI a waiting long-poll or an idle stream holds no connection and no
thread. Under WSGI the same views work (Django runs them in an event loop of
their own); the stream then holds its worker for as long as it lasts.

Errors are JSON: ``{"error": {"code", "message", "details"}}`` with the
:class:`~agent_sessions.errors.AgentSessionsError` code — 400 for bad input,
403 when the ``API_PERMISSION`` callable refuses (``permission_denied``),
404 for an unknown session, 405 for anything but GET, 503 when the
database fails. A refused response carries no data.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, router
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from agent_sessions import models
from agent_sessions.aio import run_in_worker
from agent_sessions.api.permissions import has_access
from agent_sessions.api.reading import (
    EventFilter,
    EventWindow,
    ExportRecord,
    event_store,
    export_pages,
    int_param,
    parse_event_filter,
    read_window,
    require_known_session,
    session_detail,
    session_page,
)
from agent_sessions.api.sse import StreamState, run_in_reader, stream_async, stream_sync
from agent_sessions.api.text_search import text_search_page
from agent_sessions.api.waiting import release_request_thread, wait_for_append_async
from agent_sessions.conf import app_settings
from agent_sessions.errors import (
    AgentSessionsError,
    MigrationRequiredError,
    NotFoundError,
    StorageError,
    ValidationError,
)

__all__ = [
    "event_list",
    "event_stream",
    "session_detail_view",
    "session_export",
    "session_list",
    "text_search",
]

logger = logging.getLogger("agent_sessions.api")

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]

_STATUS = {
    ValidationError: 400,
    NotFoundError: 404,
    MigrationRequiredError: 503,
    StorageError: 503,
}
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


# --------------------------------------------------------------------------- plumbing


def error_response(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    """The JSON error body every endpoint uses."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JsonResponse(body, status=status)


def _from_error(exc: AgentSessionsError) -> JsonResponse:
    status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 500)
    if status >= 500:
        # The driver's message may quote SQL or data; it goes to the log, not the client.
        logger.error("agent_sessions API: %s", exc, extra={"details": exc.details})
        return error_response(status, exc.code, exc.message)
    return error_response(status, exc.code, exc.message, exc.details)


def api_view(view: View) -> View:
    """GET only; the ``API_PERMISSION`` check first; errors as JSON.

    The check runs before anything is read, so a refused request learns
    nothing, not even whether the session exists.
    """
    return _guarded(view, run_in_worker)


def event_view(view: View) -> View:
    """:func:`api_view` for the event endpoints: the check runs on the stream reader thread.

    A stream or long-poll then touches the database only from that thread
    (see :func:`agent_sessions.api.sse.run_in_reader`).
    """
    return _guarded(view, run_in_reader)


def _guarded(view: View, worker: Callable[..., Coroutine[Any, Any, Any]]) -> View:
    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "GET":
            response = error_response(
                405, "method_not_allowed", f"{request.method} is not allowed; use GET."
            )
            response["Allow"] = "GET"
            return response
        session_id = kwargs.get("session_id")
        try:
            if not await worker(has_access, request, session_id):
                return error_response(
                    403, "permission_denied", "You do not have access to this resource."
                )
            return await view(request, *args, **kwargs)
        except AgentSessionsError as exc:
            return _from_error(exc)

    return wrapper


def _json(data: dict[str, Any]) -> JsonResponse:
    return JsonResponse(data, encoder=DjangoJSONEncoder, json_dumps_params={"ensure_ascii": False})


def _is_asgi(request: HttpRequest) -> bool:
    return isinstance(request, ASGIRequest)


def _no_buffering(response: HttpResponseBase) -> HttpResponseBase:
    response["Cache-Control"] = "no-cache"
    # nginx buffers proxied responses unless told otherwise per response.
    response["X-Accel-Buffering"] = "no"
    return response


# --------------------------------------------------------------------------- sessions


@api_view
async def session_list(request: HttpRequest) -> HttpResponseBase:
    """``GET sessions/``: ``{"results": [...], "next_cursor": str | null}``."""
    return _json(await run_in_worker(session_page, request.GET))


@api_view
async def text_search(request: HttpRequest) -> HttpResponseBase:
    """``GET search?q=``: full-text search over every session's events (docs/search.md)."""
    return _json(await run_in_worker(text_search_page, request.GET))


@api_view
async def session_detail_view(request: HttpRequest, session_id: str) -> HttpResponseBase:
    """``GET sessions/<id>``: ``{"session", "runs", "stats"}``."""
    return _json(await run_in_worker(session_detail, session_id))


# --------------------------------------------------------------------------- events


def _event_cursor(request: HttpRequest, *, header: bool) -> int:
    """Where to start: ``Last-Event-ID`` (a reconnecting EventSource) before ``?after=``."""
    if header:
        last_id = request.headers.get("Last-Event-ID")
        if last_id:
            text = last_id.strip()
            if not (text.isascii() and text.isdigit() and len(text) <= 10):
                raise ValidationError(
                    "validation_error",
                    f"Last-Event-ID must be a sequence number, got {last_id[:40]!r}",
                    field="Last-Event-ID",
                )
            return int(text)
    return int_param(request.GET, "after", minimum=0, default=0)


def _open_events(session_id: str, request: HttpRequest) -> EventFilter:
    require_known_session(session_id)
    return parse_event_filter(request.GET)


@event_view
async def event_list(request: HttpRequest, session_id: str) -> HttpResponseBase:
    """``GET sessions/<id>/events``: ``{"events": [...], "last_sequence": int}``.

    ``last_sequence`` is the resume point: pass it as ``after`` next time.
    With ``wait_timeout_ms`` (capped by ``API_LONG_POLL_MAX_MS``) the request
    waits, holding no connection, until a matching event is appended.
    """
    after = _event_cursor(request, header=False)
    cap = app_settings.QUERY_MAX_LIMIT
    limit = int_param(
        request.GET,
        "limit",
        minimum=1,
        maximum=cap,
        default=min(app_settings.QUERY_EVENT_DEFAULT_LIMIT, cap),
    )
    wait_ms = int_param(request.GET, "wait_timeout_ms", minimum=0, default=0)
    wait_ms = min(wait_ms, app_settings.API_LONG_POLL_MAX_MS)
    event_filter = await run_in_reader(_open_events, session_id, request)
    store = event_store()
    alias = router.db_for_write(models.Event)
    deadline = time.monotonic() + wait_ms / 1000
    window: EventWindow = await run_in_reader(
        read_window, store, session_id, event_filter, after=after, limit=limit
    )
    if not window.events and wait_ms:
        release_request_thread()
    while not window.events and (remaining := deadline - time.monotonic()) > 0:
        await wait_for_append_async(alias, session_id, after=window.position, timeout=remaining)
        window = await run_in_reader(
            read_window, store, session_id, event_filter, after=window.position, limit=limit
        )
    return _json(
        {
            "events": [event.to_dict() for event in window.events],
            "last_sequence": window.position,
        }
    )


@event_view
async def event_stream(request: HttpRequest, session_id: str) -> HttpResponseBase:
    """``GET sessions/<id>/events/stream``: the session's events as Server-Sent Events.

    Starts after ``Last-Event-ID`` (sent by a reconnecting ``EventSource``)
    or ``?after=N``; ``run_id`` and ``type`` filter. See :mod:`agent_sessions.api.sse`.
    """
    after = _event_cursor(request, header=True)
    event_filter = await run_in_reader(_open_events, session_id, request)
    state = StreamState(
        store=event_store(),
        alias=router.db_for_write(models.Event),
        session_id=session_id,
        event_filter=event_filter,
        position=after,
        heartbeat=app_settings.STREAM_HEARTBEAT_SECONDS,
        max_seconds=app_settings.STREAM_MAX_SECONDS,
        retry_ms=app_settings.STREAM_RETRY_MS,
    )
    content = stream_async(state) if _is_asgi(request) else stream_sync(state)
    response = StreamingHttpResponse(content, content_type="text/event-stream; charset=utf-8")
    return _no_buffering(response)


# --------------------------------------------------------------------------- export


def _lines(page: list[ExportRecord]) -> bytes:
    return "".join(
        _dumps({"kind": kind, "record": record.to_dict()}) + "\n" for kind, record in page
    ).encode()


def _next_page(pages: Iterator[list[ExportRecord]]) -> list[ExportRecord] | None:
    # A sentinel, not StopIteration: that cannot travel out of a worker thread's future.
    return next(pages, None)


def _next_page_closing(pages: Iterator[list[ExportRecord]]) -> list[ExportRecord] | None:
    try:
        return next(pages, None)
    finally:
        close_old_connections()


async def _export_async(
    first: list[ExportRecord], pages: Iterator[list[ExportRecord]]
) -> AsyncIterator[bytes]:
    yield _lines(first)
    while (page := await run_in_worker(_next_page, pages)) is not None:
        yield _lines(page)


def _export_sync(first: list[ExportRecord], pages: Iterator[list[ExportRecord]]) -> Iterator[bytes]:
    yield _lines(first)
    while (page := _next_page_closing(pages)) is not None:
        yield _lines(page)


@api_view
async def session_export(request: HttpRequest, session_id: str) -> HttpResponseBase:
    """``GET sessions/<id>/export``: the whole session as JSON Lines, streamed.

    One record per line, ``{"kind": "session" | "run" | "event", "record":
    {...}}`` — the format of maintenance archives, so
    :func:`agent_sessions.archive.read_archive` reads an export back.
    """
    pages = export_pages(session_id)
    first = await run_in_worker(_next_page, pages)
    assert first is not None  # the session page always exists, or NotFoundError was raised
    content = _export_async(first, pages) if _is_asgi(request) else _export_sync(first, pages)
    response = StreamingHttpResponse(content, content_type="application/jsonl; charset=utf-8")
    filename = _FILENAME_UNSAFE.sub("_", session_id)[:100] or "session"
    response["Content-Disposition"] = f'attachment; filename="{filename}.jsonl"'
    return _no_buffering(response)
