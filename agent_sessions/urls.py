"""The optional HTTP API and live stream (CONTRACT §13)::

    # urls.py of your project
    path("agent-sessions/", include("agent_sessions.urls")),

URL names, in the ``agent_sessions`` namespace (stable; link to them with
``reverse("agent_sessions:event-stream", args=[session_id])``):

================================  ======================================
``sessions/``                     ``agent_sessions:session-list``
``sessions/<id>``                 ``agent_sessions:session-detail``
``sessions/<id>/events``          ``agent_sessions:event-list``
``sessions/<id>/events/stream``   ``agent_sessions:event-stream``
``sessions/<id>/export``          ``agent_sessions:session-export``
``search?q=``                     ``agent_sessions:search``
================================  ======================================

Every endpoint is GET-only and asks the ``AGENT_SESSIONS["API_PERMISSION"]``
callable first. See ``docs/api.md``.
"""

from __future__ import annotations

from django.urls import path

from agent_sessions.api import views

app_name = "agent_sessions"

urlpatterns = [
    path("sessions/", views.session_list, name="session-list"),
    path("sessions/<str:session_id>", views.session_detail_view, name="session-detail"),
    path("sessions/<str:session_id>/events", views.event_list, name="event-list"),
    path("sessions/<str:session_id>/events/stream", views.event_stream, name="event-stream"),
    path("sessions/<str:session_id>/export", views.session_export, name="session-export"),
    path("search", views.text_search, name="search"),
]
