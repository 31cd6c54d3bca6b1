"""The admin's export: several sessions as one JSON Lines stream, in flat memory.

Each line is one record in the format of :mod:`agent_sessions.archive` (so
:func:`~agent_sessions.archive.read_archive` reads an export back)::

    {"kind": "session", "record": {...Session.to_dict()...}}
    {"kind": "run", "record": {...Run.to_dict()...}}
    {"kind": "event", "record": {...Event.to_dict()...}}

per session: the session, its runs (oldest first), its events (by sequence
number). Runs and events are read by keyset in pages, and the event page
shrinks when events are large, so the response never holds more than a few
megabytes whatever the session's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from agent_sessions.conf import app_settings
from agent_sessions.errors import NotFoundError
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.store import DjangoSessionStore

__all__ = ["EXPORT_PAGE_SIZE", "export_lines"]

#: Events read per query at most (fewer when they are large).
EXPORT_PAGE_SIZE = 500
#: Aim for pages of about this many bytes of JSON: 1 MB events come 4 at a time.
EXPORT_PAGE_BYTES = 4 * 1024 * 1024

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def _line(kind: str, record: Any) -> bytes:
    return (_dumps({"kind": kind, "record": record.to_dict()}) + "\n").encode()


def _session_lines(session_id: str) -> Iterator[bytes]:
    store, query_api = DjangoSessionStore(), DjangoQueryAPI()
    try:
        session = store.get_session(session_id)
    except NotFoundError:
        return  # deleted since it was selected
    yield _line("session", session)
    cursor: str | None = None
    while True:
        runs = query_api.search_runs(
            session_id=session_id,
            order_by="started_at_asc",
            limit=app_settings.QUERY_MAX_LIMIT,
            cursor=cursor,
        )
        yield b"".join(_line("run", run) for run in runs.runs)
        cursor = runs.cursor
        if cursor is None:
            break
    after: int | None = None
    limit = 50
    while True:
        events = store.get_events(session_id, after=after, limit=limit)
        chunk = b"".join(_line("event", event) for event in events)
        yield chunk
        if len(events) < limit:
            return
        after = events[-1].sequence_number
        # Keep each page near EXPORT_PAGE_BYTES, however large the events are.
        per_event = max(1, len(chunk) // len(events))
        limit = max(1, min(EXPORT_PAGE_SIZE, EXPORT_PAGE_BYTES // per_event))


def export_lines(session_ids: Iterable[str]) -> Iterator[bytes]:
    """The JSON Lines export of ``session_ids``, as chunks of bytes for a streaming response.

    Sessions that no longer exist are left out. Each chunk is one query's
    worth of records; nothing is buffered beyond it.
    """
    for session_id in session_ids:
        for chunk in _session_lines(session_id):
            if chunk:
                yield chunk
