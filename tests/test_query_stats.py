"""DjangoQueryAPI statistics, usage and cost summaries, and session export (CONTRACT §6)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent_sessions.errors import NotFoundError
from agent_sessions.query import DjangoQueryAPI
from tests.factories import ArtifactFactory, EventFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

USAGE_KEYS = {"total_input_tokens", "total_output_tokens", "total_tokens", "run_count"}
COST_KEYS = {"total_cost_usd", "run_count", "by_provider", "by_model", "unmapped_runs"}


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def usage(input_tokens: int, output_tokens: int, **more: Any) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        **more,
    }


def priced_run(provider: str | None, model: str | None, **fields: Any) -> Any:
    metadata = {} if model is None else {"model": model}
    return RunFactory(provider=provider, provider_metadata=metadata, **fields)


# --------------------------------------------------------------------------- session stats


def test_session_stats_counts_events_runs_tokens_and_statuses(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory()
    RunFactory(
        session_id=session.id, status="completed", provider="claude", token_usage=usage(10, 5)
    )
    RunFactory(session_id=session.id, status="completed", provider="amp", token_usage=usage(1, 2))
    RunFactory(session_id=session.id, status="failed", provider=None, token_usage={})
    for n in range(3):
        EventFactory(session_id=session.id, sequence_number=n + 1, timestamp=at(n))
    RunFactory(token_usage=usage(1000, 1000))
    EventFactory(timestamp=at(-50))
    assert query_api.get_session_stats(session.id) == {
        "event_count": 3,
        "run_count": 3,
        "token_totals": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18},
        "providers_used": ["amp", "claude"],
        "first_event_at": at(0),
        "last_event_at": at(2),
        "status_counts": {"completed": 2, "failed": 1},
    }


def test_session_stats_of_an_empty_session_are_zero(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory()
    assert query_api.get_session_stats(session.id) == {
        "event_count": 0,
        "run_count": 0,
        "token_totals": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
        "providers_used": [],
        "first_event_at": None,
        "last_event_at": None,
        "status_counts": {},
    }


def test_session_stats_work_for_soft_deleted_sessions(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory(deleted_at=at(0))
    EventFactory(session_id=session.id)
    assert query_api.get_session_stats(session.id)["event_count"] == 1


def test_session_stats_of_a_missing_session_raise_not_found(query_api: DjangoQueryAPI) -> None:
    with pytest.raises(NotFoundError) as exc:
        query_api.get_session_stats("ses_missing")
    assert exc.value.code == "session_not_found"


def test_session_stats_event_times_are_aware_utc(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory()
    EventFactory(session_id=session.id, timestamp=at(0))
    stats = query_api.get_session_stats(session.id)
    assert stats["first_event_at"].tzinfo is not None
    assert stats["first_event_at"] == at(0)


# --------------------------------------------------------------------------- usage


def test_usage_summary_totals_and_groups_by_provider(query_api: DjangoQueryAPI) -> None:
    RunFactory(provider="claude", token_usage=usage(100, 50))
    RunFactory(provider="claude", token_usage=usage(10, 5))
    RunFactory(provider="codex", token_usage=usage(7, 3))
    RunFactory(provider=None, token_usage=usage(1, 1))
    assert query_api.get_usage_summary() == {
        "total_input_tokens": 118,
        "total_output_tokens": 59,
        "total_tokens": 177,
        "run_count": 4,
        "by_provider": {
            "claude": {
                "input_tokens": 110,
                "output_tokens": 55,
                "total_tokens": 165,
                "run_count": 2,
            },
            "codex": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10, "run_count": 1},
            "unknown": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2, "run_count": 1},
        },
    }


def test_usage_summary_of_no_runs_is_zero(query_api: DjangoQueryAPI) -> None:
    assert query_api.get_usage_summary() == {
        "total_input_tokens": 0,
        "total_output_tokens": 0,
        "total_tokens": 0,
        "run_count": 0,
        "by_provider": {},
    }


def test_usage_summary_skips_values_that_are_not_numbers(query_api: DjangoQueryAPI) -> None:
    RunFactory(provider="claude", token_usage={"input_tokens": "12", "output_tokens": True})
    RunFactory(provider="claude", token_usage={"input_tokens": {"n": 1}, "output_tokens": [3]})
    RunFactory(provider="claude", token_usage={"input_tokens": 4, "output_tokens": None})
    summary = query_api.get_usage_summary()
    assert summary["total_input_tokens"] == 4
    assert summary["total_output_tokens"] == 0
    assert summary["run_count"] == 3


def test_summaries_count_a_token_value_beyond_float_range_as_missing(
    query_api: DjangoQueryAPI,
) -> None:
    run = RunFactory(provider="claude", token_usage=usage(1, 2))
    with connection.cursor() as cursor:  # as another application could write it
        cursor.execute(
            "UPDATE asm_runs SET token_usage = "
            """'{"input_tokens": 1e400, "output_tokens": 2, "total_tokens": 1e400}' """
            "WHERE id = %s",
            [run.id],
        )
    summary = query_api.get_usage_summary()
    assert (summary["total_input_tokens"], summary["total_output_tokens"]) == (0, 2)
    cost = query_api.get_cost_summary()
    assert cost["by_model"]["unknown"]["output_tokens"] == 2
    assert query_api.get_session_stats(run.session_id)["token_totals"]["output_tokens"] == 2


def test_usage_summary_filters_by_session_provider_and_started_bounds(
    query_api: DjangoQueryAPI,
) -> None:
    session = SessionFactory()
    for n in range(4):
        RunFactory(
            session_id=session.id, provider="claude", started_at=at(n), token_usage=usage(1, 0)
        )
    RunFactory(session_id=session.id, provider="codex", started_at=at(1), token_usage=usage(9, 0))
    RunFactory(provider="claude", started_at=at(1), token_usage=usage(9, 0))
    summary = query_api.get_usage_summary(
        session_id=session.id, provider="claude", since=at(1), until=at(2)
    )
    assert (summary["total_input_tokens"], summary["run_count"]) == (2, 2)
    assert set(summary) == USAGE_KEYS | {"by_provider"}


def test_usage_summary_is_one_aggregate_query(query_api: DjangoQueryAPI) -> None:
    for _ in range(5):
        RunFactory(provider="claude", token_usage=usage(1, 1))
    with CaptureQueriesContext(connection) as queries:
        query_api.get_usage_summary()
    (query,) = queries.captured_queries
    assert "GROUP BY" in query["sql"].upper()
    assert "SUM(" in query["sql"].upper()


# --------------------------------------------------------------------------- cost


def test_cost_summary_prices_tokens_by_exact_model(query_api: DjangoQueryAPI) -> None:
    priced_run("claude", "claude-opus-4-6", token_usage=usage(1000, 100))
    summary = query_api.get_cost_summary()
    assert set(summary) == COST_KEYS
    assert summary["total_cost_usd"] == pytest.approx(1000 * 15e-6 + 100 * 75e-6)
    assert summary["by_model"] == {
        "claude-opus-4-6": {
            "cost_usd": pytest.approx(0.0225),
            "input_tokens": 1000,
            "output_tokens": 100,
        }
    }
    assert summary["by_provider"] == {"claude": {"cost_usd": pytest.approx(0.0225), "run_count": 1}}
    assert (summary["run_count"], summary["unmapped_runs"]) == (1, 0)


def test_cost_summary_prices_cache_tokens(query_api: DjangoQueryAPI) -> None:
    priced_run(
        "claude",
        "claude-sonnet-4-5",
        token_usage=usage(0, 0, cache_read_tokens=1000, cache_creation_tokens=100),
    )
    assert query_api.get_cost_summary()["total_cost_usd"] == pytest.approx(
        1000 * 0.3e-6 + 100 * 3.75e-6
    )


def test_cost_summary_cache_tokens_default_to_the_input_rate(query_api: DjangoQueryAPI) -> None:
    priced_run(
        "codex", "o3", token_usage=usage(0, 0, cache_read_tokens=10, cache_creation_tokens=5)
    )
    assert query_api.get_cost_summary()["total_cost_usd"] == pytest.approx(15 * 10e-6)


def test_cost_summary_uses_the_longest_model_prefix(query_api: DjangoQueryAPI) -> None:
    priced_run("codex", "gpt-4o-mini-2024-07-18", token_usage=usage(1000, 1000))
    summary = query_api.get_cost_summary()
    assert summary["total_cost_usd"] == pytest.approx(1000 * 0.15e-6 + 1000 * 0.6e-6)
    assert list(summary["by_model"]) == ["gpt-4o-mini-2024-07-18"]


def test_cost_summary_falls_back_to_the_provider_default(query_api: DjangoQueryAPI) -> None:
    priced_run("amp", "amp-something", token_usage=usage(1000, 1000))
    priced_run("claude", None, token_usage=usage(1000, 0))
    summary = query_api.get_cost_summary()
    assert summary["by_provider"]["amp"]["cost_usd"] == pytest.approx(1000 * 3e-6 + 1000 * 15e-6)
    assert summary["by_provider"]["claude"]["cost_usd"] == pytest.approx(1000 * 3e-6)
    assert summary["by_model"]["unknown"]["input_tokens"] == 1000


def test_cost_summary_stored_cost_wins_even_when_zero(query_api: DjangoQueryAPI) -> None:
    priced_run("claude", "claude-opus-4-6", cost_usd=0.5, token_usage=usage(10**6, 10**6))
    priced_run("claude", "claude-opus-4-6", cost_usd=0.0, token_usage=usage(10**6, 10**6))
    summary = query_api.get_cost_summary()
    assert summary["total_cost_usd"] == pytest.approx(0.5)
    assert summary["by_model"]["claude-opus-4-6"]["input_tokens"] == 2 * 10**6
    assert summary["unmapped_runs"] == 0


def test_cost_summary_stored_cost_counts_for_unpriced_providers(
    query_api: DjangoQueryAPI,
) -> None:
    priced_run("gemini", "gemini-pro", cost_usd=0.25)
    summary = query_api.get_cost_summary()
    assert (summary["total_cost_usd"], summary["unmapped_runs"]) == (0.25, 0)


def test_cost_summary_counts_unmapped_runs(query_api: DjangoQueryAPI) -> None:
    priced_run("gemini", "gemini-pro", token_usage=usage(100, 100))
    priced_run(None, None, token_usage=usage(100, 100))
    priced_run("claude", "claude-haiku-4-5", token_usage=usage(1000, 0))
    summary = query_api.get_cost_summary()
    assert summary["unmapped_runs"] == 2
    assert summary["run_count"] == 3
    assert summary["total_cost_usd"] == pytest.approx(1000 * 0.8e-6)
    assert summary["by_provider"]["unknown"] == {"cost_usd": 0.0, "run_count": 1}
    assert summary["by_provider"]["gemini"] == {"cost_usd": 0.0, "run_count": 1}


def test_cost_summary_takes_a_pricing_table_argument(query_api: DjangoQueryAPI) -> None:
    priced_run("gemini", "gemini-pro", token_usage=usage(10, 20))
    table = {"gemini": {"default": {"input": 1.0, "output": 2.0}}}
    summary = query_api.get_cost_summary(pricing_table=table)
    assert (summary["total_cost_usd"], summary["unmapped_runs"]) == (50.0, 0)


def test_cost_summary_pricing_table_setting_replaces_the_default(
    query_api: DjangoQueryAPI, settings: Any
) -> None:
    settings.AGENT_SESSIONS = {"PRICING_TABLE": {"claude": {"default": {"input": 1, "output": 1}}}}
    priced_run("claude", "claude-opus-4-6", token_usage=usage(3, 4))
    priced_run("codex", "o3", token_usage=usage(3, 4))
    summary = query_api.get_cost_summary()
    assert summary["total_cost_usd"] == 7.0
    assert summary["unmapped_runs"] == 1


def test_cost_summary_filters_by_agent_session_provider_and_time(
    query_api: DjangoQueryAPI,
) -> None:
    mine = SessionFactory(agent_id="agent-a")
    other = SessionFactory(agent_id="agent-b")
    priced_run("claude", None, session_id=mine.id, cost_usd=1.0, started_at=at(0))
    priced_run("claude", None, session_id=mine.id, cost_usd=2.0, started_at=at(5))
    priced_run("codex", None, session_id=mine.id, cost_usd=4.0, started_at=at(0))
    priced_run("claude", None, session_id=other.id, cost_usd=8.0, started_at=at(0))
    assert query_api.get_cost_summary(agent_id="agent-a")["total_cost_usd"] == 7.0
    assert query_api.get_cost_summary(session_id=other.id)["total_cost_usd"] == 8.0
    assert query_api.get_cost_summary(agent_id="agent-a", provider="claude", until=at(1))[
        "total_cost_usd"
    ] == pytest.approx(1.0)
    assert query_api.get_cost_summary(since=at(5))["total_cost_usd"] == 2.0


def test_cost_summary_is_one_aggregate_query(query_api: DjangoQueryAPI) -> None:
    for model in ("o3", "o3-mini", "gpt-4o"):
        priced_run("codex", model, token_usage=usage(1, 1))
    with CaptureQueriesContext(connection) as queries:
        query_api.get_cost_summary()
    (query,) = queries.captured_queries
    assert "GROUP BY" in query["sql"].upper()


# --------------------------------------------------------------------------- export


def test_export_session_returns_the_session_runs_and_events(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory()
    late = RunFactory(session_id=session.id, started_at=at(5))
    early = RunFactory(session_id=session.id, started_at=at(1))
    second = EventFactory(session_id=session.id, sequence_number=2)
    first = EventFactory(session_id=session.id, sequence_number=1)
    RunFactory()
    EventFactory()
    export = query_api.export_session(session.id)
    assert export == {
        "session": session.to_domain(),
        "runs": [early.to_domain(), late.to_domain()],
        "events": [first.to_domain(), second.to_domain()],
    }


def test_export_session_adds_live_artifacts_when_asked(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory()
    older = ArtifactFactory(session_id=session.id, created_at=at(0), metadata={"a": 1})
    newer = ArtifactFactory(session_id=session.id, created_at=at(1))
    ArtifactFactory(session_id=session.id, deleted_at=at(2))
    artifacts = query_api.export_session(session.id, include_artifacts=True)["artifacts"]
    assert [a["id"] for a in artifacts] == [older.id, newer.id]
    assert artifacts[0]["metadata"] == {"a": 1}
    assert artifacts[0]["created_at"] == at(0)
    assert set(artifacts[0]) == {
        "id",
        "session_id",
        "run_id",
        "key",
        "content_type",
        "byte_size",
        "checksum_sha256",
        "storage_backend",
        "storage_ref",
        "metadata",
        "created_at",
        "deleted_at",
    }


def test_export_session_of_a_soft_deleted_session(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory(deleted_at=at(0))
    assert query_api.export_session(session.id)["session"].deleted_at == at(0)


def test_export_session_of_a_missing_session_raises_not_found(query_api: DjangoQueryAPI) -> None:
    with pytest.raises(NotFoundError) as exc:
        query_api.export_session("ses_missing", include_artifacts=True)
    assert exc.value.code == "session_not_found"
