"""Shared fixtures. The same tests run on SQLite and PostgreSQL (see scripts/test.sh).

Tests marked ``postgres_only`` exercise behaviour that only exists on
PostgreSQL (the catalog, LISTEN/NOTIFY); on SQLite they are deselected at
collection, never skipped, and they run in the PostgreSQL pass.

Tests marked ``replica`` need a hot standby behind a primary/replica router
(``tests.settings_replica``, a run of their own in scripts/test.sh): they are
deselected where no ``replica`` database is configured, and that run selects
only them (the rest of the suite assumes one database).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection


def _vendor() -> str:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    return "postgresql" if "postgresql" in engine else "sqlite"


def pytest_report_header(config: pytest.Config) -> str:
    return f"agent_sessions test database: {_vendor()}"


def _has_replica() -> bool:
    from django.conf import settings

    return "replica" in settings.DATABASES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    vendor = _vendor()
    unwanted = "postgres_only" if vendor != "postgresql" else "sqlite_only"
    replica_run = _has_replica()
    kept, deselected = [], []
    for item in items:
        wanted = (
            not item.get_closest_marker(unwanted)
            and (item.get_closest_marker("replica") is not None) == replica_run
        )
        (kept if wanted else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any) -> Iterator[None]:
    """pytest-django's test databases; the shared listeners close before they are dropped."""
    yield
    from agent_sessions.listener import shutdown_listeners

    shutdown_listeners()


@pytest.fixture(scope="session")
def pgbouncer(django_db_setup: Any) -> Iterator[Any]:
    """A PgBouncer (transaction pooling) in front of the test database, as alias "pgbouncer".

    See tests/pgbouncer.py; stopped before the test database is dropped.
    """
    from tests.pgbouncer import start_pgbouncer

    bouncer = start_pgbouncer()
    yield bouncer
    from agent_sessions.listener import shutdown_listeners

    shutdown_listeners()
    bouncer.stop()


@pytest.fixture
def vendor() -> str:
    """``"postgresql"`` or ``"sqlite"``: the backend this run tests."""
    return connection.vendor


@pytest.fixture
def raw_row() -> Any:
    """Read one row with plain SQL, bypassing model field conversion."""

    def read(table: str, pk_column: str, pk: str) -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT * FROM "{table}" WHERE "{pk_column}" = %s', [pk])
            row = cursor.fetchone()
            assert row is not None, f"no row {pk!r} in {table}"
            names = [col[0] for col in cursor.description]
        return dict(zip(names, row, strict=True))

    return read


@pytest.fixture
def in_time_zone(settings: Any) -> Any:
    """Run with a project TIME_ZONE far from UTC."""
    settings.TIME_ZONE = "Asia/Kolkata"
    return settings


@pytest.fixture
def store() -> Any:
    """A ``DjangoSessionStore`` on the default database."""
    from agent_sessions.store import DjangoSessionStore

    return DjangoSessionStore()


@pytest.fixture
def query_api() -> Any:
    """A ``DjangoQueryAPI`` on the default database."""
    from agent_sessions.query import DjangoQueryAPI

    return DjangoQueryAPI()


@pytest.fixture
def artifact_registry() -> Any:
    """A ``DjangoArtifactRegistry`` on the default database."""
    from agent_sessions.store import DjangoArtifactRegistry

    return DjangoArtifactRegistry()


@pytest.fixture
def stored_sequences() -> Any:
    """The sequence numbers stored for a session, ascending, read with plain SQL."""

    def read(session_id: str) -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT sequence_number FROM asm_events WHERE session_id = %s "
                "ORDER BY sequence_number",
                [session_id],
            )
            return [row[0] for row in cursor.fetchall()]

    return read
