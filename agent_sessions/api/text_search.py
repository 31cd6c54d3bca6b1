"""``GET search?q=``: one page of :meth:`DjangoQueryAPI.search_text` as JSON (CONTRACT §14).

Query parameters: ``q`` (required), ``agent_id``, ``session_ids`` and
``types`` (repeated for several), ``since`` and ``until`` (ISO-8601),
``include_deleted`` (``true``/``false``), ``limit`` and ``cursor``. The
event filters are read by :class:`~agent_sessions.filters.EventFilterSet`'s
form, as everywhere else.
"""

from __future__ import annotations

from typing import Any

from django.http import QueryDict

from agent_sessions import models
from agent_sessions.api.reading import int_param
from agent_sessions.conf import app_settings
from agent_sessions.errors import ValidationError
from agent_sessions.filters import EventFilterSet
from agent_sessions.query import DjangoQueryAPI

__all__ = ["text_search_page"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def text_search_page(query: QueryDict) -> dict[str, Any]:
    """``{"results": [{"event", "rank", "snippet"}…], "next_cursor": str | null}``.

    Raises:
        ValidationError: a missing or bad ``q``, a bad filter, limit or cursor.
    """
    form = EventFilterSet(query, queryset=models.Event.objects.none()).form
    if not form.is_valid():
        errors = form.errors
        field = next(iter(errors))
        raise ValidationError(
            "invalid_event_type" if field == "types" else "validation_error",
            f"invalid filters: {errors.as_text()}",
            {"errors": errors.get_json_data()},
            field=field,
        )
    cleaned = form.cleaned_data
    page = DjangoQueryAPI().search_text(
        query.get("q", ""),
        agent_id=query.get("agent_id") or None,
        session_ids=cleaned.get("session_ids") or None,
        types=cleaned.get("types") or None,
        since=cleaned.get("since"),
        until=cleaned.get("until"),
        include_deleted=_flag(query, "include_deleted"),
        limit=int_param(query, "limit", minimum=1, maximum=app_settings.QUERY_MAX_LIMIT),
        cursor=query.get("cursor") or None,
    )
    return {
        "results": [
            {"event": hit.event.to_dict(), "rank": hit.rank, "snippet": hit.snippet}
            for hit in page.hits
        ],
        "next_cursor": page.cursor,
    }


def _flag(query: QueryDict, name: str) -> bool:
    raw = (query.get(name) or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValidationError(
        "validation_error", f"{name} must be true or false, got {raw[:40]!r}", field=name
    )
