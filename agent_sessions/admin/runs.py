"""The run admin."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from agent_sessions import models
from agent_sessions.admin.display import changelist_url, json_display, session_link, token_summary
from agent_sessions.admin.filters import ProviderFilter, RunStatusFilter
from agent_sessions.admin.options import BigTableAdmin


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

    input_json = json_display("input")
    output_json = json_display("output")
    error_json = json_display("error")
    metadata_json = json_display("metadata")
    token_usage_json = json_display("token_usage")
    provider_metadata_json = json_display("provider_metadata")

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
