from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from example_project.demo import views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("agent-sessions/", include("agent_sessions.urls")),
    path("live/", views.live, name="demo-live-index"),
    path("live/<str:session_id>/", views.live, name="demo-live"),
]
