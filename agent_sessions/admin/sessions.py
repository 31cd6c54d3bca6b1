"""The session admin: list, actions and the bounded session page."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse

from agent_sessions import models
from agent_sessions.admin.display import (
    admin_url,
    changelist_url,
    json_display,
    json_preview,
    token_summary,
    utc_timestamp,
)
from agent_sessions.admin.filters import SessionStatusFilter, SoftDeletedListFilter
from agent_sessions.admin.options import BigTableAdmin
from agent_sessions.db import db_for_write
from agent_sessions.errors import AgentSessionsError
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.validation import utcnow

#: Events shown per page of a session's timeline.
TIMELINE_SIZE = 50
#: Runs shown on a session page (the run changelist has the rest).
SESSION_PAGE_RUNS = 50
#: Most sessions one export action may write (each carries all its events).
EXPORT_MAX_SESSIONS = 100
#: Rows changed per transaction by the soft-delete and restore actions.
ACTION_BATCH_SIZE = 500
#: Sequence numbers are PostgreSQL ``integer``s.
MAX_SEQUENCE = 2**31 - 1


def _export_session(session_id: str) -> dict[str, Any]:
    """One session's :meth:`DjangoQueryAPI.export_session`, serialised with ``to_dict``.

    Raises:
        NotFoundError: the session does not exist.
    """
    export = DjangoQueryAPI().export_session(session_id)
    result: dict[str, Any] = {
        "session": export["session"].to_dict(),
        "runs": [run.to_dict() for run in export["runs"]],
        "events": [event.to_dict() for event in export["events"]],
    }
    if "artifacts" in export:
        result["artifacts"] = export["artifacts"]
    return result


def _update_in_batches(queryset: QuerySet[Any], **values: Any) -> int:
    """``queryset.update(**values)`` in keyset batches, one short transaction each.

    On the write database, ids included: an action's queryset reads from the
    routers' read database, which may be a read-only, lagging replica (where
    the update fails and the ids miss rows written since). An explicit
    ``using()`` on the admin's queryset is kept.
    """
    model = queryset.model
    # QuerySet._db: the alias of an explicit using(), None when routed.
    alias = db_for_write(getattr(queryset, "_db", None), model)
    ids = queryset.using(alias).order_by("pk").values_list("pk", flat=True)
    changed = 0
    last: str | None = None
    while True:
        page = ids.filter(pk__gt=last) if last is not None else ids
        batch = list(page[:ACTION_BATCH_SIZE])
        if not batch:
            return changed
        rows = model._default_manager.using(alias).filter(pk__in=batch)
        with transaction.atomic(using=alias):
            changed += rows.update(**values)
        last = batch[-1]


@admin.register(models.Session)
class SessionAdmin(BigTableAdmin):
    """Sessions: a bounded, read-only page per session with its runs, timeline and stats."""

    list_display = (
        "id",
        "agent_id",
        "status",
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

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The soft-delete and restore actions need the change permission even
        # when the fields themselves are read-only (changeform_view guards saves).
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def search_condition(self, term: str) -> Any:
        # Tags have no index in ASM's schema: this part reads asm_sessions (not events).
        return super().search_condition(term) | Q(tags__has_all=[term])

    @admin.display(description="tags")
    def tag_list(self, obj: models.Session) -> str:
        return ", ".join(obj.tags or []) or "-"

    @admin.display(description="deleted", boolean=True)
    def is_deleted(self, obj: models.Session) -> bool:
        return obj.deleted_at is not None

    # ----- actions

    @admin.action(permissions=["change"], description="Soft-delete selected sessions")
    def soft_delete_sessions(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        changed = _update_in_batches(queryset.filter(deleted_at__isnull=True), deleted_at=utcnow())
        self.message_user(request, f"Soft-deleted {changed} session(s).", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Restore selected soft-deleted sessions")
    def restore_sessions(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        changed = _update_in_batches(queryset.filter(deleted_at__isnull=False), deleted_at=None)
        self.message_user(request, f"Restored {changed} session(s).", messages.SUCCESS)

    @admin.action(permissions=["view"], description="Export selected sessions as JSON")
    def export_sessions_json(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[: EXPORT_MAX_SESSIONS + 1])
        if len(ids) > EXPORT_MAX_SESSIONS:
            self.message_user(
                request,
                f"Select at most {EXPORT_MAX_SESSIONS} sessions to export at once.",
                messages.ERROR,
            )
            return None
        try:
            exports = [_export_session(session_id) for session_id in ids]
        except AgentSessionsError as exc:
            self.message_user(request, f"Export failed: {exc.message}", messages.ERROR)
            return None
        body = json.dumps(exports, indent=2, ensure_ascii=False)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="agent-sessions-{stamp}.json"'
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
            context.update(session_page_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)


def _before_seq(request: HttpRequest) -> int | None:
    """The ``before_seq`` timeline parameter, or None when absent or unusable."""
    raw = request.GET.get("before_seq", "")
    if not raw.isdigit() or len(raw) > 10:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_SEQUENCE + 1 else None


def session_page_context(request: HttpRequest, session: models.Session) -> dict[str, Any]:
    """The bounded extras of a session page: runs, a timeline page, stats and links."""
    before = _before_seq(request)
    events = models.Event.objects.filter(session_id=session.id)
    if before is not None:
        events = events.filter(sequence_number__lt=before)
    timeline = list(
        events.order_by("-sequence_number").only(
            "id", "type", "timestamp", "sequence_number", "run_id", "provider", "data"
        )[: TIMELINE_SIZE + 1]
    )
    has_older = len(timeline) > TIMELINE_SIZE
    timeline = timeline[:TIMELINE_SIZE]
    runs = list(
        models.Run.objects.filter(session_id=session.id)
        .order_by("-started_at", "-id")
        .only(
            "id",
            "status",
            "provider",
            "token_usage",
            "cost_usd",
            "started_at",
            "ended_at",
            "session_id",
        )[: SESSION_PAGE_RUNS + 1]
    )
    return {
        "asm_timeline": [
            {
                "event": event,
                "url": admin_url(models.Event, event.id),
                "time": utc_timestamp(event.timestamp),
                "preview": json_preview(event.data),
            }
            for event in timeline
        ],
        "asm_timeline_before": before,
        "asm_timeline_older_url": (
            f"?before_seq={timeline[-1].sequence_number}" if has_older and timeline else None
        ),
        "asm_timeline_size": TIMELINE_SIZE,
        "asm_runs": [
            {
                "run": run,
                "url": admin_url(models.Run, run.id),
                "tokens": token_summary(run.token_usage),
            }
            for run in runs[:SESSION_PAGE_RUNS]
        ],
        "asm_runs_truncated": len(runs) > SESSION_PAGE_RUNS,
        "asm_events_url": changelist_url(models.Event, session_id=session.id),
        "asm_runs_url": changelist_url(models.Run, session_id=session.id),
        "asm_artifacts_url": changelist_url(models.Artifact, session_id=session.id),
        **session_stats_context(session.id),
    }


def session_stats_context(session_id: str) -> dict[str, Any]:
    """Stats and cost of a session from the QueryAPI, or the reason they are missing."""
    api = DjangoQueryAPI()
    try:
        return {
            "asm_stats": api.get_session_stats(session_id),
            "asm_cost": api.get_cost_summary(session_id=session_id),
        }
    except AgentSessionsError as exc:
        return {"asm_stats_error": exc.message}
