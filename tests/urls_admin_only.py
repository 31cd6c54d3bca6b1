"""A project that includes the admin but not ``agent_sessions.urls`` (no live stream)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
