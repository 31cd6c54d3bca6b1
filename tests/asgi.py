"""The ASGI application the API's multi-process and browser tests serve under uvicorn.

The test starts ``uvicorn tests.asgi:application`` with:

- ``DJANGO_SETTINGS_MODULE``: the test run's settings (SQLite or PostgreSQL);
- ``ASM_TEST_DB_NAME``: the test database the parent created (a name on
  PostgreSQL, a file on SQLite);
- ``ASM_TEST_AGENT_SESSIONS``: JSON merged into ``settings.AGENT_SESSIONS``;
- ``ASM_TEST_CONN_MAX_AGE``: optional ``CONN_MAX_AGE`` of the database (seconds);
- ``ASM_TEST_PGBOUNCER_PORT``: optional; the database is then reached through
  the PgBouncer on that port, and the listener uses a ``direct`` alias
  (``DIRECT_DATABASE``), as docs/deploying.md describes.

Besides Django it answers ``GET /__test__/stats`` with what the tests check
from outside: open SSE streams and live threads of this server process.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from tests.api_support import SERVER_APP, SERVER_DIRECT_APP

if os.environ.get("ASM_TEST_DB_NAME"):
    settings.DATABASES["default"]["NAME"] = os.environ["ASM_TEST_DB_NAME"]
if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
    # So that tests count this server's connections, and nobody else's.
    settings.DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = SERVER_APP
if os.environ.get("ASM_TEST_CONN_MAX_AGE"):
    settings.DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["ASM_TEST_CONN_MAX_AGE"])
settings.AGENT_SESSIONS = {
    **getattr(settings, "AGENT_SESSIONS", {}),
    **json.loads(os.environ.get("ASM_TEST_AGENT_SESSIONS", "{}")),
}
if os.environ.get("ASM_TEST_PGBOUNCER_PORT"):
    # The deployment docs' PgBouncer set-up: "default" through the transaction
    # pooler, and a "direct" alias to PostgreSQL itself for the listener.
    direct = {**settings.DATABASES["default"]}
    direct["OPTIONS"] = {**direct.get("OPTIONS", {}), "application_name": SERVER_DIRECT_APP}
    settings.DATABASES["direct"] = direct
    settings.DATABASES["default"] = {
        **settings.DATABASES["default"],
        "PORT": os.environ["ASM_TEST_PGBOUNCER_PORT"],
        "DISABLE_SERVER_SIDE_CURSORS": True,
    }
    settings.AGENT_SESSIONS.setdefault("DIRECT_DATABASE", {"default": "direct"})

django_application = ASGIStaticFilesHandler(get_asgi_application())


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/__test__/stats":
        from agent_sessions.api.sse import open_streams

        body = json.dumps(
            {
                "open_streams": open_streams(),
                "threads": threading.active_count(),
                "pid": os.getpid(),
            }
        ).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await django_application(scope, receive, send)
