"""System checks explain a bad AGENT_SESSIONS setting (CONTRACT §10)."""

from __future__ import annotations

from typing import Any

import pytest

from agent_sessions.checks import check_settings


def _ids(settings: Any, value: Any) -> list[str]:
    settings.AGENT_SESSIONS = value
    return [message.id for message in check_settings()]


def test_absent_or_empty_setting_is_fine(settings: Any) -> None:
    del settings.AGENT_SESSIONS
    assert check_settings() == []
    assert _ids(settings, {}) == []


def test_a_complete_valid_setting_is_fine(settings: Any) -> None:
    value = {
        "RETENTION": {"max_completed_session_age_days": 30, "batch_size": 500},
        "QUERY_DEFAULT_LIMIT": 20,
        "QUERY_EVENT_DEFAULT_LIMIT": 200,
        "QUERY_MAX_LIMIT": 500,
        "PRICING_TABLE": {"acme": {"default": {"input": 1e-6, "output": 2e-6}}},
    }
    assert _ids(settings, value) == []


def test_setting_must_be_a_dict(settings: Any) -> None:
    assert _ids(settings, ["RETENTION"]) == ["agent_sessions.E001"]


def test_unknown_keys_are_reported_by_name(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"RETENTON": {}}
    (message,) = check_settings()
    assert message.id == "agent_sessions.E002"
    assert "RETENTON" in message.msg


@pytest.mark.parametrize(
    "retention",
    [
        {"max_completed_session_age_days": 0},
        {"max_events_per_session": -5},
        {"batch_size": "100"},
        {"hard_delete_after_days": 1.5},
        {"archive_before_prune": True},
        {"no_such_field": 1},
    ],
)
def test_retention_values_the_policy_rejects_are_reported(settings: Any, retention: Any) -> None:
    assert _ids(settings, {"RETENTION": retention}) == ["agent_sessions.E003"]


@pytest.mark.parametrize("limit", [0, -1, "50", None, True])
def test_query_limits_must_be_positive_integers(settings: Any, limit: Any) -> None:
    assert _ids(settings, {"QUERY_DEFAULT_LIMIT": limit}) == ["agent_sessions.E004"]


def test_a_default_limit_above_the_cap_is_reported(settings: Any) -> None:
    value = {"QUERY_EVENT_DEFAULT_LIMIT": 2000}
    assert _ids(settings, value) == ["agent_sessions.E005"]
    assert _ids(settings, {"QUERY_MAX_LIMIT": 10}) == ["agent_sessions.E005", "agent_sessions.E005"]


@pytest.mark.parametrize(
    "table",
    [
        "cheap",
        {"claude": {"default": {"input": 1e-6}}},
        {"claude": {"models": {"x": {"input": -1, "output": 1}}}},
        {"claude": {"default": {"input": 1, "output": 1, "bogus": 1}}},
        {"claude": {"rates": {}}},
    ],
)
def test_malformed_pricing_tables_are_reported(settings: Any, table: Any) -> None:
    assert _ids(settings, {"PRICING_TABLE": table}) == ["agent_sessions.E006"]


def test_manage_py_check_surfaces_the_errors(settings: Any) -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.AGENT_SESSIONS = {"QUERY_MAX_LIMIT": 0}
    with pytest.raises(SystemCheckError, match=r"agent_sessions\.E004"):
        call_command("check")


def test_a_bad_limit_is_a_clear_configuration_error_at_query_time(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from agent_sessions.conf import app_settings

    settings.AGENT_SESSIONS = {"QUERY_DEFAULT_LIMIT": "x"}
    with pytest.raises(ImproperlyConfigured, match="QUERY_DEFAULT_LIMIT"):
        _ = app_settings.QUERY_DEFAULT_LIMIT


@pytest.mark.parametrize(
    "redaction",
    [[], {"enabled": "yes"}, {"patterns": ["("]}, {"replacement": 1}, {"scan": True}],
)
def test_invalid_redaction_settings_are_reported(settings: Any, redaction: Any) -> None:
    assert _ids(settings, {"REDACTION": redaction}) == ["agent_sessions.E050"]


def test_valid_redaction_settings_are_fine(settings: Any) -> None:
    redaction = {"enabled": True, "patterns": ["x\\d+"], "replacement": "categorized"}
    assert _ids(settings, {"REDACTION": redaction, "SHAPE_WARNINGS": False}) == []


def test_shape_warnings_must_be_a_bool(settings: Any) -> None:
    assert _ids(settings, {"SHAPE_WARNINGS": "no"}) == ["agent_sessions.E051"]
