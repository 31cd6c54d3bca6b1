"""Behind a real hot standby and the primary/replica router (issue #18).

Runs with ``tests.settings_replica`` only (``scripts/test.sh``'s replica run):
``default`` is the primary and ``replica`` a streaming standby of it, made by
``scripts/replica.sh`` (``pg_basebackup -R -X stream``); the router of
Django's multi-database docs sends reads to the standby and writes to the
primary. Read-your-writes cases run with WAL replay paused on the standby
(``pg_wal_replay_pause()``), so whatever is written during the test is on the
primary only: a read that should see it and went to the standby fails. The
other cases run with replay going, and wait for the standby to catch up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import InternalError, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agent_sessions import models as m
from agent_sessions.core import Event, EventType, Run, RunStatus, Session
from agent_sessions.errors import NotFoundError
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.retention import RetentionPolicy
from agent_sessions.routing import read_from_primary
from agent_sessions.store import DjangoArtifactRegistry, DjangoSessionStore

pytestmark = [
    pytest.mark.replica,
    pytest.mark.postgres_only,
    pytest.mark.django_db(transaction=True, databases=["default", "replica"]),
]

CATCH_UP_SECONDS = 120  # the standby replays the whole shared cluster's WAL


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def sql(alias: str, query: str, params: list[Any] | None = None) -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchone()[0]


def catch_up() -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    lsn = sql("default", "SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while not sql("replica", "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]):
        if time.monotonic() > deadline:
            pytest.fail(f"the standby did not replay up to {lsn} within {CATCH_UP_SECONDS} s")
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def standby(transactional_db: None) -> None:
    """Every test starts with the standby streaming and caught up with the primary."""
    assert sql("replica", "SELECT pg_is_in_recovery()") is True
    assert sql("replica", "SELECT pg_is_wal_replay_paused()") is False
    catch_up()


@contextmanager
def paused_replay() -> Iterator[None]:
    """WAL replay paused on the standby: writes made in the block are on the primary only."""
    sql("replica", "SELECT pg_wal_replay_pause()")
    try:
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while sql("replica", "SELECT pg_get_wal_replay_pause_state()") != "paused":
            assert time.monotonic() < deadline, "replay did not pause"
            time.sleep(0.005)
        yield
    finally:
        sql("replica", "SELECT pg_wal_replay_resume()")


@pytest.fixture
def replay_paused(standby: None) -> Iterator[None]:
    """The whole test with replay paused (see :func:`paused_replay`)."""
    with paused_replay():
        yield


def on_primary(model: type[Any], **filters: Any) -> Any:
    return model._default_manager.using("default").filter(**filters)


def on_standby(model: type[Any], **filters: Any) -> Any:
    return model._default_manager.using("replica").filter(**filters)


def message(session_id: str, text: str) -> Event:
    return Event.new(EventType.MESSAGE_SENT, session_id, data={"content": text})


# --------------------------------------------------------------------------- the set-up itself


def test_the_replica_alias_is_a_hot_standby_of_the_test_database() -> None:
    assert sql("default", "SELECT pg_is_in_recovery()") is False
    assert sql("replica", "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    assert sql("replica", "SELECT current_database()") == sql(
        "default", "SELECT current_database()"
    )
    assert (
        connections["replica"].settings_dict["PORT"] != connections["default"].settings_dict["PORT"]
    )


def test_orm_reads_follow_the_router_to_the_standby(replay_paused: None) -> None:
    m.Session.from_domain(Session.new("agent", id="ses_lagging")).save()

    assert not m.Session.objects.filter(id="ses_lagging").exists()
    assert on_primary(m.Session, id="ses_lagging").exists()
    with pytest.raises(InternalError, match="read-only transaction"):
        m.Session.objects.using("replica").filter(id="ses_lagging").delete()


# --------------------------------------------------------------------------- the store


def test_store_writes_go_to_the_primary_and_plain_reads_may_be_stale(
    replay_paused: None,
) -> None:
    store = DjangoSessionStore()
    store.save_session(Session.new("agent", id="ses_1"))
    store.append_event(message("ses_1", "hi"))

    assert on_primary(m.Session, id="ses_1").exists()
    assert on_primary(m.Event, session_id="ses_1").count() == 1
    # Without a consistency request the routers' read database answers.
    with pytest.raises(NotFoundError):
        store.get_session("ses_1")
    assert store.get_events("ses_1") == []


def test_a_consistent_store_reads_back_its_own_writes(replay_paused: None) -> None:
    store = DjangoSessionStore(consistent=True)
    session = Session.new("agent", id="ses_1")
    store.save_session(session)
    run_ = Run.new("ses_1", id="run_1").with_status(RunStatus.RUNNING)
    store.save_run(run_)
    stored = store.append_events([message("ses_1", "a"), message("ses_1", "b")])

    assert store.get_session("ses_1").id == "ses_1"
    assert [s.id for s in store.list_sessions()] == ["ses_1"]
    assert store.get_run("run_1").status == "running"
    assert [r.id for r in store.list_runs("ses_1")] == ["run_1"]
    assert store.get_events("ses_1") == stored
    assert store.get_latest_sequence("ses_1") == 2
    assert run(store.aget_session("ses_1")).id == "ses_1"


def test_read_from_primary_pins_reads_for_the_block_only(replay_paused: None) -> None:
    store = DjangoSessionStore()
    store.save_session(Session.new("agent", id="ses_1"))
    event = store.append_event(message("ses_1", "hi"))

    with read_from_primary():
        assert store.get_session("ses_1").id == "ses_1"
        assert store.get_events("ses_1") == [event]
        assert DjangoQueryAPI().get_session_stats("ses_1")["event_count"] == 1
    with pytest.raises(NotFoundError):
        store.get_session("ses_1")


def test_read_from_primary_reaches_the_async_twins(replay_paused: None) -> None:
    store = DjangoSessionStore()
    store.save_session(Session.new("agent", id="ses_1"))

    async def read_back() -> str:
        with read_from_primary():
            return (await store.aget_session("ses_1")).id

    assert run(read_back()) == "ses_1"
    with pytest.raises(NotFoundError):
        run(store.aget_session("ses_1"))


def test_reads_inside_atomic_on_the_write_alias_see_the_blocks_writes() -> None:
    store = DjangoSessionStore()
    with transaction.atomic(using="default"):
        store.save_session(Session.new("agent", id="ses_1", tags=["t"]))
        event = store.append_event(message("ses_1", "hi"))

        assert store.get_session("ses_1").id == "ses_1"
        assert store.get_events("ses_1") == [event]
        assert [s.id for s in DjangoQueryAPI().search_sessions(tags=["t"]).sessions] == ["ses_1"]
    catch_up()
    # After the commit the standby has it too, and reads go back to it.
    with CaptureQueriesContext(connections["replica"]) as on_replica:
        assert store.get_session("ses_1").id == "ses_1"
    assert len(on_replica.captured_queries) == 1


def test_store_delete_session_deletes_under_lag(replay_paused: None) -> None:
    store = DjangoSessionStore()
    store.save_session(Session.new("agent", id="ses_1"))
    store.append_event(message("ses_1", "hi"))

    store.delete_session("ses_1")

    assert not on_primary(m.Session, id="ses_1").exists()
    assert not on_primary(m.Event, session_id="ses_1").exists()


def test_maintenance_works_on_the_primary_under_lag(replay_paused: None) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    store = DjangoSessionStore()
    for n in range(3):
        store.save_session(
            Session.new("agent", id=f"ses_{n}", status="completed", created_at=old, updated_at=old)
        )

    report = DjangoMaintenance().execute(RetentionPolicy(max_completed_session_age_days=1))

    assert report.errors == []
    assert report.sessions_soft_deleted == 3
    assert not on_primary(m.Session, deleted_at__isnull=True).exists()


def test_get_active_run_and_long_poll_read_the_primary_under_lag(replay_paused: None) -> None:
    store = DjangoSessionStore()
    store.save_run(Run.new("ses_1", id="run_1").with_status(RunStatus.RUNNING))
    event = store.append_event(message("ses_1", "hi"))

    active = store.get_active_run("ses_1")
    assert active is not None
    assert active.id == "run_1"
    assert store.get_events("ses_1", wait_timeout_ms=2000) == [event]


def test_the_query_api_reads_the_standby_unless_asked_for_consistency(
    replay_paused: None,
) -> None:
    DjangoSessionStore().save_session(Session.new("agent", id="ses_1"))

    assert DjangoQueryAPI().search_sessions().sessions == []
    assert [s.id for s in DjangoQueryAPI(consistent=True).search_sessions().sessions] == ["ses_1"]


def test_full_text_search_reads_the_standby_unless_asked_for_consistency(
    replay_paused: None,
) -> None:
    DjangoSessionStore().append_event(message("ses_1", "the zebra crossing"))

    assert DjangoQueryAPI().search_text("zebra").hits == []
    hits = DjangoQueryAPI(consistent=True).search_text("zebra").hits
    assert [hit.event.session_id for hit in hits] == ["ses_1"]


def test_the_artifact_registry_writes_the_primary_and_reads_back_when_consistent(
    replay_paused: None,
) -> None:
    fields = {"byte_size": 3, "checksum_sha256": "0" * 64, "storage_backend": "s3"}
    DjangoArtifactRegistry().register(key="k1", storage_ref="r1", session_id="ses_1", **fields)

    assert on_primary(m.Artifact, key="k1").exists()
    assert DjangoArtifactRegistry().get_by_key("k1") is None
    found = DjangoArtifactRegistry(consistent=True).get_by_key("k1")
    assert found is not None
    assert found["storage_ref"] == "r1"


# --------------------------------------------------------------------------- signed cursors


def _sessions(count: int) -> list[str]:
    store = DjangoSessionStore()
    for n in range(count):
        store.save_session(Session.new("agent", id=f"ses_{n:02d}"))
    catch_up()
    return [s.id for s in DjangoQueryAPI(using="default").search_sessions(limit=1000).sessions]


def test_a_cursor_from_the_standby_pages_on_the_primary_and_back() -> None:
    expected = _sessions(6)
    standby_api, primary_api = DjangoQueryAPI(), DjangoQueryAPI(using="default")

    with CaptureQueriesContext(connections["replica"]) as on_replica:
        first = standby_api.search_sessions(limit=2)
    assert on_replica.captured_queries, "the plain query API should read the standby"
    second = primary_api.search_sessions(limit=2, cursor=first.cursor)
    third = standby_api.search_sessions(limit=2, cursor=second.cursor)

    pages = [first, second, third]
    assert [s.id for page in pages for s in page.sessions] == expected
    assert third.cursor is None


def test_an_event_cursor_is_valid_on_both_aliases() -> None:
    store = DjangoSessionStore()
    store.save_session(Session.new("agent", id="ses_1"))
    store.append_events([message("ses_1", str(n)) for n in range(4)])
    catch_up()

    first = DjangoQueryAPI(consistent=True).search_events(session_ids=["ses_1"], limit=2)
    rest = DjangoQueryAPI().search_events(session_ids=["ses_1"], limit=2, cursor=first.cursor)

    numbers = [e.sequence_number for e in first.events + rest.events]
    assert numbers == [1, 2, 3, 4]


# --------------------------------------------------------------------------- the admin


@pytest.fixture
def admin_client() -> Client:
    """A logged-in superuser; made before any pause, so the standby knows the login."""
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    catch_up()
    return client


def _action(client: Client, action: str, ids: list[str], query: str = "") -> Any:
    url = reverse("admin:agent_sessions_session_changelist") + query
    return client.post(url, {"action": action, "_selected_action": ids}, follow=True)


def test_admin_soft_delete_writes_the_primary_and_picks_ids_there(admin_client: Client) -> None:
    store = DjangoSessionStore()
    store.save_session(Session.new("agent", id="ses_old"))
    catch_up()
    with paused_replay():
        # Only on the primary: ids chosen on the standby would miss it.
        store.save_session(Session.new("agent", id="ses_new"))

        response = _action(admin_client, "soft_delete_sessions", ["ses_old", "ses_new"])

        assert response.status_code == 200
        assert "Soft-deleted 2 session(s)." in response.content.decode()
        assert not on_primary(m.Session, deleted_at__isnull=True).exists()
        assert on_standby(m.Session, id="ses_old", deleted_at__isnull=True).exists()


def test_admin_restore_writes_the_primary(admin_client: Client, replay_paused: None) -> None:
    deleted = Session.new("agent", id="ses_1", deleted_at=dt.datetime.now(dt.UTC))
    DjangoSessionStore().save_session(deleted)

    response = _action(admin_client, "restore_sessions", ["ses_1"], "?deleted=yes")

    assert response.status_code == 200
    assert "Restored 1 session(s)." in response.content.decode()
    assert on_primary(m.Session, id="ses_1", deleted_at__isnull=True).exists()


# --------------------------------------------------------------------------- framework adapters


def test_langchain_turns_read_back_their_own_history(replay_paused: None) -> None:
    from langchain_core.messages import AIMessage, HumanMessage

    from agent_sessions.integrations.langchain import DjangoChatMessageHistory

    history = DjangoChatMessageHistory("chat_1")
    history.add_messages([HumanMessage("hello"), AIMessage("hi")])
    assert [msg.content for msg in history.messages] == ["hello", "hi"]

    DjangoChatMessageHistory("chat_1").add_messages([HumanMessage("again")])
    later = DjangoChatMessageHistory("chat_1")
    assert [msg.content for msg in later.messages] == ["hello", "hi", "again"]
    assert [msg.content for msg in run(later.aget_messages())] == ["hello", "hi", "again"]


def test_openai_agents_session_reads_back_its_own_items(replay_paused: None) -> None:
    from agent_sessions.integrations.openai_agents import DjangoAgentsSession

    session = DjangoAgentsSession("conv_1")
    run(session.add_items([{"role": "user", "content": "hello"}]))
    assert run(session.get_items()) == [{"role": "user", "content": "hello"}]
    assert run(session.pop_item()) == {"role": "user", "content": "hello"}
    assert run(session.get_items()) == []


def test_openai_runner_second_turn_gets_the_first_turns_history(replay_paused: None) -> None:
    from agents import Agent, Runner, set_tracing_disabled

    from agent_sessions.integrations.openai_agents import DjangoAgentsSession
    from tests.test_integration_openai_agents import EchoModel

    set_tracing_disabled(True)
    model = EchoModel()
    agent = Agent(name="echo", instructions="Echo.", model=model)
    session = DjangoAgentsSession("conv_runner")

    run(Runner.run(agent, "hello", session=session))
    second = run(Runner.run(agent, "again", session=session))

    assert second.final_output == "echo: again"
    assert [item.get("role") for item in model.seen_inputs[1]] == ["user", "assistant", "user"]


APP, USER = "my_app", "user_1"


def _adk_text(text: str, author: str = "user") -> Any:
    from google.adk.events.event import Event as AdkEvent
    from google.genai import types

    role = "user" if author == "user" else "model"
    content = types.Content(role=role, parts=[types.Part(text=text)])
    return AdkEvent(invocation_id="inv", author=author, content=content)


def test_adk_get_session_reads_back_the_appended_events(replay_paused: None) -> None:
    from agent_sessions.integrations.adk import DjangoSessionService

    service = DjangoSessionService()
    created = run(service.create_session(app_name=APP, user_id=USER, session_id="s1"))
    run(service.append_event(created, _adk_text("hello")))

    got = run(service.get_session(app_name=APP, user_id=USER, session_id="s1"))
    assert got is not None
    assert [e.content.parts[0].text for e in got.events] == ["hello"]


def test_adk_delete_session_deletes_under_lag(replay_paused: None) -> None:
    from agent_sessions.integrations.adk import DjangoSessionService, asm_session_id

    service = DjangoSessionService()
    created = run(service.create_session(app_name=APP, user_id=USER, session_id="s1"))
    run(service.append_event(created, _adk_text("hello")))
    stored_as = asm_session_id(APP, USER, "s1")
    assert on_primary(m.Event, session_id=stored_as).exists()

    run(service.delete_session(app_name=APP, user_id=USER, session_id="s1"))

    assert not on_primary(m.Session, id=stored_as).exists()
    assert not on_primary(m.Event, session_id=stored_as).exists()


def test_adk_runner_turns_read_back_their_own_writes(replay_paused: None) -> None:
    from collections.abc import AsyncGenerator

    from google.adk.agents import LlmAgent
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_request import LlmRequest
    from google.adk.models.llm_response import LlmResponse
    from google.adk.runners import Runner
    from google.genai import types

    from agent_sessions.integrations.adk import DjangoSessionService

    seen: list[list[str]] = []

    class EchoLlm(BaseLlm):
        """A local model: answers with the text of the last message it was sent."""

        async def generate_content_async(
            self, llm_request: LlmRequest, stream: bool = False
        ) -> AsyncGenerator[LlmResponse, None]:
            seen.append([content.parts[0].text for content in llm_request.contents])
            reply = f"echo: {llm_request.contents[-1].parts[0].text}"
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=reply)]))

    service = DjangoSessionService()
    agent = LlmAgent(name="echo", model=EchoLlm(model="echo"), instruction="Echo.")
    runner = Runner(app_name=APP, agent=agent, session_service=service)
    run(service.create_session(app_name=APP, user_id=USER, session_id="s1"))

    async def turn(text: str) -> list[str]:
        message = types.Content(role="user", parts=[types.Part(text=text)])
        events = runner.run_async(user_id=USER, session_id="s1", new_message=message)
        return [event.content.parts[0].text async for event in events if event.content]

    assert run(turn("hello")) == ["echo: hello"]
    assert run(turn("again")) == ["echo: again"]
    assert seen[1] == ["hello", "echo: hello", "again"]

    # With auto_create_session the Runner creates a session it cannot find: a
    # lagging read made it create the existing one again (AlreadyExistsError).
    runner.auto_create_session = True
    assert run(turn("third")) == ["echo: third"]
    assert seen[2][-3:] == ["again", "echo: again", "third"]
