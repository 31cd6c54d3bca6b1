"""The run admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.http import HttpRequest
from django.utils.html import format_html

from agent_sessions import models
from agent_sessions.admin.display import (
    admin_view_url,
    changelist_url,
    compact_time,
    format_cost,
    json_display,
    session_link,
    stored_value,
    token_summary,
)
from agent_sessions.admin.filters import ProviderFilter, RunStatusFilter
from agent_sessions.admin.options import BigTableAdmin
from agent_sessions.pricing import run_cost_usd


@admin.register(models.Run)
class RunAdmin(BigTableAdmin):
    """Runs: status, provider, tokens and cost; read-only unless ADMIN_ALLOW_EDIT."""

    list_display = (
        "id",
        "session",
        "status_value",
        "provider",
        "tokens",
        "cost",
        "started",
        "ended",
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
    sortable_by = ("started",)
    ordering = ("-started_at",)
    search_fields = ("id",)
    search_help_text = "Exact run id or session id."
    exact_search_fields = ("id", "session_id")
    url_lookups = ("session_id",)
    json_fields = ("input", "output", "error", "metadata", "token_usage", "provider_metadata")
    editable_fields = ("status", "provider", "cost_usd", "metadata", "provider_metadata")
    extra_detail_fields = ("cost", "events")
    linked_fields = {"session_id": "session"}

    status_value = stored_value("status")
    input_json = json_display("input")
    output_json = json_display("output")
    error_json = json_display("error")
    metadata_json = json_display("metadata")
    token_usage_json = json_display("token_usage")
    provider_metadata_json = json_display("provider_metadata")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The model name prices runs without a stored cost; only it is read
        # from provider_metadata, in SQL.
        queryset: QuerySet[Any] = super().get_queryset(request)
        annotated: QuerySet[Any] = queryset.annotate(
            asm_model=KeyTextTransform("model", "provider_metadata")
        )
        return annotated

    @admin.display(description="cost (USD)")
    def cost(self, obj: models.Run) -> str:
        """The stored cost, else the pricing table's (as the session stats count it)."""
        model = getattr(obj, "asm_model", None)
        cost = run_cost_usd(
            stored_cost=obj.cost_usd,
            provider=obj.provider,
            model=None if model is None else str(model),
            token_usage=obj.token_usage,
        )
        if cost is not None and obj.cost_usd is None:
            return format_html('{} <span class="asm-quiet">(priced)</span>', format_cost(cost))
        return format_cost(cost)

    @admin.display(description="started (UTC)", ordering="started_at")
    def started(self, obj: models.Run) -> str:
        return compact_time(obj.started_at)

    @admin.display(description="ended (UTC)")
    def ended(self, obj: models.Run) -> str:
        return compact_time(obj.ended_at)

    @admin.display(description="session")
    def session(self, obj: models.Run) -> str:
        return session_link(obj.session_id)

    @admin.display(description="tokens")
    def tokens(self, obj: models.Run) -> str:
        return token_summary(obj.token_usage)

    @admin.display(description="events")
    def events(self, obj: models.Run) -> str:
        url = changelist_url(models.Event, session_id=obj.session_id, run_id=obj.id)
        conversation = admin_view_url(models.Session, "conversation", obj.session_id)
        return format_html(
            '<a href="{}?run={}">Conversation of this run</a> · '
            '<a href="{}">Events of this run</a>',
            conversation,
            obj.id,
            url,
        )
