from __future__ import annotations

from django.apps import AppConfig


class AgentSessionsConfig(AppConfig):
    """App config: registers the system checks, and drops cached settings when they change."""

    name = "agent_sessions"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from agent_sessions import checks  # noqa: F401  (registers the checks)
        from agent_sessions.redaction import clear_cache

        # The compiled REDACTION patterns are cached per settings value.
        setting_changed.connect(clear_cache, dispatch_uid="agent_sessions.redaction.clear_cache")
