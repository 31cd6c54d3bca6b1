"""The admin's export: several sessions as one JSON Lines stream, in flat memory.

Each session is read with :func:`agent_sessions.api.reading.export_pages` (the
export of ``GET sessions/<id>/export``: keyset pages, one query each), and
each line is one record in the format of :mod:`agent_sessions.archive`, so
:func:`~agent_sessions.archive.read_archive` reads an export back::

    {"kind": "session", "record": {...Session.to_dict()...}}
    {"kind": "run", "record": {...Run.to_dict()...}}
    {"kind": "event", "record": {...Event.to_dict()...}}

Sessions follow each other in one stream; nothing is held beyond one page.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator

from agent_sessions.aio import run_in_worker
from agent_sessions.api.reading import ExportRecord, export_pages
from agent_sessions.errors import NotFoundError

__all__ = ["aexport_lines", "export_lines"]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _lines(page: list[ExportRecord]) -> bytes:
    return "".join(
        _dumps({"kind": kind, "record": record.to_dict()}) + "\n" for kind, record in page
    ).encode()


def export_lines(session_ids: Iterable[str]) -> Iterator[bytes]:
    """The JSON Lines export of ``session_ids``, one chunk of bytes per page read.

    Sessions deleted since they were selected are left out.
    """
    for session_id in session_ids:
        try:
            for page in export_pages(session_id):
                yield _lines(page)
        except NotFoundError:
            continue


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    # A sentinel, not StopIteration: that cannot travel out of a worker thread.
    return next(chunks, None)


async def aexport_lines(session_ids: Iterable[str]) -> AsyncIterator[bytes]:
    """:func:`export_lines` for ASGI: each page read in a worker thread.

    Django buffers a synchronous iterator whole before serving it over ASGI;
    an asynchronous one streams.
    """
    chunks = export_lines(list(session_ids))
    while (chunk := await run_in_worker(_next_chunk, chunks)) is not None:
        yield chunk
