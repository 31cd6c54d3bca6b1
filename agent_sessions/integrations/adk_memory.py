"""Google ADK ``BaseMemoryService`` over the full-text search of the ``asm_*`` tables.

Quick start::

    from google.adk.runners import Runner
    from google.adk.tools import load_memory
    from agent_sessions.integrations.adk import DjangoSessionService
    from agent_sessions.integrations.adk_memory import DjangoMemoryService

    runner = Runner(
        agent=agent,  # with tools=[load_memory] or [PreloadMemoryTool()]
        app_name="my_app",
        session_service=DjangoSessionService(),
        memory_service=DjangoMemoryService(),
    )

**What is memory.** What was added with :meth:`DjangoMemoryService.add_session_to_memory`
(or :meth:`~DjangoMemoryService.add_events_to_memory`), as in ADK's own
services: a session of :class:`~agent_sessions.integrations.adk.DjangoSessionService`
is remembered up to the event it had reached when added (the session row's
``metadata["adk_memory_through"]``, a sequence number), with no copy — its
events already sit in ``asm_events``, indexed by the database for
:meth:`~agent_sessions.query.DjangoQueryAPI.search_text`. Events of a session
stored by another service (and events the session does not hold) are
appended, once each, to an asm session of their own,
:func:`~.adk_mapping.memory_session_id`. Deleting or pruning the events
(``delete_session``, retention) forgets them.

**Search.** :meth:`~DjangoMemoryService.search_memory` runs ``search_text``
over the sessions of that app and that user only, and returns the matching
events with text content as ADK ``MemoryEntry`` objects, best first. The query
is read as words, any of which may match (ADK's services do the same), not as
``search_text`` syntax; see :func:`memory_query`.

Needs ``pip install django-agent-sessions[adk]``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from agent_sessions.integrations import missing_extra

# The framework first: without the extra, this is the error users see.
try:
    from google.adk.events.event import Event as AdkEvent
    from google.adk.memory.base_memory_service import BaseMemoryService, SearchMemoryResponse
    from google.adk.memory.memory_entry import MemoryEntry
    from google.adk.sessions.session import Session as AdkSession
    from google.genai import types
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("adk", exc) from exc

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.conf import app_settings
from agent_sessions.db import db_for_read, db_for_write, translate_errors
from agent_sessions.errors import ValidationError
from agent_sessions.integrations.adk import DjangoSessionService
from agent_sessions.integrations.adk_mapping import (
    EVENT_KEY,
    KIND_MEMORY,
    KIND_SESSION,
    MEMORY_MARK,
    SOURCE,
    asm_event_id,
    memory_session_id,
    normalised_id,
    stored_event,
)
from agent_sessions.integrations.payload_log import write_transaction
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.search import MAX_QUERY_LENGTH
from agent_sessions.storable import text_problem
from agent_sessions.store import DjangoSessionStore
from agent_sessions.validation import check_id

__all__ = [
    "DEFAULT_MAX_RESULTS",
    "ENGLISH_STOP_WORDS",
    "MAX_QUERY_WORDS",
    "DjangoMemoryService",
    "memory_query",
]

#: How many memories a search returns unless told otherwise (ADK's in-memory service: 10).
DEFAULT_MAX_RESULTS = 10
#: How many distinct words of a query are searched (the first ones).
MAX_QUERY_WORDS = 32
#: Words left out of queries by default: they match almost every event.
ENGLISH_STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his
    how i if in into is it its itself just me more most my myself no nor not now of off
    on once only or other our ours ourselves out over own same she should so some such
    than that the their theirs them themselves then there these they this those through
    to too under until up very was we were what when where which while who whom why
    will with would you your yours yourself yourselves""".split()  # noqa: SIM905 - a list of 127 strings reads worse
)
#: How many session ids one ``search_text`` call is restricted to.
_SESSION_CHUNK = 500
#: How many pages of one chunk are read while hits are screened out (after the mark, no text).
_MAX_PAGES = 5
#: How many stored event ids one lookup checks.
_ID_CHUNK = 500
#: The memory row of events added without a session id (ADK's services use the same name).
_UNKNOWN_SESSION_ID = "__unknown_session_id__"
#: Only the start of a very long query is read for words.
_MAX_SCANNED = 20 * MAX_QUERY_LENGTH
_WORD = re.compile(r"\w+")
_LETTER_OR_DIGIT = re.compile(r"[^\W_]")


def memory_query(query: object, stop_words: Iterable[str] = ENGLISH_STOP_WORDS) -> str:
    """The ``search_text`` query that looks for any word of ``query``.

    The query is natural language (a user's message, a model's tool call), so
    it is read as words: letters and digits, case-folded, each searched on its
    own (``"word" OR "word" …``; quotes, ``-`` and operators are separators,
    never syntax); stop words and repeats are left out. Only the first
    :data:`MAX_QUERY_WORDS` distinct words that fit §14's 1,000 characters
    are kept: a longer query is truncated, not refused.

    Args:
        query: The text.
        stop_words: Lower-case words to leave out.

    Returns:
        The query for :meth:`~agent_sessions.query.DjangoQueryAPI.search_text`;
        empty when no word is left (nothing can match).

    Raises:
        ValidationError: ``validation_error`` when ``query`` is not a string
            or contains a NUL character or a lone surrogate (which no stored
            text can hold either).
    """
    if not isinstance(query, str):
        raise ValidationError(
            "validation_error", f"query must be a string, not {type(query).__name__}", field="query"
        )
    problem = text_problem(query)
    if problem:
        raise ValidationError("validation_error", f"query {problem}", field="query")
    excluded = frozenset(stop_words)
    terms: list[str] = []
    length = 0
    seen: set[str] = set()
    for match in _WORD.finditer(unicodedata.normalize("NFC", query[:_MAX_SCANNED])):
        word = match.group().casefold()
        if word in seen or word in excluded or not _LETTER_OR_DIGIT.search(word):
            continue
        seen.add(word)
        term = f'"{word}"'
        cost = len(term) + (len(" OR ") if terms else 0)
        if length + cost > MAX_QUERY_LENGTH:
            continue
        terms.append(term)
        length += cost
        if len(terms) == MAX_QUERY_WORDS:
            break
    return " OR ".join(terms)


class DjangoMemoryService(BaseMemoryService):
    """A Google ADK memory service searching the asm tables' full-text index.

    Every method runs its database work in a worker thread (see
    :mod:`agent_sessions.aio`).

    Args:
        using: Database alias; None follows the routers.
        max_results: The most memories one search returns.
        stop_words: Lower-case words left out of queries (default
            :data:`ENGLISH_STOP_WORDS`; ``()`` keeps every word).
        consistent: Search the routers' write database instead of the read
            database (which may be a lagging replica).
    """

    def __init__(
        self,
        *,
        using: str | None = None,
        max_results: int = DEFAULT_MAX_RESULTS,
        stop_words: Iterable[str] = ENGLISH_STOP_WORDS,
        consistent: bool = False,
    ) -> None:
        if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
            raise ValueError(f"max_results must be a positive integer, got {max_results!r}")
        self.using = using
        self.max_results = max_results
        self.stop_words = frozenset(word.casefold() for word in stop_words)
        self.consistent = consistent
        self._store = DjangoSessionStore(using=using)
        self._query = DjangoQueryAPI(using, consistent=consistent)

    # ------------------------------------------------------------------ the ADK API

    async def add_session_to_memory(self, session: AdkSession) -> None:
        """Remember the session as it is now; adding it again remembers what it gained since.

        A session stored by :class:`~agent_sessions.integrations.adk.DjangoSessionService`
        costs one update of its row (no event is copied); the events of a
        session from another service are stored (see the module docstring).
        """
        await run_in_worker(
            self._add, session.app_name, session.user_id, session.id, list(session.events)
        )

    async def add_events_to_memory(
        self,
        *,
        app_name: str,
        user_id: str,
        events: Sequence[AdkEvent],
        session_id: str | None = None,
        custom_metadata: Mapping[str, object] | None = None,
    ) -> None:
        """Remember these events (a delta); ``custom_metadata`` is ignored.

        Events already stored in the session ``session_id`` of
        :class:`~agent_sessions.integrations.adk.DjangoSessionService` are
        remembered in place (with every event stored before them); the others
        are stored once each in the memory row of (app, user, session id).
        """
        await run_in_worker(self._add, app_name, user_id, session_id, list(events))

    async def search_memory(
        self, *, app_name: str, user_id: str, query: str
    ) -> SearchMemoryResponse:
        """The remembered events of this app's user whose text matches a word of ``query``.

        At most ``max_results`` events with text content, best match first
        (then newest); nothing from another app or user.

        Raises:
            ValidationError: ``query`` holds a NUL character (see :func:`memory_query`),
                or ``app_name``/``user_id`` is not a valid id.
            SearchUnavailableError: SQLite without FTS5 (code ``search_unavailable``).
        """
        memories = await run_in_worker(self._search, app_name, user_id, query)
        return SearchMemoryResponse(memories=memories)

    # ------------------------------------------------------------------ adding

    def _add(
        self, app_name: str, user_id: str, session_id: str | None, events: list[AdkEvent]
    ) -> None:
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        adk_id = normalised_id(session_id) or _UNKNOWN_SESSION_ID
        alias = db_for_write(self.using, m.Session)
        marks: dict[str, int] = {}
        elsewhere = events
        if session_id is not None:
            # A fresh service: its cache could name a session deleted since.
            own = DjangoSessionService(using=self.using).asm_session_id(app_name, user_id, adk_id)
            if own is not None:
                found = self._stored_sequences(alias, own, events)
                elsewhere = [e for e in events if asm_event_id(own, e.id) not in found]
                if found:
                    marks[own] = max(found.values())
        elsewhere = [event for event in elsewhere if _has_text(event.content)]
        if elsewhere:
            storage_id = memory_session_id(app_name, user_id, adk_id)
            self._ensure_memory_row(alias, storage_id, app_name, user_id, adk_id)
            stored = self._store.append_events([stored_event(storage_id, e)[0] for e in elsewhere])
            marks[storage_id] = max(event.sequence_number or 0 for event in stored)
        for storage_id, sequence in marks.items():
            self._raise_mark(alias, storage_id, sequence)

    def _stored_sequences(
        self, alias: str, storage_id: str, events: list[AdkEvent]
    ) -> dict[str, int]:
        """asm event id → sequence number of those of ``events`` stored in the session."""
        wanted = [asm_event_id(storage_id, event.id) for event in events]
        found: dict[str, int] = {}
        with translate_errors("add_session_to_memory"):
            for chunk in _chunks(wanted, _ID_CHUNK):
                rows = m.Event.objects.using(alias).filter(session_id=storage_id, id__in=chunk)
                found.update(rows.values_list("id", "sequence_number"))
        return found

    def _ensure_memory_row(
        self, alias: str, storage_id: str, app_name: str, user_id: str, adk_id: str
    ) -> None:
        row = core.Session.new(
            app_name,
            id=storage_id,
            metadata={
                "framework": SOURCE,
                "adk_kind": KIND_MEMORY,
                "adk_user_id": user_id,
                "adk_session_id": adk_id,
            },
        )
        row.validate()
        with translate_errors("add_session_to_memory"):
            m.Session.objects.using(alias).bulk_create(
                [m.Session.from_domain(row)], ignore_conflicts=True
            )

    def _raise_mark(self, alias: str, storage_id: str, sequence: int) -> None:
        """Move the session's memory mark up to ``sequence`` (never down)."""

        def work() -> None:
            rows = m.Session.objects.using(alias).filter(id=storage_id)
            # Locked: two adds of one session must not both read the old metadata.
            found = list(rows.select_for_update().values_list("metadata", flat=True))
            if not found:
                return  # deleted meanwhile: nothing to remember
            metadata = dict(found[0] or {})
            if int(metadata.get(MEMORY_MARK) or 0) < sequence:
                rows.update(metadata={**metadata, MEMORY_MARK: sequence})

        write_transaction(alias, "add_session_to_memory", work)

    # ------------------------------------------------------------------ searching

    def _search(self, app_name: str, user_id: str, query: str) -> list[MemoryEntry]:
        text = memory_query(query, self.stop_words)
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        if not text:
            return []
        marks, adk_ids = self._remembered_sessions(app_name, user_id)
        if not marks:
            return []
        found: list[tuple[float, datetime, str, MemoryEntry]] = []
        for chunk in _chunks(sorted(marks), _SESSION_CHUNK):
            found.extend(self._search_chunk(text, app_name, chunk, marks, adk_ids))
        found.sort(key=lambda hit: (hit[0], hit[1], hit[2]), reverse=True)
        return [entry for *_, entry in found[: self.max_results]]

    def _remembered_sessions(
        self, app_name: str, user_id: str
    ) -> tuple[dict[str, int], dict[str, str]]:
        """The user's sessions with a memory mark: asm id → mark, asm id → ADK session id."""
        alias = db_for_read(self.using, m.Session, consistent=self.consistent)
        marks: dict[str, int] = {}
        adk_ids: dict[str, str] = {}
        with translate_errors("search_memory"):
            rows = m.Session.objects.using(alias).filter(
                agent_id=app_name,
                deleted_at__isnull=True,
                metadata__adk_user_id=user_id,
                metadata__adk_kind__in=[KIND_SESSION, KIND_MEMORY],
                metadata__has_key=MEMORY_MARK,
            )
            pairs = rows.values_list("id", "metadata")
            for storage_id, metadata in pairs.iterator(chunk_size=2000):
                known: dict[str, Any] = metadata or {}
                marks[storage_id] = int(known[MEMORY_MARK])
                adk_ids[storage_id] = str(known.get("adk_session_id", storage_id))
        return marks, adk_ids

    def _search_chunk(
        self,
        text: str,
        app_name: str,
        session_ids: list[str],
        marks: dict[str, int],
        adk_ids: dict[str, str],
    ) -> Iterator[tuple[float, datetime, str, MemoryEntry]]:
        """The best ``max_results`` remembered hits among these sessions."""
        wanted = self.max_results
        cursor = None
        for _ in range(_MAX_PAGES):
            page = self._query.search_text(
                text,
                agent_id=app_name,
                session_ids=session_ids,
                limit=min(max(2 * self.max_results, 20), app_settings.QUERY_MAX_LIMIT),
                cursor=cursor,
            )
            for hit in page.hits:
                event = hit.event
                # Events after the mark (the turn in progress, say) are not memory yet.
                if (event.sequence_number or 0) > marks.get(event.session_id, 0):
                    continue
                entry = _memory_entry(event, adk_ids[event.session_id])
                if entry is not None:
                    yield hit.rank, event.timestamp, event.id, entry
                    wanted -= 1
                    if not wanted:
                        return
            cursor = page.cursor
            if cursor is None:
                return


def _memory_entry(event: core.Event, adk_session_id: str) -> MemoryEntry | None:
    """The memory an event holds; None without text content (nothing a model could read)."""
    payload: Any = event.data.get(EVENT_KEY) if isinstance(event.data, dict) else None
    if not isinstance(payload, dict) or not _has_text(payload.get("content")):
        return None
    return MemoryEntry(
        id=event.id,
        content=types.Content.model_validate(payload["content"]),
        author=payload.get("author"),
        timestamp=event.timestamp.isoformat(),
        custom_metadata={"session_id": adk_session_id, "event_id": payload.get("id")},
    )


def _has_text(content: Any) -> bool:
    """True when the content (an object or its JSON form) has a text part that is not a thought."""
    if isinstance(content, types.Content):
        return any(part.text and not part.thought for part in content.parts or [])
    parts = content.get("parts") if isinstance(content, dict) else None
    return any(
        isinstance(part, dict) and part.get("text") and not part.get("thought")
        for part in parts or []
    )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
