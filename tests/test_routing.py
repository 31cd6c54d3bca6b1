"""Where reads go behind a router: the write database when a read must be consistent (#18).

The real primary and standby are exercised by tests/test_replica_router.py;
these check the choice itself with a router whose read alias is a name only.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from agent_sessions import models as m
from agent_sessions.db import db_for_read
from agent_sessions.routing import read_from_primary, reads_pinned


class SplitRouter:
    """Writes to ``default``; reads to ``standby`` (never connected to here)."""

    def db_for_read(self, model: type, **hints: Any) -> str:
        return "standby"

    def db_for_write(self, model: type, **hints: Any) -> str:
        return "default"


@pytest.fixture
def split_router() -> Iterator[None]:
    with override_settings(DATABASE_ROUTERS=[f"{__name__}.SplitRouter"]):
        yield


def read_alias(**kwargs: Any) -> str:
    return db_for_read(None, m.Event, **kwargs)


@pytest.mark.django_db(transaction=True)
def test_plain_reads_follow_the_routers_read_database(split_router: None) -> None:
    assert read_alias() == "standby"


@pytest.mark.django_db(transaction=True)
def test_consistent_reads_go_to_the_write_database(split_router: None) -> None:
    assert read_alias(consistent=True) == "default"


@pytest.mark.django_db(transaction=True)
def test_an_explicit_alias_wins_over_everything(split_router: None) -> None:
    with read_from_primary():
        assert db_for_read("standby", m.Event, consistent=True) == "standby"


@pytest.mark.django_db(transaction=True)
def test_reads_inside_atomic_on_the_write_database_stay_there(split_router: None) -> None:
    with transaction.atomic(using="default"):
        assert read_alias() == "default"
    assert read_alias() == "standby"


@pytest.mark.django_db(transaction=True)
def test_read_from_primary_pins_the_block_and_nests(split_router: None) -> None:
    with read_from_primary():
        with read_from_primary():
            assert read_alias() == "default"
        assert read_alias() == "default"
    assert read_alias() == "standby"
    assert not reads_pinned()


def test_the_pin_is_released_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), read_from_primary():
        raise RuntimeError("boom")
    assert not reads_pinned()


def test_the_pin_does_not_leak_into_other_threads() -> None:
    seen: list[bool] = []
    with read_from_primary():
        thread = threading.Thread(target=lambda: seen.append(reads_pinned()))
        thread.start()
        thread.join()
    assert seen == [False]


def test_async_with_pins_the_task_only() -> None:
    async def pinned() -> bool:
        async with read_from_primary():
            await asyncio.sleep(0)
            return reads_pinned()

    async def both() -> list[bool]:
        results = await asyncio.gather(pinned(), asyncio.sleep(0, result=reads_pinned()))
        return [*results, reads_pinned()]

    assert asyncio.run(both()) == [True, False, False]


def test_as_a_decorator_each_call_is_pinned() -> None:
    @read_from_primary()
    def sync_call() -> bool:
        return reads_pinned()

    @read_from_primary()
    async def async_call() -> bool:
        await asyncio.sleep(0)
        return reads_pinned()

    assert sync_call() is True
    assert asyncio.run(async_call()) is True
    assert not reads_pinned()
