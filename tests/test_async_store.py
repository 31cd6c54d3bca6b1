"""The async twins of DjangoSessionStore and DjangoArtifactRegistry, and stream_events.

A subset of the store's contract runs twice, through the sync methods and
through their ``a``-prefixed twins (the ``api`` fixture), so both keep the
same behaviour. The twins work in pool threads with their own connections, so
these tests commit for real (``transaction=True``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
from typing import Any

import pytest

from agent_sessions import core
from agent_sessions.errors import NotFoundError, ValidationError
from agent_sessions.store import DjangoArtifactRegistry, DjangoSessionStore
from tests.integration_helpers import Api, backend_connections, settled_backend_connections

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Api:
    """The store, called synchronously or through its async twins."""
    return Api(DjangoSessionStore(), request.param)


@pytest.fixture(params=["sync", "async"])
def artifacts(request: pytest.FixtureRequest) -> Api:
    """The artifact registry, called synchronously or through its async twins."""
    return Api(DjangoArtifactRegistry(), request.param)


@pytest.fixture
def store() -> DjangoSessionStore:
    return DjangoSessionStore()


@pytest.fixture
def session(store: DjangoSessionStore) -> core.Session:
    """A stored session."""
    stored = core.Session.new("agent-async")
    store.save_session(stored)
    return stored


def message(session_id: str, text: str = "hi", **fields: Any) -> core.Event:
    return core.Event.new("message_sent", session_id, data={"text": text}, **fields)


# --------------------------------------------------------------------------- twins exist


def test_every_public_store_method_has_a_coroutine_twin() -> None:
    for cls in (DjangoSessionStore, DjangoArtifactRegistry):
        sync_methods = {
            name: method
            for name, method in vars(cls).items()
            if inspect.isfunction(method)
            and not name.startswith("_")
            and not inspect.iscoroutinefunction(method)
            and not inspect.isasyncgenfunction(method)
        }
        assert sync_methods
        for name, method in sync_methods.items():
            twin = getattr(cls, f"a{name}")
            assert inspect.iscoroutinefunction(twin), name
            assert inspect.signature(twin) == inspect.signature(method), name


def test_twin_docstring_names_its_sync_method() -> None:
    assert DjangoSessionStore.aget_session.__doc__.startswith("Async twin of :meth:`get_session`")


# --------------------------------------------------------------------------- contract subset


def test_saved_session_reads_back_equal(api: Api) -> None:
    session = core.Session.new("agent-1", metadata={"k": "v"}, tags=["a"])
    api.save_session(session)
    assert api.get_session(session.id) == session


def test_missing_session_raises_session_not_found(api: Api) -> None:
    with pytest.raises(NotFoundError) as info:
        api.get_session("ses_missing")
    assert info.value.code == "session_not_found"


def test_list_sessions_is_newest_created_first(api: Api) -> None:
    old = core.Session.new("agent-l", created_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    new = core.Session.new("agent-l", created_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    api.save_session(old)
    api.save_session(new)
    assert [s.id for s in api.list_sessions(agent_id="agent-l")] == [new.id, old.id]


def test_delete_session_removes_events_and_is_idempotent(api: Api, session: core.Session) -> None:
    api.append_event(message(session.id))
    api.delete_session(session.id)
    api.delete_session(session.id)
    assert api.get_events(session.id) == []
    assert api.get_latest_sequence(session.id) == 0


def test_active_run_is_the_running_one(api: Api, session: core.Session) -> None:
    run = core.Run.new(session.id, status="running")
    api.save_run(run)
    assert api.get_active_run(session.id) == run
    assert api.get_run(run.id) == run


def test_appends_get_consecutive_numbers_from_one(api: Api, session: core.Session) -> None:
    numbers = [api.append_event(message(session.id)).sequence_number for _ in range(3)]
    assert numbers == [1, 2, 3]


def test_appending_a_stored_id_returns_the_stored_event(api: Api, session: core.Session) -> None:
    first = api.append_event(message(session.id, "one"))
    again = api.append_event(message(session.id, "two", id=first.id))
    assert again == first
    assert api.get_latest_sequence(session.id) == 1


def test_append_events_are_contiguous_in_input_order(api: Api, session: core.Session) -> None:
    stored = api.append_events([message(session.id, str(n)) for n in range(4)])
    assert [(e.sequence_number, e.data["text"]) for e in stored] == [
        (1, "0"),
        (2, "1"),
        (3, "2"),
        (4, "3"),
    ]


def test_rejected_append_raises_validation_error_and_uses_no_number(
    api: Api, session: core.Session
) -> None:
    with pytest.raises(ValidationError):
        api.append_event(message(session.id, "nul\x00"))
    assert api.get_latest_sequence(session.id) == 0


def test_get_events_filters_by_type_after_and_limit(api: Api, session: core.Session) -> None:
    api.append_events(
        [message(session.id, "a"), core.Event.new("run_started", session.id)]
        + [message(session.id, c) for c in "bcd"]
    )
    events = api.get_events(session.id, type="message_sent", after=1, limit=2)
    assert [e.data["text"] for e in events] == ["b", "c"]


def test_flush_writes_session_run_and_events(api: Api) -> None:
    session = core.Session.new("agent-f")
    run = core.Run.new(session.id)
    api.flush(session=session, run=run, events=[message(session.id)])
    assert api.get_session(session.id) == session
    assert [e.sequence_number for e in api.get_events(session.id)] == [1]


def test_artifact_round_trip_and_duplicate_key(artifacts: Api) -> None:
    stored = artifacts.register(
        key="k/1",
        byte_size=3,
        checksum_sha256="0" * 64,
        storage_backend="local",
        storage_ref="/tmp/k1",
        session_id="ses_a",
    )
    assert artifacts.get_by_key("k/1") == stored
    assert artifacts.session_stats("ses_a") == {"artifact_count": 1, "total_bytes": 3}
    with pytest.raises(ValidationError):
        artifacts.register(
            key="k/1",
            byte_size=1,
            checksum_sha256="0" * 64,
            storage_backend="local",
            storage_ref="/tmp/k1",
        )
    artifacts.delete("k/1")
    assert artifacts.get_by_key("k/1") is None


# --------------------------------------------------------------------------- the loop stays free


def test_long_poll_twin_does_not_block_the_event_loop(
    store: DjangoSessionStore, session: core.Session
) -> None:
    async def scenario() -> list[core.Event]:
        waiting = asyncio.ensure_future(store.aget_events(session.id, wait_timeout_ms=20_000))
        await asyncio.sleep(0.1)  # the long-poll is now blocking its worker thread
        await store.aappend_event(message(session.id, "wake"))
        return await asyncio.wait_for(waiting, timeout=10)

    events = asyncio.run(scenario())
    assert [e.data["text"] for e in events] == ["wake"]


def test_concurrent_twin_appends_are_gap_free(
    store: DjangoSessionStore, session: core.Session
) -> None:
    async def scenario() -> list[core.Event]:
        return await asyncio.gather(
            *(store.aappend_event(message(session.id, str(n))) for n in range(12))
        )

    stored = asyncio.run(scenario())
    assert sorted(e.sequence_number for e in stored) == list(range(1, 13))


# --------------------------------------------------------------------------- stream_events


async def take(stream: Any, count: int) -> list[core.Event]:
    taken = []
    async for event in stream:
        taken.append(event)
        if len(taken) == count:
            break
    return taken


def test_stream_yields_stored_then_newly_committed_events(
    store: DjangoSessionStore, session: core.Session
) -> None:
    store.append_events([message(session.id, "old1"), message(session.id, "old2")])

    async def scenario() -> list[core.Event]:
        reader = asyncio.ensure_future(take(store.stream_events(session.id, after=1), 3))
        await asyncio.sleep(0.1)
        await store.aappend_event(message(session.id, "new1"))
        await store.aappend_event(message(session.id, "new2"))
        return await asyncio.wait_for(reader, timeout=10)

    events = asyncio.run(scenario())
    assert [(e.sequence_number, e.data["text"]) for e in events] == [
        (2, "old2"),
        (3, "new1"),
        (4, "new2"),
    ]


def test_stream_filters_by_run_and_type(store: DjangoSessionStore, session: core.Session) -> None:
    run = core.Run.new(session.id)
    store.append_events(
        [
            message(session.id, "no run"),
            core.Event.new("run_started", session.id, run_id=run.id),
            message(session.id, "in run", run_id=run.id),
        ]
    )
    stream = store.stream_events(session.id, run_id=run.id, type="message_sent")
    events = asyncio.run(take(stream, 1))
    assert [e.data["text"] for e in events] == ["in run"]


def test_stream_ends_when_the_consumer_closes_it(
    store: DjangoSessionStore, session: core.Session
) -> None:
    store.append_event(message(session.id))

    async def scenario() -> None:
        stream = store.stream_events(session.id, poll_timeout_ms=50)
        assert (await anext(stream)).sequence_number == 1
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

    asyncio.run(scenario())


def test_stream_rejects_an_invalid_poll_timeout(store: DjangoSessionStore) -> None:
    with pytest.raises(ValidationError):
        asyncio.run(anext(store.stream_events("ses_x", poll_timeout_ms=0)))


@pytest.mark.postgres_only
def test_twins_and_streams_leave_no_connection_open(
    store: DjangoSessionStore, session: core.Session
) -> None:
    # backend_connections leaves out the process's shared listener, which
    # keeps its connection for a while after the last waiter (test_listener.py).
    before = backend_connections()

    async def scenario() -> None:
        await asyncio.gather(*(store.aappend_event(message(session.id)) for _ in range(8)))
        await take(store.stream_events(session.id, poll_timeout_ms=100), 8)
        stream = store.stream_events(session.id, after=8, poll_timeout_ms=100)
        idle = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        idle.cancel()
        await asyncio.sleep(0.5)  # the cancelled poll finishes its 100 ms wait and closes

    asyncio.run(scenario())
    assert settled_backend_connections(before) == before
