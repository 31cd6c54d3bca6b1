"""A real ASGI server (uvicorn, in a subprocess) and an SSE client, for the API's end-to-end tests.

:class:`AsgiServer` binds a loopback socket on a free port in the test
process and hands it to uvicorn (``--fd``): the port stays the test's for the
whole test, so the server can be killed and started again on the same
address while clients (or a browser) reconnect to it — connections made
during a restart wait in the socket's backlog.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
#: The ``application_name`` of the server's PostgreSQL connections (set in ``tests/asgi.py``).
SERVER_APP = "asm_test_asgi_server"
#: The ``application_name`` of its direct connections when it runs behind PgBouncer.
SERVER_DIRECT_APP = "asm_test_asgi_server direct"


def allow_all(request: Any, session_id: str | None) -> bool:
    """An ``API_PERMISSION`` that lets everybody in (the server tests need no login)."""
    return True


class AsgiServer:
    """``uvicorn tests.asgi:application`` on the test database, on a port of our own.

    Args:
        agent_sessions: Merged into the server's ``settings.AGENT_SESSIONS``.
        settings_module: The server's settings (None: the test run's). The
            example project's settings read the database from ``DATABASE_URL``,
            which is set to the test database.
        conn_max_age: The server database's ``CONN_MAX_AGE`` (None: as configured).
        pgbouncer_port: Reach the database through the PgBouncer on this port,
            with a direct alias for the listener (see ``tests/asgi.py``).
    """

    def __init__(
        self,
        *,
        agent_sessions: dict[str, Any],
        settings_module: str | None = None,
        conn_max_age: int | None = None,
        pgbouncer_port: int | None = None,
    ) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(2048)
        self._socket.set_inheritable(True)
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "ASM_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "ASM_TEST_AGENT_SESSIONS": json.dumps(agent_sessions),
        }
        if conn_max_age is not None:
            self.env["ASM_TEST_CONN_MAX_AGE"] = str(conn_max_age)
        if pgbouncer_port is not None:
            self.env["ASM_TEST_PGBOUNCER_PORT"] = str(pgbouncer_port)
        if settings_module:
            self.env["DJANGO_SETTINGS_MODULE"] = settings_module
            self.env["DATABASE_URL"] = database_url()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        fd = self._socket.fileno()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.asgi:application",
                "--fd",
                str(fd),
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "2",
            ],
            cwd=ROOT,
            env=self.env,
            pass_fds=(fd,),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.stats()
                return
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.1)

    def stats(self) -> dict[str, Any]:
        """The server process's open streams and threads (``/__test__/stats``)."""
        response = httpx.get(f"{self.url}/__test__/stats", timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def kill(self) -> None:
        """Kill the server at once: every open connection drops."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server (gracefully, then by force) and release the port."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._socket.close()


def database_url() -> str:
    """The test database as a ``DATABASE_URL`` (the example project's settings read it)."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate()`` until it returns something truthy; return that (or the last value)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


def server_db_connections(application_name: str = SERVER_APP) -> int:
    """Connections the ASGI server process holds to the test database (PostgreSQL).

    Behind PgBouncer, these are the pooler's server connections that the
    server's clients used (PgBouncer passes ``application_name`` on); the
    server's direct connections have :data:`SERVER_DIRECT_APP`.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [application_name],
        )
        return int(cursor.fetchone()[0])


class SSEParser:
    """Incremental Server-Sent Events parser (the parts the stream uses)."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[dict[str, str]]:
        """Add received text; return the complete frames it finished (comments under ``":"``)."""
        self._buffer += text
        frames = []
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            frame: dict[str, str] = {}
            for line in block.split("\n"):
                name, _, value = line.partition(":")
                frame[name or ":"] = value[1:] if value.startswith(" ") else value
            frames.append(frame)
        return frames


def start_writer(session_ids: list[str], count: int, interval: float) -> subprocess.Popen[bytes]:
    """Another process that appends ``count`` events to each session, round-robin.

    Event ``n`` (from 1) of a session is a ``tool_call_started`` when ``n`` is a
    multiple of 3, else a ``message_sent``; sessions start empty, so ``n`` is
    also its sequence number.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "ASM_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
    }
    args = [sys.executable, "-m", "tests.api_support", str(count), str(interval), *session_ids]
    return subprocess.Popen(args, cwd=ROOT, env=env)


def event_type(n: int) -> str:
    """The type :func:`start_writer` gives a session's ``n``-th event."""
    return "tool_call_started" if n % 3 == 0 else "message_sent"


def _write(count: int, interval: float, session_ids: list[str]) -> None:
    import django
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = os.environ["ASM_TEST_DB_NAME"]
    django.setup()
    from agent_sessions.core import Event
    from agent_sessions.store import DjangoSessionStore

    store = DjangoSessionStore()
    for n in range(1, count + 1):
        for session_id in session_ids:
            store.append_event(Event.new(event_type(n), session_id, data={"n": n}))
        time.sleep(interval)


if __name__ == "__main__":
    _write(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:])
