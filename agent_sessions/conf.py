"""Typed, lazily read access to ``settings.AGENT_SESSIONS``.

All defaults live here. Settings are read on every access, so
``override_settings`` in tests and per-process configuration both work::

    from agent_sessions.conf import app_settings
    app_settings.QUERY_MAX_LIMIT
"""

from __future__ import annotations

from math import inf
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTING_NAME = "AGENT_SESSIONS"

#: Every key ``AGENT_SESSIONS`` may hold, with its default.
DEFAULTS: dict[str, Any] = {
    "RETENTION": {},
    "QUERY_DEFAULT_LIMIT": 50,
    "QUERY_EVENT_DEFAULT_LIMIT": 100,
    "QUERY_MAX_LIMIT": 1000,
    "PRICING_TABLE": None,
    "ADMIN_ALLOW_EVENT_DELETE": False,
    "ADMIN_ALLOW_EDIT": False,
    # HTTP API and live stream (agent_sessions.urls, CONTRACT §13).
    "API_PERMISSION": "agent_sessions.api.default_permission",
    "API_LONG_POLL_MAX_MS": 30_000,
    "STREAM_HEARTBEAT_SECONDS": 15,
    "STREAM_MAX_SECONDS": None,
    "STREAM_RETRY_MS": 2_000,
    # The framework adapters record a run (status, model, token usage) per framework run.
    "INTEGRATIONS_RECORD_RUNS": True,
    # Database layer (docs/deploying.md).
    "WAIT_POLL_INTERVAL_SECONDS": 0.5,
    "DIRECT_DATABASE": None,
    # Full-text search (agent_sessions.search, CONTRACT §14).
    "TEXT_SEARCH_CONFIG": "simple",
    # The event pipeline (agent_sessions.pipeline, CONTRACT §12).
    "SHAPE_WARNINGS": True,
    "REDACTION": {},
}

#: The longest accepted ``WAIT_POLL_INTERVAL_SECONDS``: beyond it a reader
#: waits too long for events of writers that send no NOTIFY.
MAX_WAIT_POLL_INTERVAL_SECONDS = 60.0


class AppSettings:
    """Attribute access to the ``AGENT_SESSIONS`` dict, falling back to :data:`DEFAULTS`."""

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, SETTING_NAME, None)
        return value if isinstance(value, dict) else {}

    def _get(self, key: str) -> Any:
        return self.user_settings.get(key, DEFAULTS[key])

    @property
    def RETENTION(self) -> dict[str, Any]:
        value = self._get("RETENTION")
        return dict(value) if isinstance(value, dict) else {}

    def _limit(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            # manage.py check reports this as agent_sessions.E004; code that
            # runs without checks (a shell, a worker) still gets a clear error.
            raise ImproperlyConfigured(
                f"{SETTING_NAME}[{key!r}] must be a positive integer, got {value!r}."
            )
        return value

    @property
    def QUERY_DEFAULT_LIMIT(self) -> int:
        return self._limit("QUERY_DEFAULT_LIMIT")

    @property
    def QUERY_EVENT_DEFAULT_LIMIT(self) -> int:
        return self._limit("QUERY_EVENT_DEFAULT_LIMIT")

    @property
    def QUERY_MAX_LIMIT(self) -> int:
        return self._limit("QUERY_MAX_LIMIT")

    @property
    def PRICING_TABLE(self) -> dict[str, Any] | None:
        value = self._get("PRICING_TABLE")
        return value if isinstance(value, dict) else None

    @property
    def ADMIN_ALLOW_EVENT_DELETE(self) -> bool:
        return bool(self._get("ADMIN_ALLOW_EVENT_DELETE"))

    @property
    def ADMIN_ALLOW_EDIT(self) -> bool:
        return bool(self._get("ADMIN_ALLOW_EDIT"))

    @property
    def API_PERMISSION(self) -> str:
        value = self._get("API_PERMISSION")
        if not isinstance(value, str) or not value:
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['API_PERMISSION'] must be a dotted path, got {value!r}."
            )
        return value

    @property
    def API_LONG_POLL_MAX_MS(self) -> int:
        return self._limit("API_LONG_POLL_MAX_MS")

    @property
    def STREAM_HEARTBEAT_SECONDS(self) -> float:
        return self._seconds("STREAM_HEARTBEAT_SECONDS")

    @property
    def STREAM_MAX_SECONDS(self) -> float | None:
        if self._get("STREAM_MAX_SECONDS") is None:
            return None
        return self._seconds("STREAM_MAX_SECONDS")

    @property
    def STREAM_RETRY_MS(self) -> int:
        return self._limit("STREAM_RETRY_MS")

    def _seconds(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < inf:
            # manage.py check reports this as agent_sessions.E021.
            raise ImproperlyConfigured(
                f"{SETTING_NAME}[{key!r}] must be a positive number of seconds, got {value!r}."
            )
        return float(value)

    @property
    def INTEGRATIONS_RECORD_RUNS(self) -> bool:
        value = self._get("INTEGRATIONS_RECORD_RUNS")
        if not isinstance(value, bool):
            # manage.py check reports this as agent_sessions.E015.
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['INTEGRATIONS_RECORD_RUNS'] must be True or False, got {value!r}."
            )
        return value

    @property
    def WAIT_POLL_INTERVAL_SECONDS(self) -> float:
        value = self._get("WAIT_POLL_INTERVAL_SECONDS")
        if wait_poll_interval_problem(value) is not None:
            # Reported by manage.py check as agent_sessions.E030.
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['WAIT_POLL_INTERVAL_SECONDS'] "
                f"{wait_poll_interval_problem(value)}, got {value!r}."
            )
        return float(value)

    @property
    def TEXT_SEARCH_CONFIG(self) -> str:
        """PostgreSQL text-search configuration of the search index, read at migrate time."""
        value = self._get("TEXT_SEARCH_CONFIG")
        if not isinstance(value, str) or not value:
            # Reported by manage.py check as agent_sessions.E040.
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['TEXT_SEARCH_CONFIG'] must be a text search "
                f"configuration name such as 'simple', got {value!r}."
            )
        return value

    def direct_database(self, alias: str) -> str | None:
        """The alias whose connections may hold session state (LISTEN) for ``alias``.

        ``DIRECT_DATABASE`` is None (every alias is its own direct
        connection), an alias name (the direct connection of every alias: a
        project with one database reached through a pooler), or a dict from
        alias to alias, where None means "no direct connection: poll". An
        alias missing from the dict is its own direct connection.
        """
        value = self._get("DIRECT_DATABASE")
        if isinstance(value, dict):
            direct = value.get(alias, alias)
            return None if direct is None else str(direct)
        return alias if value is None else str(value)

    def direct_database_is_explicit(self, alias: str) -> bool:
        """True when ``DIRECT_DATABASE`` names the direct connection of ``alias`` outright."""
        value = self._get("DIRECT_DATABASE")
        if isinstance(value, dict):
            return alias in value
        return value is not None

    @property
    def SHAPE_WARNINGS(self) -> bool:
        return bool(self._get("SHAPE_WARNINGS"))

    @property
    def REDACTION(self) -> Any:
        """The raw ``REDACTION`` dict (see :func:`agent_sessions.redaction.settings_config`)."""
        return self._get("REDACTION")


def wait_poll_interval_problem(value: Any) -> str | None:
    """What is wrong with a ``WAIT_POLL_INTERVAL_SECONDS`` value, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number of seconds"
    if not 0 < value <= MAX_WAIT_POLL_INTERVAL_SECONDS:
        return f"must be above 0 and at most {MAX_WAIT_POLL_INTERVAL_SECONDS:g}"
    return None


app_settings = AppSettings()
