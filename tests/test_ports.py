"""The ports module: Protocols are importable and runtime-checkable; result types behave."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from agent_sessions import ports
from agent_sessions.core import Event, Run, Session
from agent_sessions.ports import (
    ArtifactRegistry,
    EventPage,
    Maintenance,
    MaintenanceReport,
    QueryAPI,
    RunPage,
    SessionPage,
    SessionStore,
)

PROTOCOL_METHODS = {
    SessionStore: [
        "save_session",
        "get_session",
        "list_sessions",
        "delete_session",
        "save_run",
        "get_run",
        "list_runs",
        "get_active_run",
        "append_event",
        "append_event_with_sequence",
        "append_events",
        "flush",
        "get_events",
        "get_latest_sequence",
    ],
    ArtifactRegistry: ["register", "get_by_key", "list_by_session", "session_stats", "delete"],
    QueryAPI: [
        "search_sessions",
        "get_session_stats",
        "search_runs",
        "get_usage_summary",
        "get_cost_summary",
        "search_events",
        "count_events",
        "export_session",
        "search_text",
    ],
    Maintenance: [
        "execute",
        "soft_delete_expired_sessions",
        "hard_delete_expired_sessions",
        "prune_session_events",
        "clean_orphaned_artifacts",
        "restore",
        "health_check",
    ],
}


@pytest.mark.parametrize("protocol", list(PROTOCOL_METHODS), ids=lambda p: p.__name__)
def test_protocol_declares_the_contract_methods(protocol: Any) -> None:
    for name in PROTOCOL_METHODS[protocol]:
        assert callable(getattr(protocol, name)), name


@pytest.mark.parametrize("protocol", list(PROTOCOL_METHODS), ids=lambda p: p.__name__)
def test_protocol_is_runtime_checkable(protocol: Any) -> None:
    stub = type("Stub", (), {name: lambda self: None for name in PROTOCOL_METHODS[protocol]})
    assert isinstance(stub(), protocol)
    assert not isinstance(object(), protocol)


def test_result_types_are_reexported_from_ports() -> None:
    assert {"SessionPage", "RunPage", "EventPage", "MaintenanceReport"} <= set(ports.__all__)


def test_session_page_holds_sessions_cursor_and_total() -> None:
    session = Session.new("agent-1")
    page = SessionPage(sessions=[session], cursor=None, total_count=1)
    assert (page.sessions, page.cursor, page.total_count) == ([session], None, 1)


@pytest.mark.parametrize(
    "page",
    [
        SessionPage([], "c", None),
        RunPage([Run.new("ses_1")], None),
        EventPage([Event.new("run_started", "ses_1")], "c"),
    ],
    ids=["session", "run", "event"],
)
def test_pages_are_frozen(page: object) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.cursor = "other"  # type: ignore[attr-defined]


def test_maintenance_report_counts_default_to_zero() -> None:
    report = MaintenanceReport()
    assert report.to_dict() == {
        "sessions_soft_deleted": 0,
        "sessions_hard_deleted": 0,
        "events_pruned": 0,
        "artifacts_cleaned": 0,
        "orphaned_sequences_cleaned": 0,
        "duration_ms": 0,
        "errors": [],
    }


def test_maintenance_report_to_dict_is_json_ready_and_copies_errors() -> None:
    report = MaintenanceReport(events_pruned=3, errors=["prune failed"])
    data = report.to_dict()
    data["errors"].append("x")
    assert json.loads(json.dumps(report.to_dict()))["errors"] == ["prune failed"]


def test_maintenance_report_ok_when_no_errors() -> None:
    assert MaintenanceReport().ok
    assert not MaintenanceReport(errors=["boom"]).ok


def test_maintenance_report_errors_are_not_shared() -> None:
    MaintenanceReport().errors.append("x")
    assert MaintenanceReport().errors == []
