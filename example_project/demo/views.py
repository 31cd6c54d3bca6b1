"""The demo's live page: one session's events arriving in the browser as they are appended."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from agent_sessions.core import EventType


@login_required(login_url="/admin/login/")
def live(request: HttpRequest, session_id: str | None = None) -> HttpResponse:
    """Plain HTML and ``EventSource``: the page reads everything from ``agent_sessions.urls``."""
    return render(
        request,
        "demo/live.html",
        {"session_id": session_id, "event_types": [t.value for t in EventType]},
    )
