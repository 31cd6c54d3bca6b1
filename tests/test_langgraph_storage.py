"""How DjangoCheckpointSaver stores what it stores: compressed payloads, the put function.

The behaviour LangGraph sees is checked by its conformance suite
(tests/test_langgraph_checkpointer.py); these check what makes a put cheap
without changing it: large serialised payloads are stored zlib-compressed
(and the uncompressed form written before still reads), and on PostgreSQL a
put is one call of ``asm_append_session_events`` (migration 0007), with the
CTE taking over where the function is missing or goes away, and on a direct
connection the put and get_tuple statements are prepared (run again
unprepared when they vanish).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint

from agent_sessions import models as m
from agent_sessions.integrations import langgraph_codec
from agent_sessions.integrations.langgraph import DjangoCheckpointSaver
from tests.db_support import function_dropped

pytestmark = pytest.mark.django_db(transaction=True)

FUNCTION = "asm_append_session_events"


def text(n: int) -> str:
    return f"message {n} " + "lorem ipsum " * 8


def conversation(saver: DjangoCheckpointSaver, size: int) -> tuple[Any, dict[str, Any]]:
    """A checkpoint whose ``messages`` channel holds ``size`` messages, and its new versions."""
    messages: list[Any] = [
        (HumanMessage if n % 2 == 0 else AIMessage)(text(n), id=f"m{n}") for n in range(size)
    ]
    checkpoint = empty_checkpoint()
    version = saver.get_next_version(None, None)
    checkpoint["channel_values"] = {"messages": messages}
    checkpoint["channel_versions"] = {"messages": version}
    return checkpoint, {"messages": version}


def put(saver: DjangoCheckpointSaver, thread_id: str, size: int) -> Any:
    checkpoint, versions = conversation(saver, size)
    config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    return saver.put(config, checkpoint, {"source": "loop", "step": size}, versions)


def stored_payload(thread_id: str) -> list[str]:
    event = m.Event.objects.get(session_id=thread_id, type="workspace_snapshot_taken")
    payload: list[str] = event.metadata["langgraph"]["checkpoint"]
    return payload


def contents(saver: DjangoCheckpointSaver, config: Any) -> list[str]:
    got = saver.get_tuple(config)
    assert got is not None
    return [message.content for message in got.checkpoint["channel_values"]["messages"]]


# --------------------------------------------------------------------------- payloads


def test_a_large_checkpoint_is_stored_compressed_and_reads_back() -> None:
    saver = DjangoCheckpointSaver()
    config = put(saver, "thread_z", 20)
    _kind, stored, encoding = stored_payload("thread_z")
    serialised_size = len(saver.serde.dumps_typed(conversation(saver, 20)[0])[1])
    assert encoding == "zlib"
    assert len(stored) < serialised_size / 2
    assert contents(saver, config) == [text(n) for n in range(20)]


def test_a_small_checkpoint_is_stored_as_it_is() -> None:
    saver = DjangoCheckpointSaver()
    put(saver, "thread_small", 0)
    assert len(stored_payload("thread_small")) == 2


def test_checkpoints_stored_uncompressed_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # Written before payloads were compressed: ``[type, base64]``.
    saver = DjangoCheckpointSaver()
    monkeypatch.setattr(langgraph_codec, "COMPRESS_FROM", 10**9)
    config = put(saver, "thread_old", 20)
    assert len(stored_payload("thread_old")) == 2
    monkeypatch.undo()
    assert len(contents(saver, config)) == 20
    assert len(list(saver.list({"configurable": {"thread_id": "thread_old"}}))) == 1


# ------------------------------------------------------------------- the thread's session row


def test_the_first_put_creates_the_threads_session() -> None:
    put(DjangoCheckpointSaver(agent_id="my-graph"), "thread_new", 1)
    session = m.Session.objects.get(id="thread_new")
    assert (session.agent_id, session.metadata) == ("my-graph", {"framework": "langgraph"})


def test_a_stored_thread_session_only_gets_its_updated_at_refreshed() -> None:
    m.Session.objects.create(
        id="thread_kept",
        agent_id="someone-else",
        status="active",
        metadata={"mine": True},
        context={},
        tags=["pinned"],
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    put(DjangoCheckpointSaver(), "thread_kept", 1)
    session = m.Session.objects.get(id="thread_kept")
    assert (session.agent_id, session.status, session.metadata, session.tags) == (
        "someone-else",
        "active",
        {"mine": True},
        ["pinned"],
    )
    assert session.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert session.updated_at > session.created_at


def test_the_first_put_of_a_thread_writes_its_session_row_with_one_statement() -> None:
    with CaptureQueriesContext(connection) as queries:
        put(DjangoCheckpointSaver(), "thread_one_statement", 1)
    on_sessions = [q["sql"] for q in queries.captured_queries if '"asm_sessions"' in q["sql"]]
    assert [sql.split()[0] for sql in on_sessions] == ["INSERT"]


# --------------------------------------------------------------------------- the put function


def _calls_in_this_transaction() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = %s",
            [FUNCTION],
        )
        return int(cursor.fetchone()[0])


def _function_dropped() -> AbstractContextManager[None]:
    """Drop the function, and put it back after (as migration 0007 made it)."""
    return function_dropped("0007_append_session_events_function")


def _numbers(thread_id: str) -> list[int]:
    return list(
        m.Event.objects.filter(session_id=thread_id)
        .order_by("sequence_number")
        .values_list("sequence_number", flat=True)
    )


@pytest.mark.postgres_only
def test_a_put_is_one_call_of_the_session_append_function() -> None:
    saver = DjangoCheckpointSaver()
    put(saver, "thread_fn", 1)  # the thread's session row is created first
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL track_functions = 'pl'")
        put(saver, "thread_fn", 2)
        assert _calls_in_this_transaction() == 1
    # Two checkpoints and two messages, numbered in order.
    assert _numbers("thread_fn") == [1, 2, 3, 4]


@pytest.mark.postgres_only
def test_without_the_function_a_put_stores_the_same_events() -> None:
    with _function_dropped():
        connection.close()  # a new connection looks the function up again
        saver = DjangoCheckpointSaver()
        config = put(saver, "thread_nofn", 2)
        put(saver, "thread_nofn", 3)
        assert _numbers("thread_nofn") == [1, 2, 3, 4, 5]
        assert len(contents(saver, config)) == 2


@pytest.mark.postgres_only
def test_a_function_dropped_while_running_falls_back_without_losing_the_put() -> None:
    saver = DjangoCheckpointSaver()
    put(saver, "thread_gone", 1)  # found and remembered
    with _function_dropped():
        config = put(saver, "thread_gone", 2)
        assert _numbers("thread_gone") == [1, 2, 3, 4]
        assert len(contents(saver, config)) == 2


# --------------------------------------------------------------------------- prepared statements


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.postgres_only
def test_on_a_direct_connection_put_and_get_tuple_are_prepared() -> None:
    saver = DjangoCheckpointSaver()
    connection.close()
    for size in (1, 2):
        config = put(saver, "thread_prepared", size)
        assert len(contents(saver, config)) == size
    prepared = _prepared_statements()
    assert any(FUNCTION in statement for statement in prepared)
    assert any("metadata -> $2" in statement for statement in prepared)


@pytest.mark.postgres_only
def test_statements_deallocated_behind_the_drivers_back_run_again_unprepared() -> None:
    saver = DjangoCheckpointSaver()
    config = put(saver, "thread_dealloc", 1)
    contents(saver, config)
    with connection.cursor() as cursor:
        # Unseen by psycopg, as a pooler's DISCARD ALL would be.
        cursor.execute("DO $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$")
    config = put(saver, "thread_dealloc", 2)
    assert contents(saver, config) == [text(0), text(1)]
    assert _numbers("thread_dealloc") == [1, 2, 3, 4]


@pytest.mark.postgres_only
def test_a_page_of_list_is_one_statement_with_the_pending_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent_sessions.integrations import langgraph_pgsql

    saver = DjangoCheckpointSaver()
    configs = [put(saver, "thread_list", size) for size in (1, 2, 3)]
    saver.put_writes(configs[1], [("messages", "pending")], task_id="task-1")
    statements: list[str] = []
    execute = langgraph_pgsql._execute

    def counted(connection: Any, sql: str, params: Any, **kwargs: Any) -> Any:
        statements.append(sql)
        return execute(connection, sql, params, **kwargs)

    monkeypatch.setattr(langgraph_pgsql, "_execute", counted)
    listed = list(saver.list({"configurable": {"thread_id": "thread_list"}}))
    assert len(statements) == 1
    assert [len(t.checkpoint["channel_values"]["messages"]) for t in listed] == [3, 2, 1]
    assert [t.pending_writes for t in listed] == [[], [("task-1", "messages", "pending")], []]


def test_list_pages_through_every_checkpoint_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_sessions.integrations import langgraph as langgraph_module

    monkeypatch.setattr(langgraph_module, "LIST_CHUNK_SIZE", 2)
    saver = DjangoCheckpointSaver()
    ids = [
        put(saver, thread, size)["configurable"]["checkpoint_id"]
        for size in (1, 2, 3)
        for thread in ("thread_page_a", "thread_page_b")
    ]
    listed = [t.config["configurable"]["checkpoint_id"] for t in saver.list(None)]
    assert listed == sorted(ids, reverse=True)
    limited = list(saver.list({"configurable": {"thread_id": "thread_page_b"}}, limit=2))
    assert [t.config["configurable"]["checkpoint_id"] for t in limited] == sorted(ids[1::2])[::-1][
        :2
    ]
