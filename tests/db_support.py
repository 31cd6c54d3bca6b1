"""Helpers for the database-layer tests: long-running child processes, backend counts.

:class:`Child` is a real OS process (a fresh interpreter) with Django set up
exactly as the test run is, on the test databases, that runs the Python
statements it is sent — a stand-in for a long-running worker (Celery, an
ASGI server) whose connection the tests can break.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, connections

ROOT = Path(__file__).resolve().parent.parent

# Configures Django from the parent's settings, with the parent's DATABASES
# (test database names exist only at run time) and AGENT_SESSIONS; then runs
# one statement per input line and answers one JSON line: the value the
# statement left in ``result``, or the error it raised.
_CHILD = """
import importlib, json, os, sys, traceback
import django
from django.conf import settings
base = importlib.import_module(os.environ["ASM_CHILD_SETTINGS"])
values = {k: getattr(base, k) for k in dir(base) if k.isupper()}
values.update(json.loads(os.environ["ASM_CHILD_OVERRIDES"]))
settings.configure(**values)
django.setup()
namespace = {}
print(json.dumps({"ok": os.getpid()}), flush=True)
for line in sys.stdin:
    namespace.pop("result", None)
    try:
        exec(json.loads(line), namespace)
        answer = {"ok": namespace.get("result")}
    except BaseException as exc:
        answer = {"error": type(exc).__name__, "code": getattr(exc, "code", None),
                  "message": str(exc), "traceback": traceback.format_exc()}
    print(json.dumps(answer, default=str), flush=True)
"""


class ChildError(Exception):
    """A statement run by a :class:`Child` raised; ``name`` is the exception's class name."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(f"{answer['error']}: {answer['message']}\n{answer['traceback']}")
        self.name: str = answer["error"]
        self.code: str | None = answer["code"]


def child_overrides() -> dict[str, Any]:
    """The settings a child process needs beyond the settings module: the live DATABASES."""
    databases = {alias: dict(connections.settings[alias]) for alias in connections.settings}
    overrides: dict[str, Any] = {"DATABASES": databases}
    if hasattr(settings, "AGENT_SESSIONS"):
        overrides["AGENT_SESSIONS"] = settings.AGENT_SESSIONS
    return overrides


class Child:
    """A long-running Django process on the test databases; see the module docstring."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["ASM_CHILD_SETTINGS"] = os.environ["DJANGO_SETTINGS_MODULE"]
        env["ASM_CHILD_OVERRIDES"] = json.dumps(child_overrides(), default=str)
        env["PYTHONPATH"] = str(ROOT)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = int(self._answer())

    def run(self, code: str) -> Any:
        """Run ``code`` in the child; returns what it assigned to ``result``.

        Raises:
            ChildError: the code raised (its class name and code are kept).
        """
        self.send(code)
        return self.receive()

    def send(self, code: str) -> None:
        """Start running ``code`` without waiting for it (then :meth:`receive`)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(code) + "\n")
        self.process.stdin.flush()

    def receive(self) -> Any:
        """The outcome of the code last :meth:`send`-ed, as :meth:`run` returns it."""
        return self._answer()

    def _answer(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the child process exited ({self.process.wait(timeout=10)})")
        answer = json.loads(line)
        if "error" in answer:
            raise ChildError(answer)
        return answer["ok"]

    def close(self) -> None:
        """End the child (its connections close with it)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def backends(where: str = "true", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Server processes of the test database (PostgreSQL) matching ``where``, as dicts."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, application_name, state, query FROM pg_stat_activity "
            f"WHERE datname = current_database() AND pid <> pg_backend_pid() AND ({where})",
            params,
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def eventually(predicate: Any, timeout: float = 5.0, pause: float = 0.02) -> bool:
    """Poll ``predicate()`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
    return True


@contextmanager
def function_dropped(migration: str) -> Iterator[None]:
    """Run a function migration's ``DROP`` SQL, and its ``CREATE`` again after the block.

    Args:
        migration: The migration's module name, e.g. ``"0006_append_event_function"``.
    """
    module = import_module(f"agent_sessions.migrations.{migration}")
    with connection.cursor() as cursor:
        cursor.execute(module.DROP)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(module.CREATE)
