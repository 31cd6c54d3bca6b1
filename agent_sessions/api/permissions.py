"""Who may read what through :mod:`agent_sessions.urls`.

One setting, ``AGENT_SESSIONS["API_PERMISSION"]``, names a callable
``(request, session_id or None) -> bool``: ``session_id`` is the session a
request reads, or None for the session list. The default,
:func:`default_permission`, lets in authenticated users who hold the
``agent_sessions.view_event`` permission (superusers hold every permission).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from django.utils.module_loading import import_string

from agent_sessions.conf import app_settings

__all__ = ["PermissionCheck", "default_permission", "has_access"]

#: The shape of ``AGENT_SESSIONS["API_PERMISSION"]``.
PermissionCheck = Callable[[HttpRequest, str | None], bool]

#: The permission the default check requires.
VIEW_PERMISSION = "agent_sessions.view_event"


def default_permission(request: HttpRequest, session_id: str | None) -> bool:
    """Allow authenticated users with ``agent_sessions.view_event``, for every session.

    Args:
        request: The incoming request (``request.user`` set by
            ``AuthenticationMiddleware``).
        session_id: The session being read, or None for the session list.

    Returns:
        True when access is granted.
    """
    user: Any = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.has_perm(VIEW_PERMISSION))


def has_access(request: HttpRequest, session_id: str | None) -> bool:
    """Ask the configured ``API_PERMISSION`` callable; synchronous (it may query the database).

    Anything but ``True`` from the callable refuses: a check that returns a
    truthy non-bool by mistake must not open the data to everybody.
    """
    check: PermissionCheck = import_string(app_settings.API_PERMISSION)
    return check(request, session_id) is True
