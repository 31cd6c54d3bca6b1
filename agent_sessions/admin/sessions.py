"""The session admin: list, actions, the bounded session page and the conversation view."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse

from agent_sessions import models
from agent_sessions.admin import actions
from agent_sessions.admin.conversation import (
    TYPE_GROUPS,
    ConversationQuery,
    conversation_page,
    fragment_page,
    parse_sequence,
    run_summaries,
)
from agent_sessions.admin.display import (
    admin_url,
    admin_view_url,
    changelist_url,
    format_cost,
    json_display,
    stored_value,
    token_summary,
    utc_timestamp,
)
from agent_sessions.admin.export import aexport_lines, export_lines
from agent_sessions.admin.filters import SessionStatusFilter, SoftDeletedListFilter
from agent_sessions.admin.options import BigTableAdmin
from agent_sessions.admin.previews import (
    LINE_PREVIEW_CHARS,
    is_unread,
    parse_prefix,
    size_label,
    with_data_prefix,
)
from agent_sessions.admin.transcript import blocks_for, summary_line
from agent_sessions.core import EventType
from agent_sessions.errors import AgentSessionsError, ValidationError
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.validation import check_id

#: Events shown per page of a session's timeline.
TIMELINE_SIZE = 50
#: Runs shown on a session page (the run changelist has the rest).
SESSION_PAGE_RUNS = 50
#: Most sessions one export action may stream.
EXPORT_MAX_SESSIONS = 100
#: The live stream of :mod:`agent_sessions.urls`, when the project includes it.
STREAM_URL_NAME = "agent_sessions:event-stream"


def stream_url(session_id: str) -> str | None:
    """The live event stream of a session, or None when ``agent_sessions.urls`` is not included."""
    try:
        return reverse(STREAM_URL_NAME, args=[session_id])
    except NoReverseMatch:
        return None


@admin.register(models.Session)
class SessionAdmin(BigTableAdmin):
    """Sessions: a bounded, read-only page per session with its runs, timeline and stats."""

    list_display = (
        "id",
        "agent_id",
        "status_value",
        "tag_list",
        "created_at",
        "updated_at",
        "is_deleted",
    )
    list_columns = (
        "id",
        "agent_id",
        "status",
        "tags",
        "created_at",
        "updated_at",
        "deleted_at",
    )
    list_filter = (SessionStatusFilter, SoftDeletedListFilter)
    sortable_by = ("created_at",)
    ordering = ("-created_at",)
    search_fields = ("id",)
    search_help_text = "Exact session id, agent id or tag."
    exact_search_fields = ("id", "agent_id")
    url_lookups = ("id", "agent_id")
    json_fields = ("metadata", "context")
    editable_fields = ("agent_id", "status", "parent_session_id", "metadata", "context")
    actions = ("soft_delete_sessions", "restore_sessions", "export_sessions_json")
    change_form_template = "admin/agent_sessions/session/change_form.html"

    metadata_json = json_display("metadata")
    context_json = json_display("context")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Framework state rows (the ADK adapter's app:/user: state) are not sessions.
        return models.conversations(super().get_queryset(request))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The soft-delete and restore actions need the change permission even
        # when the fields themselves are read-only (changeform_view guards saves).
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def search_condition(self, term: str) -> Any:
        # Tags have no index in ASM's schema: this part reads asm_sessions (not events).
        return super().search_condition(term) | Q(tags__has_all=[term])

    status_value = stored_value("status")

    @admin.display(description="tags")
    def tag_list(self, obj: models.Session) -> str:
        return ", ".join(obj.tags or []) or "-"

    @admin.display(description="deleted", boolean=True)
    def is_deleted(self, obj: models.Session) -> bool:
        return obj.deleted_at is not None

    # ----- actions

    def has_export_permission(self, request: HttpRequest) -> bool:
        """Exports carry runs and events: the user must be allowed to view all three."""
        return (
            self.has_view_permission(request)
            and self.can_view(request, models.Run)
            and self.can_view(request, models.Event)
        )

    def _change_sessions(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        change: Callable[[HttpRequest, QuerySet[Any]], int],
        label: str,
        done: str,
    ) -> None:
        # A database failure is a message on the list, never a server error.
        try:
            changed = change(request, queryset)
        except AgentSessionsError as exc:
            self.message_user(request, f"{label} failed: {exc.message}", messages.ERROR)
            return
        self.message_user(request, f"{done} {changed} session(s).", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Soft-delete selected sessions")
    def soft_delete_sessions(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._change_sessions(
            request, queryset, actions.soft_delete_sessions, "Soft-delete", "Soft-deleted"
        )

    @admin.action(permissions=["change"], description="Restore selected soft-deleted sessions")
    def restore_sessions(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._change_sessions(request, queryset, actions.restore_sessions, "Restore", "Restored")

    @admin.action(permissions=["export"], description="Export selected sessions (JSON Lines)")
    def export_sessions_json(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | StreamingHttpResponse | None:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[: EXPORT_MAX_SESSIONS + 1])
        if len(ids) > EXPORT_MAX_SESSIONS:
            self.message_user(
                request,
                f"Select at most {EXPORT_MAX_SESSIONS} sessions to export at once.",
                messages.ERROR,
            )
            return None
        # Over ASGI only an asynchronous iterator streams (Django buffers a sync one).
        lines = aexport_lines(ids) if isinstance(request, ASGIRequest) else export_lines(ids)
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson; charset=utf-8")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="agent-sessions-{stamp}.jsonl"'
        return response

    # ----- session page

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST" and not self.allows_edit():
            raise PermissionDenied
        context = dict(extra_context or {})
        if not self.allows_edit():
            context.update(
                title=f"View {self.opts.verbose_name}",
                show_save=False,
                show_save_and_continue=False,
                show_save_and_add_another=False,
            )
        return super().changeform_view(request, object_id, form_url, context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        if not self.allows_edit():
            context.setdefault("title", f"Select {self.opts.verbose_name} to view")
        return super().changelist_view(request, context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(
                session_page_context(
                    request,
                    obj,
                    show_runs=self.can_view(request, models.Run),
                    show_events=self.can_view(request, models.Event),
                )
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # ----- conversation view

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/conversation/",
                self.admin_site.admin_view(self.conversation_view),
                name="{}_{}_conversation".format(*info),
            ),
            *super().get_urls(),
        ]

    def conversation_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A session's events as a transcript (``?run=`` for one run), paged by sequence.

        Needs the view permission on sessions and on events; run tokens and
        costs are shown to users who may also view runs. ``?fragment=1&after=N``
        answers the live tail: the entries after N as HTML, in JSON.
        """
        if not self.has_view_permission(request) or not self.can_view(request, models.Event):
            raise PermissionDenied
        session_id = unquote(object_id)
        try:
            check_id(session_id, "session_id")
        except ValidationError:
            raise Http404("No such session.") from None
        query = ConversationQuery.from_request(request.GET)
        show_runs = self.can_view(request, models.Run)
        if request.GET.get("fragment"):
            return self._conversation_fragment(request, session_id, query, show_runs)
        session = (
            models.Session.objects.filter(pk=session_id)
            .only("id", "agent_id", "status", "deleted_at")
            .first()
        )
        runs = run_summaries(session_id) if show_runs else {}
        page = conversation_page(
            session_id,
            query,
            event_url=lambda event_id: admin_url(models.Event, event_id),
            raw_url=event_raw_url,
            runs=runs,
        )
        if session is None and not page["entries"] and query == ConversationQuery():
            raise Http404("No such session.")
        if show_runs:
            missing = {e.event.run_id for e in page["entries"] if e.event.run_id} - set(runs)
            if missing:
                runs.update(run_summaries(session_id, sorted(missing), limit=0))
                for entry in page["entries"]:
                    entry.run = runs.get(entry.event.run_id or "")
        live = stream_url(session_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Conversation of {session_id}",
            "subtitle": None,
            "session": session,
            "session_id": session_id,
            "session_url": admin_url(models.Session, session_id) if session else None,
            "query": query,
            "page": page,
            "show_runs": show_runs,
            "runs": list(runs.values()),
            "run": runs.get(query.run_id or ""),
            "groups": list(TYPE_GROUPS),
            "event_types_json": json.dumps([t.value for t in EventType]),
            "stream_url": live,
            "live": live is not None and not page["has_newer"],
            "fragment_url": request.path + query.url(fragment=1),
            "events_url": changelist_url(models.Event, session_id=session_id),
        }
        return TemplateResponse(request, "admin/agent_sessions/session/conversation.html", context)

    def _conversation_fragment(
        self, request: HttpRequest, session_id: str, query: ConversationQuery, show_runs: bool
    ) -> JsonResponse:
        after = parse_sequence(request.GET.get("after"), minimum=0) or 0
        entries, last = fragment_page(
            session_id,
            query,
            event_url=lambda event_id: admin_url(models.Event, event_id),
            raw_url=event_raw_url,
            runs=run_summaries(session_id) if show_runs else {},
            after=after,
        )
        html = render_to_string(
            "admin/agent_sessions/session/_entries.html",
            {"entries": entries, "show_runs": show_runs},
            request=request,
        )
        return JsonResponse({"html": html, "last": last, "count": len(entries)})


def event_raw_url(event_id: str) -> str:
    """The raw-JSON download of an event."""
    return admin_view_url(models.Event, "raw", event_id)


def session_page_context(
    request: HttpRequest,
    session: models.Session,
    *,
    show_runs: bool = True,
    show_events: bool = True,
) -> dict[str, Any]:
    """The bounded extras of a session page: runs, a timeline page, stats and links.

    Args:
        request: The request (``?before_seq=`` pages the timeline).
        session: The session row.
        show_runs: The user may view runs (else no runs, tokens or costs).
        show_events: The user may view events (else no timeline).
    """
    context: dict[str, Any] = {
        "asm_show_runs": show_runs,
        "asm_show_events": show_events,
        "asm_artifacts_url": changelist_url(models.Artifact, session_id=session.id),
    }
    if show_events:
        context.update(_timeline_context(request, session.id, show_runs=show_runs))
    if show_runs:
        runs = run_summaries(session.id, limit=SESSION_PAGE_RUNS + 1, newest_first=True)
        latest = list(runs.values())
        context.update(
            asm_runs=[
                {
                    "run": run,
                    "url": admin_url(models.Run, run["id"]),
                    "tokens": token_summary(run["token_usage"]),
                    "cost": format_cost(run["cost"]),
                    "conversation_url": conversation_url(session.id, run=run["id"]),
                }
                for run in latest[:SESSION_PAGE_RUNS]
            ],
            asm_runs_truncated=len(runs) > SESSION_PAGE_RUNS,
            asm_runs_url=changelist_url(models.Run, session_id=session.id),
        )
    context.update(session_stats_context(session.id, show_runs=show_runs, show_events=show_events))
    return context


def conversation_url(session_id: str, **params: str) -> str:
    """The conversation view of a session (``run=`` for one run)."""
    url = admin_view_url(models.Session, "conversation", session_id)
    return url + ConversationQuery(run_id=params.get("run")).url() if params else url


def _timeline_context(request: HttpRequest, session_id: str, *, show_runs: bool) -> dict[str, Any]:
    before = parse_sequence(request.GET.get("before_seq"), minimum=1)
    events = models.Event.objects.filter(session_id=session_id)
    if before is not None:
        events = events.filter(sequence_number__lt=before)
    timeline = list(
        with_data_prefix(
            events.order_by("-sequence_number").only(
                "id", "type", "timestamp", "sequence_number", "run_id", "provider"
            ),
            LINE_PREVIEW_CHARS,
        )[: TIMELINE_SIZE + 1]
    )
    has_older = len(timeline) > TIMELINE_SIZE
    timeline = timeline[:TIMELINE_SIZE]
    items = []
    for event in timeline:
        data, _cut = parse_prefix(getattr(event, "data_prefix", None))
        preview = summary_line(blocks_for(event.type, data))
        if is_unread(event):
            preview = (
                f"(payload of {size_label(getattr(event, 'data_size', None))}: open the event)"
            )
        items.append(
            {
                "event": event,
                "url": admin_url(models.Event, event.id),
                "run_url": admin_url(models.Run, event.run_id)
                if show_runs and event.run_id
                else None,
                "time": utc_timestamp(event.timestamp),
                "preview": preview,
            }
        )
    return {
        "asm_timeline": items,
        "asm_timeline_before": before,
        "asm_timeline_older_url": (
            f"?before_seq={timeline[-1].sequence_number}" if has_older and timeline else None
        ),
        "asm_timeline_size": TIMELINE_SIZE,
        "asm_events_url": changelist_url(models.Event, session_id=session_id),
        "asm_conversation_url": conversation_url(session_id),
    }


def session_stats_context(
    session_id: str, *, show_runs: bool = True, show_events: bool = True
) -> dict[str, Any]:
    """Stats and cost of a session from the QueryAPI, or the reason they are missing.

    Event figures need ``show_events``; token, cost, provider and run-status
    figures need ``show_runs`` (they are read from runs).
    """
    api = DjangoQueryAPI()
    try:
        stats = api.get_session_stats(session_id)
        cost = api.get_cost_summary(session_id=session_id) if show_runs else None
    except AgentSessionsError as exc:
        return {"asm_stats_error": exc.message}
    if not show_events:
        stats = {**stats, "event_count": None, "first_event_at": None, "last_event_at": None}
    return {"asm_stats": stats, "asm_cost": cost}
