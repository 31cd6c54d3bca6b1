"""ASGI entry point of the example project: ``uvicorn example_project.asgi:application``.

The live stream (``agent_sessions.urls``) is built for ASGI: an idle stream
holds no database connection and no thread. ``ASGIStaticFilesHandler`` serves
the admin's static files straight from the apps, as ``runserver`` does; a
real deployment serves them from a web server or CDN after ``collectstatic``.
"""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
application = ASGIStaticFilesHandler(get_asgi_application())
