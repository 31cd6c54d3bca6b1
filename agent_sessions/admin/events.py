"""The event admin: the append-only log, read-only for everyone."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from agent_sessions import models
from agent_sessions.admin.display import (
    admin_url,
    changelist_url,
    json_display,
    session_link,
    utc_timestamp,
)
from agent_sessions.admin.filters import EventTypeFilter
from agent_sessions.admin.options import BigTableAdmin
from agent_sessions.conf import app_settings


@admin.register(models.Event)
class EventAdmin(BigTableAdmin):
    """The append-only event log: read-only for everyone.

    Deletion is possible only for superusers, and only when
    ``AGENT_SESSIONS["ADMIN_ALLOW_EVENT_DELETE"]`` is True.
    """

    list_display = (
        "sequence_number",
        "type",
        "session",
        "run_id",
        "timestamp_utc",
        "provider",
        "correlation_id",
    )
    list_display_links = ("sequence_number", "type")
    list_columns = (
        "id",
        "type",
        "session_id",
        "run_id",
        "sequence_number",
        "timestamp",
        "provider",
        "correlation_id",
    )
    list_filter = (EventTypeFilter,)
    sortable_by = ()
    ordering = ("session_id", "sequence_number")
    search_fields = ("id",)
    search_help_text = "Exact session id, run id, correlation id or event id."
    exact_search_fields = ("session_id", "run_id", "correlation_id", "id")
    url_lookups = ("session_id", "run_id", "correlation_id")
    json_fields = ("data", "metadata")
    extra_detail_fields = ("session_row", "timeline")

    data_json = json_display("data")
    metadata_json = json_display("metadata")

    def allows_edit(self) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = getattr(request, "user", None)
        return bool(
            app_settings.ADMIN_ALLOW_EVENT_DELETE
            and user is not None
            and user.is_superuser
            and admin.ModelAdmin.has_delete_permission(self, request, obj)
        )

    @admin.display(description="session")
    def session(self, obj: models.Event) -> str:
        return session_link(obj.session_id)

    @admin.display(description="timestamp (UTC)")
    def timestamp_utc(self, obj: models.Event) -> str:
        return utc_timestamp(obj.timestamp)

    @admin.display(description="session row")
    def session_row(self, obj: models.Event) -> str:
        if models.Session.objects.filter(pk=obj.session_id).exists():
            return session_link(obj.session_id)
        return "No session row: this event's session is not stored (an orphan event)."

    @admin.display(description="timeline")
    def timeline(self, obj: models.Event) -> str:
        around = admin_url(models.Session, obj.session_id)
        events = changelist_url(models.Event, session_id=obj.session_id)
        return format_html(
            '<a href="{}?before_seq={}">This event in its session timeline</a> · '
            '<a href="{}">All events of this session</a>',
            around,
            obj.sequence_number + 1,
            events,
        )
