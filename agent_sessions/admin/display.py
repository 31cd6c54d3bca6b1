"""Rendering helpers shared by the admin pages: JSON, times, links, token counts."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import Model
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from agent_sessions import models

#: A ``\\n`` escape inside a JSON string (not an escaped backslash followed by ``n``).
_NEWLINE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\n")


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON in a wrapped, scrollable ``<pre>`` block, HTML-escaped.

    Newlines inside strings are shown as line breaks rather than ``\\n``, so
    a multi-line message or a stack trace reads as written; the raw JSON
    (copy/download on the event page) keeps the escapes.
    """
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    text = _NEWLINE_ESCAPE.sub(lambda match: match.group(1) + "\n", text)
    return format_html('<pre class="asm-json">{}</pre>', text)


def utc_timestamp(value: dt.datetime | None) -> str:
    """``value`` in UTC to the microsecond (event order is finer than minutes)."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).isoformat(" ", timespec="microseconds").replace("+00:00", "")


def compact_time(value: dt.datetime | None) -> str:
    """``value`` in UTC to the second, for narrow list columns (``-`` when None)."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def json_display(field_name: str) -> Callable[[Any, Model], SafeString]:
    """A read-only admin field showing the JSON column ``field_name`` pretty-printed."""

    @admin.display(description=field_name.replace("_", " "))
    def display(model_admin: Any, obj: Model) -> SafeString:
        return pretty_json(getattr(obj, field_name))

    return display


def stored_value(field_name: str) -> Callable[[Any, Model], str]:
    """A list column with the stored string as is.

    A status or event type that this version does not know (written by a
    newer ASM) is shown rather than the "-" Django shows for a value
    outside a field's choices (CONTRACT §11).
    """

    @admin.display(description=field_name, ordering=field_name)
    def show(model_admin: Any, obj: Model) -> str:
        return str(getattr(obj, field_name))

    return show


def admin_url(model: type[Model], object_id: str) -> str:
    """The admin page of ``model``'s row ``object_id`` (which need not exist)."""
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[quote(object_id)])


def admin_view_url(model: type[Model], view: str, object_id: str) -> str:
    """The admin view ``view`` (``"conversation"``, ``"raw"``…) of ``model``'s row ``object_id``."""
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[quote(object_id)])


def changelist_url(model: type[Model], **params: Any) -> str:
    """The admin changelist of ``model`` filtered by exact ``params``."""
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def session_link(session_id: str | None) -> str:
    """A link to a session's page, or ``-`` when there is no id."""
    return id_link(models.Session, session_id)


def id_link(model: type[Model], object_id: str | None, label: str | None = None) -> str:
    """A link to ``model``'s admin page of ``object_id``, or ``-`` when there is no id."""
    if not object_id:
        return "-"
    return format_html(
        '<a href="{}" class="asm-id">{}</a>', admin_url(model, object_id), label or object_id
    )


def run_link(run_id: str | None) -> str:
    """A link to a run's page, or ``-`` when there is no id."""
    return id_link(models.Run, run_id)


def format_cost(cost: float | None) -> str:
    """A cost in USD for a table cell (``-`` when unknown)."""
    return "-" if cost is None else f"{cost:.6f}"


def token_summary(token_usage: dict[str, Any] | None) -> str:
    """A run's stored token counts, e.g. ``"1200 in · 300 out · 1500 total"``.

    Only the counts the run stored are shown (no total is made up), so the
    list agrees with the QueryAPI's sums on the session page.
    """
    usage = token_usage or {}
    parts = [
        f"{usage[key]} {label}"
        for key, label in (
            ("input_tokens", "in"),
            ("output_tokens", "out"),
            ("total_tokens", "total"),
        )
        if isinstance(usage.get(key), int | float) and not isinstance(usage.get(key), bool)
    ]
    return " · ".join(parts) or "-"
