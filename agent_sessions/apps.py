from __future__ import annotations

from django.apps import AppConfig


class AgentSessionsConfig(AppConfig):
    """App config: registers the system checks, names the event signals' sender, and drops
    cached settings when they change."""

    name = "agent_sessions"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from agent_sessions import (
            checks,  # noqa: F401  (registers the checks)
            pipeline,
            redaction,
            signals,
        )
        from agent_sessions.store import DjangoSessionStore

        # The signals module sits below the store it names as sender.
        signals.set_event_sender(DjangoSessionStore)

        # The pipeline's settings and the compiled REDACTION patterns are
        # cached per settings value.
        setting_changed.connect(
            redaction.clear_cache, dispatch_uid="agent_sessions.redaction.clear_cache"
        )
        setting_changed.connect(
            pipeline.clear_cache, dispatch_uid="agent_sessions.pipeline.clear_cache"
        )
