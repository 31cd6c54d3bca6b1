from __future__ import annotations

from django.apps import AppConfig


class AgentSessionsConfig(AppConfig):
    """App config: registers the system checks of :mod:`agent_sessions.checks`."""

    name = "agent_sessions"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agent_sessions import checks  # noqa: F401  (registers the checks)
