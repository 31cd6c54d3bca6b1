"""The HTTP API and live event stream behind :mod:`agent_sessions.urls` (CONTRACT §13).

Kept import-light: ``agent_sessions.api.default_permission`` is the default
``AGENT_SESSIONS["API_PERMISSION"]`` and is resolved from settings, so this
package must not pull in views or models when it is imported.
"""

from __future__ import annotations

from agent_sessions.api.permissions import default_permission

__all__ = ["default_permission"]
