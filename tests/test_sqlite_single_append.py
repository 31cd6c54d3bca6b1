"""The SQLite single append: its own ``BEGIN IMMEDIATE`` … ``COMMIT`` in autocommit.

Outside any atomic block the counter upsert and the insert run in a
transaction of their own on the driver connection; inside the caller's
transaction they join it. Either way a failure leaves nothing behind: no
counter bumped, no open transaction, the next append continues gap-free.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection, transaction

from agent_sessions import models as m
from agent_sessions.core import Event
from agent_sessions.errors import StorageError
from agent_sessions.store import DjangoSessionStore

pytestmark = [pytest.mark.sqlite_only, pytest.mark.django_db(transaction=True)]

REFUSED = "evt_refused_by_trigger"


@pytest.fixture
def refusing_trigger() -> Iterator[None]:
    """Make SQLite refuse one event id at insert time (after the counter was bumped)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TRIGGER asm_test_refuse BEFORE INSERT ON asm_events "
            f"WHEN NEW.id = '{REFUSED}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER asm_test_refuse")


def _counter(session_id: str) -> int | None:
    row = m.SessionSequence.objects.filter(session_id=session_id).first()
    return None if row is None else row.last_sequence


def _numbers(session_id: str) -> list[int]:
    return list(
        m.Event.objects.filter(session_id=session_id)
        .order_by("sequence_number")
        .values_list("sequence_number", flat=True)
    )


def test_in_autocommit_the_append_commits_its_own_transaction() -> None:
    store = DjangoSessionStore()
    stored = store.append_event(Event.new("message_sent", "ses_own"))
    assert stored.sequence_number == 1
    assert connection.get_autocommit()
    assert not connection.connection.in_transaction
    assert _numbers("ses_own") == [1]
    assert _counter("ses_own") == 1


@pytest.mark.usefixtures("refusing_trigger")
def test_a_failed_insert_rolls_back_the_counter_and_leaves_no_transaction_open() -> None:
    store = DjangoSessionStore()
    store.append_event(Event.new("message_sent", "ses_refused"))
    with pytest.raises(StorageError):
        store.append_event(Event.new("message_sent", "ses_refused", id=REFUSED))
    assert not connection.connection.in_transaction
    assert _counter("ses_refused") == 1
    assert store.append_event(Event.new("message_sent", "ses_refused")).sequence_number == 2
    assert _numbers("ses_refused") == [1, 2]


@pytest.mark.usefixtures("refusing_trigger")
def test_inside_the_callers_transaction_the_append_joins_it() -> None:
    store = DjangoSessionStore()

    def undone() -> None:
        with transaction.atomic():
            store.append_event(Event.new("message_sent", "ses_joined"))
            assert connection.connection.in_transaction
            raise RuntimeError("the caller undoes its transaction")

    with pytest.raises(RuntimeError):
        undone()
    assert _numbers("ses_joined") == []
    assert _counter("ses_joined") is None
    with transaction.atomic():
        store.append_event(Event.new("message_sent", "ses_joined"))
        with pytest.raises(StorageError):
            store.append_event(Event.new("message_sent", "ses_joined", id=REFUSED))
        store.append_event(Event.new("message_sent", "ses_joined"))
    assert _numbers("ses_joined") == [1, 2]
    assert _counter("ses_joined") == 2


def test_a_repeated_id_writes_nothing_and_returns_the_stored_event() -> None:
    store = DjangoSessionStore()
    event = Event.new("message_sent", "ses_again", data={"n": 1})
    assert store.append_event(event).sequence_number == 1
    again = store.append_event(event)
    assert (again.sequence_number, again.data) == (1, {"n": 1})
    assert not connection.connection.in_transaction
    assert _counter("ses_again") == 1
