"""The event admin: the append-only log, read-only for everyone."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from agent_sessions import models
from agent_sessions.admin.display import (
    admin_url,
    admin_view_url,
    changelist_url,
    json_display,
    run_link,
    session_link,
    stored_value,
    utc_timestamp,
)
from agent_sessions.admin.filters import EventTypeFilter
from agent_sessions.admin.options import BigTableAdmin
from agent_sessions.admin.search import matched_columns, search_events
from agent_sessions.admin.text_search import text_search_context
from agent_sessions.conf import app_settings
from agent_sessions.errors import ValidationError
from agent_sessions.eventlog.codec import EVENT_COLUMNS
from agent_sessions.validation import check_id, check_varchar


def raw_event(event: models.Event) -> dict[str, Any]:
    """An event row as JSON (the stored values; the type is kept as stored)."""
    values = {column: getattr(event, column) for column in EVENT_COLUMNS}
    values["timestamp"] = event.timestamp.isoformat() if event.timestamp else None
    return values


def admin_view_url_plain(model_admin: admin.ModelAdmin[Any], view: str) -> str:
    """The URL of one of ``model_admin``'s own views that take no object id."""
    info = model_admin.opts.app_label, model_admin.opts.model_name, view
    return reverse("admin:{}_{}_{}".format(*info))


@admin.register(models.Event)
class EventAdmin(BigTableAdmin):
    """The append-only event log: read-only for everyone.

    Deletion is possible only for superusers, and only when
    ``AGENT_SESSIONS["ADMIN_ALLOW_EVENT_DELETE"]`` is True.
    """

    list_display = (
        "sequence_number",
        "event_type",
        "session",
        "run",
        "timestamp_utc",
        "provider",
        "correlation_id",
    )
    list_display_links = ("sequence_number", "event_type")
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
    # Newest activity first (the timestamp index); a session's list by sequence.
    ordering = ("-timestamp",)
    search_fields = ("id",)
    search_help_text = (
        "Exact session id, run id, correlation id or event id; "
        'other words search the event data ("phrase", -exclude).'
    )
    exact_search_fields = ("session_id", "run_id", "correlation_id", "id")
    url_lookups = ("session_id", "run_id", "correlation_id")
    json_fields = ("data", "metadata")
    extra_detail_fields = ("session_row", "timeline", "raw_json")
    linked_fields = {"session_id": "session", "run_id": "run"}

    event_type = stored_value("type")
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

    def get_ordering(self, request: HttpRequest) -> Any:
        if "session_id" in request.GET:
            # The (session_id, sequence_number) index, read backwards.
            return ("-sequence_number",)
        return super().get_ordering(request)

    def search_queryset(self, queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
        # The one search hook of the event log: exact ids, else full text.
        return search_events(queryset, term)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        term = request.GET.get("q", "").strip()
        if term and self.has_view_permission(request) and not self._is_an_id(request, term):
            # Not an id: a full-text search, on its own page (ranked, with snippets).
            params = {"q": term}
            if request.GET.get("session_id"):
                params["session_id"] = request.GET["session_id"]
            url = admin_view_url_plain(self, "text_search")
            return HttpResponseRedirect(f"{url}?{urlencode(params)}")
        return super().changelist_view(request, extra_context)

    def _is_an_id(self, request: HttpRequest, term: str) -> bool:
        try:
            check_varchar(term, "search", required=True)
        except ValidationError:
            return False
        return bool(matched_columns(self.get_queryset(request).db, term))

    def text_search_view(self, request: HttpRequest) -> HttpResponse:
        """Full-text search over event data: ``?q=`` (and ``session_id=`` for one session)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Search event data",
            "subtitle": None,
            **text_search_context(request.GET),
        }
        return TemplateResponse(request, "admin/agent_sessions/event/text_search.html", context)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "text-search/",
                self.admin_site.admin_view(self.text_search_view),
                name="{}_{}_text_search".format(*info),
            ),
            path(
                "<path:object_id>/raw/",
                self.admin_site.admin_view(self.raw_view),
                name="{}_{}_raw".format(*info),
            ),
            *super().get_urls(),
        ]

    def raw_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The event's row as JSON: a download, or inline with ``?inline=1`` (for copying)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        event_id = unquote(object_id)
        try:
            check_id(event_id, "id")
        except ValidationError:
            raise Http404("No such event.") from None
        event = models.Event.objects.filter(pk=event_id).first()
        if event is None:
            raise Http404("No such event.")
        body = json.dumps(raw_event(event), ensure_ascii=False, indent=2)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
        if not request.GET.get("inline"):
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in event_id)
            response["Content-Disposition"] = f'attachment; filename="{name}.json"'
        return response

    @admin.display(description="session")
    def session(self, obj: models.Event) -> str:
        return session_link(obj.session_id)

    @admin.display(description="run")
    def run(self, obj: models.Event) -> str:
        return run_link(obj.run_id)

    @admin.display(description="raw JSON")
    def raw_json(self, obj: models.Event) -> str:
        url = admin_view_url(models.Event, "raw", obj.id)
        return format_html(
            '<a href="{}" class="button asm-download" download>Download raw JSON</a> '
            '<button type="button" class="button asm-copy" data-copy-url="{}?inline=1">'
            'Copy raw JSON</button> <span class="asm-copy-status" aria-live="polite"></span>',
            url,
            url,
        )

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
        conversation = admin_view_url(models.Session, "conversation", obj.session_id)
        return format_html(
            '<a href="{}?at={}">This event in its conversation</a> · '
            '<a href="{}?before_seq={}">This event in its session timeline</a> · '
            '<a href="{}">All events of this session</a>',
            conversation,
            obj.sequence_number,
            around,
            obj.sequence_number + 1,
            events,
        )
