"""Full-text search in the admin: the event search box and "find in this conversation".

A search term that is an exact id (session, run, correlation or event id)
keeps listing events in the changelist (:mod:`agent_sessions.admin.search`);
any other term is a full-text search, shown on its own page with ranked hits,
highlighted snippets and links to each event. The search is
:meth:`DjangoQueryAPI.search_text`, the same as ``GET search?q=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import QueryDict
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe

from agent_sessions import models
from agent_sessions.admin.display import admin_url, admin_view_url, utc_timestamp
from agent_sessions.core import Event
from agent_sessions.errors import AgentSessionsError
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.search import SNIPPET_START, SNIPPET_STOP

__all__ = ["PAGE_SIZE", "TextSearchHit", "highlight", "text_search_context"]

#: Hits per page of the admin's text search.
PAGE_SIZE = 25


def highlight(snippet: str) -> SafeString:
    """The snippet as HTML: text escaped, ``[[term]]`` as ``<mark>term</mark>``."""
    parts = []
    rest = snippet
    while True:
        start = rest.find(SNIPPET_START)
        stop = rest.find(SNIPPET_STOP, start + len(SNIPPET_START)) if start >= 0 else -1
        if start < 0 or stop < 0:
            parts.append(conditional_escape(rest))
            break
        parts.append(conditional_escape(rest[:start]))
        parts.append(format_html("<mark>{}</mark>", rest[start + len(SNIPPET_START) : stop]))
        rest = rest[stop + len(SNIPPET_STOP) :]
    return mark_safe("".join(str(part) for part in parts))


@dataclass(frozen=True)
class TextSearchHit:
    """One row of the admin's text-search page."""

    event: Event
    rank: float
    snippet: SafeString
    event_url: str
    conversation_url: str
    session_url: str
    timestamp: str


def text_search_context(query: QueryDict) -> dict[str, Any]:
    """The template context of one page: ``q``, ``session_id``, ``hits``, ``next_url``, ``error``.

    ``q`` and ``cursor`` come from the request; ``session_id`` restricts the
    search to one session (the "find in this conversation" form). Events of
    soft-deleted sessions are included: the admin shows every row.
    """
    q = query.get("q", "").strip()
    session_id = query.get("session_id") or None
    context: dict[str, Any] = {"q": q, "session_id": session_id, "hits": [], "next_url": None}
    if not q:
        return context
    try:
        page = DjangoQueryAPI().search_text(
            q,
            session_ids=[session_id] if session_id else None,
            include_deleted=True,
            limit=PAGE_SIZE,
            cursor=query.get("cursor") or None,
        )
    except AgentSessionsError as exc:
        context["error"] = exc.message
        return context
    context["hits"] = [
        TextSearchHit(
            event=hit.event,
            rank=hit.rank,
            snippet=highlight(hit.snippet),
            event_url=admin_url(models.Event, hit.event.id),
            conversation_url=admin_view_url(models.Session, "conversation", hit.event.session_id)
            + f"?at={hit.event.sequence_number}",
            session_url=admin_url(models.Session, hit.event.session_id),
            timestamp=utc_timestamp(hit.event.timestamp),
        )
        for hit in page.hits
    ]
    if page.cursor:
        following = query.copy()
        following["cursor"] = page.cursor
        context["next_url"] = "?" + following.urlencode()
    return context
