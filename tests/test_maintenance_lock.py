"""agent_sessions.locks.maintenance_lock: one maintenance run at a time per database."""

from __future__ import annotations

import pytest
from django.db import connection

from agent_sessions.locks import lock_file_path, maintenance_lock
from agent_sessions.maintenance import DjangoMaintenance
from tests.factories import SessionFactory
from tests.maintenance_support import days_ago, policy

pytestmark = pytest.mark.django_db


def test_the_lock_is_taken_when_free() -> None:
    with maintenance_lock() as acquired:
        assert acquired is True


def test_a_second_holder_is_refused_while_the_first_holds_it() -> None:
    with maintenance_lock() as first, maintenance_lock() as second:
        assert (first, second) == (True, False)


def test_the_lock_is_free_again_after_the_block() -> None:
    with maintenance_lock():
        pass
    with maintenance_lock() as again:
        assert again is True


def test_the_lock_is_released_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), maintenance_lock():
        raise RuntimeError("boom")
    with maintenance_lock() as again:
        assert again is True


@pytest.mark.sqlite_only
def test_on_sqlite_the_lock_file_sits_next_to_the_database() -> None:
    path = lock_file_path(connection)

    assert str(path) == f"{connection.settings_dict['NAME']}.asm-maintenance.lock"
    with maintenance_lock():
        assert path.exists()


def test_the_lock_outlives_the_runs_own_transactions() -> None:
    SessionFactory(status="completed", updated_at=days_ago(365))

    with maintenance_lock() as acquired:
        report = DjangoMaintenance().execute(policy(max_completed_session_age_days=90))
        with maintenance_lock() as meanwhile:
            assert (acquired, meanwhile) == (True, False)

    assert report.sessions_soft_deleted == 1
