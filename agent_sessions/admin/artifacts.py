"""The artifact admin."""

from __future__ import annotations

from django.contrib import admin

from agent_sessions import models
from agent_sessions.admin.display import json_display, run_link, session_link
from agent_sessions.admin.filters import ArtifactDeletedListFilter
from agent_sessions.admin.options import BigTableAdmin


@admin.register(models.Artifact)
class ArtifactAdmin(BigTableAdmin):
    """Registered artifacts: key, size and storage; read-only unless ADMIN_ALLOW_EDIT."""

    list_display = (
        "key",
        "session",
        "run",
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
        "run_id",
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
    linked_fields = {"session_id": "session", "run_id": "run"}

    metadata_json = json_display("metadata")

    @admin.display(description="session")
    def session(self, obj: models.Artifact) -> str:
        return session_link(obj.session_id)

    @admin.display(description="run")
    def run(self, obj: models.Artifact) -> str:
        return run_link(obj.run_id)
