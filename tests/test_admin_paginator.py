"""EstimatedCountPaginator: a changelist count whose cost does not grow with the table."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models.expressions import RawSQL
from django.test.utils import CaptureQueriesContext

from agent_sessions import models as m
from agent_sessions.admin.paginator import EstimatedCountPaginator
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db


class SmallCapPaginator(EstimatedCountPaginator):
    count_cap = 5
    max_pages = 3


def events_ordered() -> object:
    return m.Event.objects.order_by("session_id", "sequence_number")


def test_counts_exactly_up_to_the_cap() -> None:
    EventFactory.create_batch(5)

    paginator = SmallCapPaginator(events_ordered(), 2)

    assert paginator.count == 5
    assert paginator.is_exact


def test_counts_above_the_cap_stop_at_cap_plus_one() -> None:
    EventFactory.create_batch(8)

    paginator = SmallCapPaginator(events_ordered().filter(schema_version=1), 2)
    with CaptureQueriesContext(connection) as queries:
        count = paginator.count

    assert count == 6
    assert paginator.is_capped
    counts = [q["sql"].upper() for q in queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1
    assert "LIMIT 6" in counts[0]


def test_pages_stop_at_max_pages() -> None:
    EventFactory.create_batch(8)

    paginator = SmallCapPaginator(events_ordered().filter(schema_version=1), 1)

    assert paginator.num_pages == 3
    assert list(paginator.page_range) == [1, 2, 3]


def test_an_empty_list_has_one_empty_page() -> None:
    paginator = SmallCapPaginator(events_ordered(), 2)

    assert (paginator.count, paginator.num_pages) == (0, 1)
    assert list(paginator.page(1)) == []


@pytest.mark.postgres_only
def test_an_unfiltered_big_table_shows_the_planner_estimate() -> None:
    EventFactory.create_batch(12)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE asm_events")

    paginator = SmallCapPaginator(events_ordered(), 2)
    with CaptureQueriesContext(connection) as queries:
        count = paginator.count

    assert count == 12
    assert paginator.is_estimate
    assert not any("COUNT(" in q["sql"].upper() for q in queries)


@pytest.mark.postgres_only
def test_a_count_slower_than_the_timeout_reports_more_than_the_cap() -> None:
    EventFactory.create_batch(2)
    slow = events_ordered().filter(
        id__in=RawSQL("SELECT id FROM asm_events, pg_sleep(0.2) AS nap", [])
    )

    paginator = SmallCapPaginator(slow, 2)
    paginator.count_timeout_ms = 20

    assert paginator.count == 6
    assert paginator.is_capped
    assert m.Event.objects.count() == 2, "the connection is usable after the cancelled count"
