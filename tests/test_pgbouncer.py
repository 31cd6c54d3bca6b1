"""agent_sessions behind PgBouncer in transaction pooling mode (tests/pgbouncer.py).

Every statement may run on another server connection, and a server
connection serves other clients between our transactions: nothing may rely
on session state (LISTEN, session-level advisory locks or settings,
server-side cursors), and nothing may be left on a server connection. Claims
about processes run in real processes (tests.db_support.Child).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from agent_sessions.core import Event, Run, Session
from agent_sessions.listener import get_listener
from agent_sessions.store import DjangoSessionStore
from tests.db_support import Child
from tests.pgbouncer import ALIAS, POOL_SIZE, PgBouncer

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.django_db(transaction=True, databases=["default", ALIAS]),
]

LONG_WAIT_MS = 20_000

CHILD_SETUP = f"""
from agent_sessions.core import Event
from agent_sessions.store import DjangoSessionStore
from agent_sessions.query import DjangoQueryAPI
store = DjangoSessionStore(using={ALIAS!r})
"""


@pytest.fixture
def bouncer(pgbouncer: PgBouncer) -> PgBouncer:
    return pgbouncer


@pytest.fixture
def children(bouncer: PgBouncer) -> Iterator[list[Child]]:
    started = [Child() for _ in range(3)]
    for child in started:
        child.run(CHILD_SETUP)
    yield started
    for child in started:
        child.close()


def on_all(children: list[Child], code: str) -> list[Any]:
    """Run ``code`` in every child at the same time; their results in order."""
    for child in children:
        child.send(code)
    return [child.receive() for child in children]


def test_appends_from_several_processes_through_pgbouncer_are_gap_free(
    children: list[Child], stored_sequences: Any
) -> None:
    sid = f"ses_{uuid.uuid4().hex}"
    work = (
        f"result = [store.append_event(Event.new('message_sent', {sid!r})).sequence_number "
        f"for _ in range(40)] + [e.sequence_number for _ in range(5) for e in "
        f"store.append_events([Event.new('message_sent', {sid!r}) for _ in range(6)])]"
    )
    numbers = on_all(children, work)
    total = len(children) * (40 + 5 * 6)
    assert sorted(n for per_child in numbers for n in per_child) == list(range(1, total + 1))
    assert stored_sequences(sid) == list(range(1, total + 1))


def test_a_long_poll_through_pgbouncer_is_woken_by_notify_on_the_direct_connection(
    children: list[Child], settings: Any
) -> None:
    # The interval check cannot wake the reader in time: only NOTIFY can.
    settings.AGENT_SESSIONS = {
        "DIRECT_DATABASE": {ALIAS: "default"},
        "WAIT_POLL_INTERVAL_SECONDS": 60,
    }
    sid = f"ses_{uuid.uuid4().hex}"
    listener = get_listener(ALIAS)
    assert not listener.wait(sid, after=0, timeout=0.2)
    assert listener.listening
    children[0].send(
        f"import time; time.sleep(0.3); "
        f"result = store.append_event(Event.new('message_sent', {sid!r})).id"
    )
    start = time.monotonic()
    events = DjangoSessionStore(using=ALIAS).get_events(sid, wait_timeout_ms=LONG_WAIT_MS)
    elapsed = time.monotonic() - start
    assert [e.id for e in events] == [children[0].receive()]
    assert elapsed < LONG_WAIT_MS / 2000


def test_without_a_direct_database_the_listener_polls_and_does_not_listen_through_pgbouncer(
    children: list[Child], settings: Any
) -> None:
    from agent_sessions.listener import shutdown_listeners

    shutdown_listeners()
    settings.AGENT_SESSIONS = {"WAIT_POLL_INTERVAL_SECONDS": 0.2}
    sid = f"ses_{uuid.uuid4().hex}"
    children[0].send(
        f"import time; time.sleep(0.3); "
        f"result = store.append_event(Event.new('message_sent', {sid!r})).id"
    )
    start = time.monotonic()
    events = DjangoSessionStore(using=ALIAS).get_events(sid, wait_timeout_ms=LONG_WAIT_MS)
    elapsed = time.monotonic() - start
    assert [e.id for e in events] == [children[0].receive()]
    assert elapsed < 0.3 + 0.2 + 2.0, f"took {elapsed:.2f} s"
    # A proxy was detected: no LISTEN or watch lock went onto a pooled connection.
    assert not get_listener(ALIAS).listening
    shutdown_listeners()


def test_export_session_from_several_processes_through_pgbouncer(
    children: list[Child], store: DjangoSessionStore
) -> None:
    session = Session.new("agent")
    store.save_session(session)
    runs = [Run.new(session.id) for _ in range(4)]
    for run in runs:
        store.save_run(run)
    store.append_events([Event.new("message_sent", session.id) for _ in range(25)])
    on_all(children, "import agent_sessions.query as q; q._EXPORT_PAGE = 7")
    exports = on_all(
        children,
        f"e = DjangoQueryAPI(using={ALIAS!r}).export_session({session.id!r}); "
        "result = [[r.id for r in e['runs']], [ev.sequence_number for ev in e['events']]]",
    )
    expected_runs = [r.id for r in sorted(runs, key=lambda r: (r.started_at, r.id))]
    assert exports == [[expected_runs, list(range(1, 26))]] * len(children)


def test_two_overlapping_maintenance_runs_through_pgbouncer_never_both_work(
    children: list[Child],
) -> None:
    holder, other, _ = children
    maintenance = (
        "import io; from django.core.management import call_command; out = io.StringIO(); "
        f"call_command('asm_maintenance', '--database', {ALIAS!r}, stdout=out, stderr=out); "
        "result = out.getvalue()"
    )
    holder.run("from agent_sessions.locks import maintenance_lock")
    other.run("from agent_sessions.locks import maintenance_lock")
    holder.run(f"held = maintenance_lock({ALIAS!r}); result = held.__enter__()")
    assert holder.run("result = True") is True
    assert "lock" in other.run(maintenance)
    assert other.run(f"m = maintenance_lock({ALIAS!r}); result = m.__enter__()") is False
    other.run("m.__exit__(None, None, None)")

    holder.run("held.__exit__(None, None, None)")
    assert "lock" not in other.run(maintenance)
    assert other.run(f"m = maintenance_lock({ALIAS!r}); result = m.__enter__()") is True
    assert holder.run(f"m = maintenance_lock({ALIAS!r}); result = m.__enter__()") is False
    holder.run("m.__exit__(None, None, None)")
    other.run("m.__exit__(None, None, None)")


def test_nothing_is_left_on_pgbouncers_server_connections(
    bouncer: PgBouncer, children: list[Child], settings: Any
) -> None:
    settings.AGENT_SESSIONS = {"DIRECT_DATABASE": {ALIAS: "default"}}
    sid = f"ses_{uuid.uuid4().hex}"
    # Everything that once left state behind: long-polls, streams, appends,
    # maintenance (its lock and synchronous_commit), exports.
    store = DjangoSessionStore(using=ALIAS)
    store.save_session(Session.new("agent", id=sid))
    for _ in range(POOL_SIZE * 3):  # single appends are never prepared through a pooler
        store.append_event(Event.new("message_sent", sid))
    assert store.get_events(sid, after=POOL_SIZE * 3, wait_timeout_ms=300) == []
    on_all(children, f"store.get_events({sid!r}, after=10**6, wait_timeout_ms=300)")
    children[0].run(
        "import io; from django.core.management import call_command; "
        f"call_command('asm_maintenance', '--database', {ALIAS!r}, stdout=io.StringIO())"
    )
    children[1].run(f"DjangoQueryAPI(using={ALIAS!r}).export_session({sid!r})")

    # POOL_SIZE transactions open at once occupy every server connection of the pool.
    params = dict(connection.get_connection_params())
    params.update(host="127.0.0.1", port=bouncer.port)
    for key in ("cursor_factory", "context", "client_encoding"):
        params.pop(key, None)
    clients = [psycopg.connect(**params) for _ in range(POOL_SIZE)]
    try:
        states = []
        for client in clients:
            states.append(
                client.execute(
                    "SELECT pg_backend_pid(), "
                    "(SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() "
                    " AND locktype = 'advisory'), "
                    "(SELECT count(*) FROM pg_listening_channels()), "
                    "(SELECT count(*) FROM pg_cursors), "
                    "(SELECT count(*) FROM pg_prepared_statements), "
                    "current_setting('synchronous_commit'), current_setting('lock_timeout'), "
                    "current_setting('statement_timeout'), "
                    "current_setting('idle_in_transaction_session_timeout')"
                ).fetchone()
            )
    finally:
        for client in clients:
            client.close()
    assert len({state[0] for state in states}) == POOL_SIZE, "one client per server connection"
    for state in states:
        assert state[1:] == (0, 0, 0, 0, "on", "0", "0", "0"), state


def test_the_checks_warn_about_a_pooled_alias_configured_as_if_direct(
    bouncer: PgBouncer, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connections

    from agent_sessions.checks import check_pooler

    monkeypatch.setitem(connections[ALIAS].settings_dict, "DISABLE_SERVER_SIDE_CURSORS", False)
    settings.AGENT_SESSIONS = {}
    ids = [message.id for message in check_pooler(databases=["default", ALIAS])]
    assert ids == ["agent_sessions.W032", "agent_sessions.W033"]

    monkeypatch.setitem(connections[ALIAS].settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)
    settings.AGENT_SESSIONS = {"DIRECT_DATABASE": {ALIAS: "default"}}
    assert check_pooler(databases=["default", ALIAS]) == []
