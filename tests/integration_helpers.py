"""Helpers for the async and adapter tests.

:class:`Api` calls a service synchronously or through its async twins.
:func:`run_in_processes` runs test code in real OS processes connected to the test database.
:func:`settled_backend_connections` counts the test database's server connections (leak tests).

Used by the adapter tests whose contract speaks of several processes
(``pop_item`` atomicity, concurrent ADK appends). Children are started with the
``spawn`` context, set Django up with the parent's settings module and point
at the database the parent's test run created.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connection


def _setup_django_child(settings_module: str, db_name: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    from django.conf import settings

    # Before django.setup(): connections read DATABASES when first used.
    settings.DATABASES["default"]["NAME"] = db_name
    import django

    django.setup()


def run_in_processes(target: Callable[..., Any], calls: Iterable[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*args)`` for each ``args`` in ``calls``, each call in its own process.

    ``target`` must be a module-level function (children import it). All calls
    start together and run concurrently; results come back in ``calls`` order.
    """
    calls = list(calls)
    context = multiprocessing.get_context("spawn")
    settings_module = os.environ["DJANGO_SETTINGS_MODULE"]
    db_name = connection.settings_dict["NAME"]
    with context.Pool(
        processes=len(calls),
        initializer=_setup_django_child,
        initargs=(settings_module, db_name),
    ) as pool:
        return pool.starmap(target, calls)


class Api:
    """Calls store methods by their sync name, either directly or through the async twin."""

    def __init__(self, target: Any, mode: str) -> None:
        self.target = target
        self.mode = mode

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self.mode == "sync":
            return getattr(self.target, name)
        twin = getattr(self.target, f"a{name}")
        return lambda *args, **kwargs: asyncio.run(twin(*args, **kwargs))


def backend_connections() -> int:
    """How many server connections the test database has now (PostgreSQL).

    The process's shared event listener (agent_sessions.listener) keeps its
    one connection for a while after the last waiter by design; it is not
    counted.
    """
    from agent_sessions.listener import LISTENER_APPLICATION_NAME

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name <> %s",
            [LISTENER_APPLICATION_NAME],
        )
        return int(cursor.fetchone()[0])


def settled_backend_connections(expected: int, *, timeout: float = 5.0) -> int:
    """The server connection count once it equals ``expected``, or after ``timeout`` seconds.

    A server process leaves ``pg_stat_activity`` a moment after its client
    closed the connection; a leaked connection never does.
    """
    deadline = time.monotonic() + timeout
    while (count := backend_connections()) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count
