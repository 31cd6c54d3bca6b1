"""A read-only, big-table-safe Django admin for agent history.

Adding ``agent_sessions`` to ``INSTALLED_APPS`` registers admins for sessions,
runs, events and artifacts. They are built to stay fast at millions of events
(the habits of django-auditlog and django-pghistory):

* no full-table ``COUNT(*)``: :class:`~agent_sessions.admin_paginator.EstimatedCountPaginator`,
  ``show_full_result_count = False``, facets off;
* list filters take their choices from the vocabulary (no ``DISTINCT``);
* changelists load only their columns (large JSON columns are deferred);
* search is exact equality on indexed id columns, never ``icontains``;
* the session page shows bounded lists (latest runs, a 50-event timeline
  paged by sequence number), never an unbounded inline;
* sorting is offered only on indexed columns.

Nothing here can change the event log: events are read-only for everyone
(deletion only for superusers when ``AGENT_SESSIONS["ADMIN_ALLOW_EVENT_DELETE"]``
is True), and sessions, runs and artifacts are read-only unless
``AGENT_SESSIONS["ADMIN_ALLOW_EDIT"]`` is True (ids, sequence numbers and
timestamps stay read-only even then). Sessions are soft-deleted and restored
through actions, and exported as JSON in the shape of
:meth:`DjangoQueryAPI.export_session <agent_sessions.query.DjangoQueryAPI.export_session>`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from agent_sessions import models
from agent_sessions.admin_filters import (
    ArtifactDeletedListFilter,
    EventTypeFilter,
    ProviderFilter,
    RunStatusFilter,
    SessionStatusFilter,
    SoftDeletedListFilter,
)
from agent_sessions.admin_paginator import EstimatedCountPaginator
from agent_sessions.conf import app_settings
from agent_sessions.errors import AgentSessionsError, ValidationError
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.validation import check_id, check_varchar, utcnow

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


# --------------------------------------------------------------------------- display helpers


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON in a ``<pre>`` block, HTML-escaped."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="asm-json">{}</pre>', text)


def json_preview(value: Any, length: int = 120) -> str:
    """A one-line JSON rendering of ``value``, cut to ``length`` characters."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= length else text[: length - 1] + "…"


def utc_timestamp(value: dt.datetime | None) -> str:
    """``value`` in UTC to the microsecond (event order is finer than minutes)."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).isoformat(" ", timespec="microseconds").replace("+00:00", "")


def _json_display(field_name: str) -> Callable[[Any, Model], SafeString]:
    """A read-only admin field showing the JSON column ``field_name`` pretty-printed."""

    @admin.display(description=field_name.replace("_", " "))
    def display(model_admin: Any, obj: Model) -> SafeString:
        return pretty_json(getattr(obj, field_name))

    return display


def admin_url(model: type[Model], object_id: str) -> str:
    """The admin page of ``model``'s row ``object_id`` (which need not exist)."""
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[quote(object_id)])


def changelist_url(model: type[Model], **params: Any) -> str:
    """The admin changelist of ``model`` filtered by exact ``params``."""
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def session_link(session_id: str | None) -> str:
    """A link to a session's page, or ``-`` when there is no id."""
    if not session_id:
        return "-"
    return format_html('<a href="{}">{}</a>', admin_url(models.Session, session_id), session_id)


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


# --------------------------------------------------------------------------- base admin


class BoundedChangeList(ChangeList):
    """A changelist that loads only the columns its model admin lists."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        columns = getattr(self.model_admin, "list_columns", ())
        return queryset.only(*columns) if columns else queryset

    def get_ordering_field(self, field_name: Any) -> Any:
        # Django honours ?o=N for any listed column; sorting 10^6 events by an
        # unindexed one takes seconds, so only sortable_by columns may sort.
        sortable = self.sortable_by
        if sortable is not None and field_name not in sortable:
            return None
        return super().get_ordering_field(field_name)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if not getattr(self.paginator, "is_exact", True):
            # An estimate is not a result count: the search bar would print it
            # as "1001 results"; the pagination line says "about"/"more than".
            self.full_result_count = self.result_count


class BigTableAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Changelist and detail behaviour shared by the four agent_sessions admins.

    Attributes:
        list_columns: The columns a changelist loads (``QuerySet.only``);
            everything else, notably large JSON, stays in the database.
        exact_search_fields: Indexed columns that a search term must equal.
        url_lookups: Query-string lookups accepted besides the list filters
            (links such as ``?session_id=...``).
        json_fields: JSON columns shown pretty-printed on the detail page.
        editable_fields: Columns editable when ``ADMIN_ALLOW_EDIT`` is True.
        extra_detail_fields: Read-only extras after the columns (links, checks).
    """

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    list_max_show_all = 200
    list_columns: Sequence[str] = ()
    exact_search_fields: Sequence[str] = ()
    url_lookups: Sequence[str] = ()
    json_fields: Sequence[str] = ()
    editable_fields: Sequence[str] = ()
    extra_detail_fields: Sequence[str] = ()
    search_help_text = "Exact id."

    # ----- permissions

    def allows_edit(self) -> bool:
        """True when the settings allow editing rows of this model."""
        return app_settings.ADMIN_ALLOW_EDIT and bool(self.editable_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Rows are written by agents through the store, which assigns ids and
        # sequence numbers; the admin never creates them.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.allows_edit() and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # ----- changelist

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return BoundedChangeList

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        for key, values in request.GET.lists():
            # PostgreSQL refuses NUL in text; reject it here instead of as a 500.
            if "\x00" in key or any("\x00" in value for value in values):
                raise IncorrectLookupParameters(f"invalid value for {key!r}")
        return super().get_changelist_instance(request)

    def lookup_allowed(self, lookup: str, value: Any, request: HttpRequest | None = None) -> bool:
        # Only cheap, indexed lookups; anything else is refused with a 400.
        specs = self.get_list_filter(request) if request is not None else self.list_filter
        filter_params = {getattr(spec, "parameter_name", None) for spec in specs}
        return lookup in self.url_lookups or lookup in filter_params

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            term = check_varchar(term, "search", required=True)
        except ValidationError:
            return queryset.none(), False
        return queryset.filter(self.search_condition(term)), False

    def search_condition(self, term: str) -> Any:
        """The ``Q`` a search term must satisfy: equality on an indexed column."""
        condition = Q()
        for name in self.exact_search_fields:
            condition |= Q(**{name: term})
        return condition

    # ----- detail page

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        try:
            check_id(object_id, "id")
        except ValidationError:
            # Not an id the table can hold: the admin reports "does not exist".
            return None
        return super().get_object(request, object_id, from_field)

    def detail_fields(self) -> list[str]:
        """The model's columns in table order."""
        return [field.name for field in self.model._meta.concrete_fields]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        editable = self.allows_edit()
        fields = []
        for name in self.detail_fields():
            if name in self.json_fields and not (editable and name in self.editable_fields):
                fields.append(f"{name}_json")
            else:
                fields.append(name)
        return fields + list(self.extra_detail_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = self.get_fields(request, obj)
        if not self.allows_edit():
            return fields
        return [name for name in fields if name not in self.editable_fields]


# --------------------------------------------------------------------------- sessions


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
    """``queryset.update(**values)`` in keyset batches, one short transaction each."""
    model = queryset.model
    ids = queryset.order_by("pk").values_list("pk", flat=True)
    changed = 0
    last: str | None = None
    while True:
        page = ids.filter(pk__gt=last) if last is not None else ids
        batch = list(page[:ACTION_BATCH_SIZE])
        if not batch:
            return changed
        rows = model._default_manager.using(queryset.db).filter(pk__in=batch)
        with transaction.atomic(using=queryset.db):
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

    metadata_json = _json_display("metadata")
    context_json = _json_display("context")

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


# --------------------------------------------------------------------------- runs


@admin.register(models.Run)
class RunAdmin(BigTableAdmin):
    """Runs: status, provider, tokens and cost; read-only unless ADMIN_ALLOW_EDIT."""

    list_display = (
        "id",
        "session",
        "status",
        "provider",
        "tokens",
        "cost_usd",
        "started_at",
        "ended_at",
    )
    list_columns = (
        "id",
        "session_id",
        "status",
        "provider",
        "token_usage",
        "cost_usd",
        "started_at",
        "ended_at",
    )
    list_filter = (RunStatusFilter, ProviderFilter)
    sortable_by = ("started_at",)
    ordering = ("-started_at",)
    search_fields = ("id",)
    search_help_text = "Exact run id or session id."
    exact_search_fields = ("id", "session_id")
    url_lookups = ("session_id",)
    json_fields = ("input", "output", "error", "metadata", "token_usage", "provider_metadata")
    editable_fields = ("status", "provider", "cost_usd", "metadata", "provider_metadata")
    extra_detail_fields = ("events",)

    input_json = _json_display("input")
    output_json = _json_display("output")
    error_json = _json_display("error")
    metadata_json = _json_display("metadata")
    token_usage_json = _json_display("token_usage")
    provider_metadata_json = _json_display("provider_metadata")

    @admin.display(description="session")
    def session(self, obj: models.Run) -> str:
        return session_link(obj.session_id)

    @admin.display(description="tokens")
    def tokens(self, obj: models.Run) -> str:
        return token_summary(obj.token_usage)

    @admin.display(description="events")
    def events(self, obj: models.Run) -> str:
        url = changelist_url(models.Event, session_id=obj.session_id, run_id=obj.id)
        return format_html('<a href="{}">Events of this run</a>', url)


# --------------------------------------------------------------------------- events


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

    data_json = _json_display("data")
    metadata_json = _json_display("metadata")

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


# --------------------------------------------------------------------------- artifacts


@admin.register(models.Artifact)
class ArtifactAdmin(BigTableAdmin):
    """Registered artifacts: key, size and storage; read-only unless ADMIN_ALLOW_EDIT."""

    list_display = (
        "key",
        "session",
        "content_type",
        "byte_size",
        "storage_backend",
        "created_at",
        "deleted_at",
    )
    list_columns = (
        "id",
        "key",
        "session_id",
        "content_type",
        "byte_size",
        "storage_backend",
        "created_at",
        "deleted_at",
    )
    list_filter = (ArtifactDeletedListFilter,)
    sortable_by = ("created_at",)
    ordering = ("-created_at",)
    search_fields = ("id",)
    search_help_text = "Exact key, artifact id or session id."
    exact_search_fields = ("key", "id", "session_id")
    url_lookups = ("session_id",)
    json_fields = ("metadata",)
    editable_fields = ("content_type", "metadata")

    metadata_json = _json_display("metadata")

    @admin.display(description="session")
    def session(self, obj: models.Artifact) -> str:
        return session_link(obj.session_id)
