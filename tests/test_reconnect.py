"""A long-running process recovers from a lost database connection (agent_sessions.db).

Django recycles connections only at request boundaries; workers call the
store outside requests. After the server ends the connection
(``pg_terminate_backend``, ``idle_session_timeout``, a restart), the next
store call must work: the write path closes the broken connection and runs
a retry-safe operation once more on a new one. Each test drives a real child
process (tests.db_support.Child), the way a Celery worker or ASGI server
would run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection

from tests.db_support import Child, ChildError, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

SETUP = """
from django.db import connection, transaction
from agent_sessions.core import Event, Session
from agent_sessions.store import DjangoArtifactRegistry, DjangoSessionStore
from agent_sessions.query import DjangoQueryAPI
store = DjangoSessionStore()
def append(sid, event_id=None):
    fields = {"id": event_id} if event_id else {}
    return store.append_event(Event.new("message_sent", sid, **fields)).sequence_number
def backend_pid():
    connection.ensure_connection()
    return connection.connection.info.backend_pid
"""


@pytest.fixture
def worker() -> Iterator[Child]:
    with Child() as child:
        child.run(SETUP)
        yield child


def terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert eventually(lambda: not _alive(pid)), f"backend {pid} still alive"


def _alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


def test_the_next_append_after_pg_terminate_backend_succeeds(worker: Child) -> None:
    sid = f"ses_{uuid.uuid4().hex}"
    assert worker.run(f"result = append({sid!r})") == 1
    old_pid = worker.run("result = backend_pid()")
    terminate(old_pid)

    assert worker.run(f"result = append({sid!r})") == 2
    assert worker.run(f"result = append({sid!r})") == 3
    assert worker.run("result = backend_pid()") != old_pid


def test_every_kind_of_call_recovers_from_a_terminated_backend(worker: Child) -> None:
    sid = f"ses_{uuid.uuid4().hex}"
    calls = [
        f"store.save_session(Session.new('agent', id={sid!r}))",
        f"result = store.get_session({sid!r}).id",
        f"result = [e.sequence_number for e in store.get_events({sid!r})]",
        f"result = store.get_latest_sequence({sid!r})",
        "result = store.list_sessions(agent_id='agent', limit=1)[0].id",
        f"result = DjangoQueryAPI().get_session_stats({sid!r})['event_count']",
        f"result = len(store.append_events([Event.new('message_sent', {sid!r})]))",
        f"store.delete_session({sid!r})",
    ]
    for call in calls:
        terminate(worker.run("result = backend_pid()"))
        worker.run(call)


def test_a_retried_append_is_not_stored_twice(worker: Child) -> None:
    sid, event_id = f"ses_{uuid.uuid4().hex}", f"evt_{uuid.uuid4().hex}"
    assert worker.run(f"result = append({sid!r}, {event_id!r})") == 1
    terminate(worker.run("result = backend_pid()"))
    # The same id again (a client retrying after an error): the stored event, no new number.
    assert worker.run(f"result = append({sid!r}, {event_id!r})") == 1
    assert worker.run(f"result = store.get_latest_sequence({sid!r})") == 1


def test_inside_the_callers_atomic_block_the_loss_is_a_storage_error_and_the_next_call_works(
    worker: Child,
) -> None:
    sid = f"ses_{uuid.uuid4().hex}"
    pid = worker.run("result = backend_pid()")
    worker.run("block = transaction.atomic(); block.__enter__()")
    worker.run(f"append({sid!r})")
    terminate(pid)
    with pytest.raises(ChildError) as raised:
        worker.run(f"append({sid!r})")
    assert raised.value.name == "StorageError"
    # Leaving the broken block raises too (Django's own error); nothing was committed.
    with pytest.raises(ChildError):
        worker.run("block.__exit__(None, None, None)")
    assert worker.run(f"result = append({sid!r})") == 1


def test_the_next_call_after_an_idle_session_timeout_succeeds(worker: Child) -> None:
    sid = f"ses_{uuid.uuid4().hex}"
    worker.run("connection.ensure_connection()")
    # The server ends this session after 200 ms of idleness (PostgreSQL ≥ 14).
    worker.run("connection.cursor().execute(\"SET idle_session_timeout = '200ms'\")")
    pid = worker.run("result = backend_pid()")
    assert eventually(lambda: not _alive(pid), timeout=10)
    time.sleep(0.1)
    assert worker.run(f"result = append({sid!r})") == 1
    assert worker.run(f"result = store.get_latest_sequence({sid!r})") == 1


def test_a_registration_is_not_retried_but_the_next_call_reconnects(worker: Child) -> None:
    worker.run("registry = DjangoArtifactRegistry()")
    key = f"k/{uuid.uuid4().hex}"
    register = (
        "registry.register(key={key!r}, byte_size=1, checksum_sha256='0' * 64, "
        "storage_backend='local', storage_ref='/tmp/x')"
    )
    pid = worker.run("result = backend_pid()")
    terminate(pid)
    # A registration is not idempotent (a committed one would come back as a
    # duplicate key), so it is not repeated: the call that meets the dead
    # connection reports a StorageError, and the next call reconnects.
    with pytest.raises(ChildError) as raised:
        worker.run(register.format(key=key))
    assert raised.value.name == "StorageError"
    worker.run(register.format(key=key))
    assert worker.run(f"result = registry.get_by_key({key!r})['key']") == key
