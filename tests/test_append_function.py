"""The PostgreSQL single append through ``asm_append_event`` (migration 0006).

With Django's default connection settings nothing is prepared, so the single
append calls a PL/pgSQL function whose statements are planned once per server
connection. Where the function is missing, or goes away while the process
runs, the one-statement CTE takes over with the same guarantees.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest
from django.db import connection

from agent_sessions import models as m
from agent_sessions.core import Event
from agent_sessions.store import DjangoSessionStore
from tests.db_support import function_dropped

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

SIGNATURE = (
    "asm_append_event(varchar, varchar, timestamp, varchar, varchar, jsonb, jsonb, integer,"
    " varchar, varchar, timestamp)"
)


def _function_exists() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [SIGNATURE])
        return bool(cursor.fetchone()[0])


def _calls_in_this_transaction() -> int:
    """How often the function ran in the current transaction (needs track_functions)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
            " WHERE funcname = 'asm_append_event'"
        )
        return int(cursor.fetchone()[0])


def _function_dropped() -> AbstractContextManager[None]:
    """Drop the function, and put it back after (as migration 0006 made it)."""
    return function_dropped("0006_append_event_function")


@pytest.fixture
def dropped_function() -> Iterator[None]:
    with _function_dropped():
        yield


def _numbers(session_id: str) -> list[int]:
    return list(
        m.Event.objects.filter(session_id=session_id)
        .order_by("sequence_number")
        .values_list("sequence_number", flat=True)
    )


def test_the_migration_creates_the_function() -> None:
    assert _function_exists()


def test_single_appends_run_through_the_function() -> None:
    from django.db import transaction

    store = DjangoSessionStore()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL track_functions = 'pl'")
        for _ in range(3):
            store.append_event(Event.new("message_sent", "ses_fn"))
        assert _calls_in_this_transaction() == 3
    assert _numbers("ses_fn") == [1, 2, 3]


def test_a_repeated_id_through_the_function_is_stored_once() -> None:
    store = DjangoSessionStore()
    event = Event.new("message_sent", "ses_fn_dup", data={"n": 1})
    first = store.append_event(event)
    again = store.append_event(event)
    assert (first.sequence_number, again.sequence_number) == (1, 1)
    assert again.data == {"n": 1}
    assert store.append_event(Event.new("message_sent", "ses_fn_dup")).sequence_number == 2


@pytest.mark.usefixtures("dropped_function")
def test_without_the_function_the_statement_appends_gap_free() -> None:
    assert not _function_exists()
    connection.close()  # a new connection looks the function up again
    store = DjangoSessionStore()
    event = Event.new("message_sent", "ses_no_fn")
    store.append_event(event)
    store.append_event(event)
    store.append_event(Event.new("message_sent", "ses_no_fn"))
    assert _numbers("ses_no_fn") == [1, 2]


def test_a_function_dropped_while_running_falls_back_without_losing_the_event() -> None:
    store = DjangoSessionStore()
    store.append_event(Event.new("message_sent", "ses_fn_gone"))  # found and remembered
    with _function_dropped():
        stored = store.append_event(Event.new("message_sent", "ses_fn_gone"))
        assert stored.sequence_number == 2
        assert _numbers("ses_fn_gone") == [1, 2]


def test_a_function_dropped_inside_the_callers_transaction_falls_back() -> None:
    from django.db import transaction

    store = DjangoSessionStore()
    store.append_event(Event.new("message_sent", "ses_fn_atomic"))
    with _function_dropped():
        with transaction.atomic():
            m.Session.objects.filter(id="nothing").update(status="x")
            stored = store.append_event(Event.new("message_sent", "ses_fn_atomic"))
        assert stored.sequence_number == 2
        assert _numbers("ses_fn_atomic") == [1, 2]


def test_a_process_that_saw_no_function_uses_it_from_its_next_connection() -> None:
    """Started before migrate: the CTE until reconnecting, then the function again."""
    from django.db import transaction

    store = DjangoSessionStore()
    with _function_dropped():
        connection.close()
        store.append_event(Event.new("message_sent", "ses_fn_later"))  # remembered: missing
    connection.close()  # e.g. the next request with CONN_MAX_AGE=0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL track_functions = 'pl'")
        store.append_event(Event.new("message_sent", "ses_fn_later"))
        assert _calls_in_this_transaction() == 1
    assert _numbers("ses_fn_later") == [1, 2]


def _prepared_statements() -> list[str]:
    """The statements prepared on this connection's server session."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_on_a_direct_connection_only_the_append_is_prepared() -> None:
    """Planned once per server session; Django's own statements stay unprepared."""
    from agent_sessions.models import Session as SessionRow

    connection.close()
    store = DjangoSessionStore()
    for _ in range(3):
        store.append_event(Event.new("message_sent", "ses_fn_prep"))
    for _ in range(10):
        list(SessionRow.objects.filter(id="nothing"))
    prepared = _prepared_statements()
    assert len(prepared) == 1, prepared
    assert "asm_append_event" in prepared[0]
    assert connection.connection.prepare_threshold is None
    assert _numbers("ses_fn_prep") == [1, 2, 3]


def test_a_prepared_append_deallocated_behind_psycopgs_back_runs_again_unprepared() -> None:
    from django.db import transaction

    connection.close()
    store = DjangoSessionStore()
    store.append_event(Event.new("message_sent", "ses_fn_dealloc"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        (name,) = cursor.fetchone()
        cursor.execute(f"DEALLOCATE {name}")  # psycopg still believes it is prepared
    with transaction.atomic():  # inside a caller's transaction: retried in a savepoint
        store.append_event(Event.new("message_sent", "ses_fn_dealloc"))
    store.append_event(Event.new("message_sent", "ses_fn_dealloc"))
    assert _numbers("ses_fn_dealloc") == [1, 2, 3]
    assert _prepared_statements() == []


def test_a_rolled_back_transaction_leaves_the_prepared_append_working() -> None:
    """psycopg deallocates its statements on rollback; the next append prepares again."""
    from django.db import transaction

    connection.close()
    store = DjangoSessionStore()
    store.append_event(Event.new("message_sent", "ses_fn_rollback"))

    def undone() -> None:
        with transaction.atomic():
            store.append_event(Event.new("message_sent", "ses_fn_rollback"))
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        undone()
    store.append_event(Event.new("message_sent", "ses_fn_rollback"))
    assert _numbers("ses_fn_rollback") == [1, 2]
    assert len(_prepared_statements()) == 1
