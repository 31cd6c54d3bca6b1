"""RetentionPolicy: defaults, validation, dict conversion and settings (CONTRACT §7)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from agent_sessions.errors import ValidationError
from agent_sessions.retention import RetentionPolicy

LIMIT_FIELDS = [
    "max_session_age_days",
    "max_completed_session_age_days",
    "max_events_per_session",
    "max_total_events",
    "hard_delete_after_days",
]


def assert_invalid(info: pytest.ExceptionInfo[ValidationError], field: str) -> None:
    assert type(info.value) is ValidationError
    assert info.value.code == "validation_error"
    assert info.value.details["field"] == field
    assert field in info.value.message


# --------------------------------------------------------------------------- defaults


def test_defaults_match_the_contract() -> None:
    assert RetentionPolicy().to_dict() == {
        "max_session_age_days": None,
        "max_completed_session_age_days": 90,
        "max_events_per_session": None,
        "max_total_events": None,
        "hard_delete_after_days": 30,
        "archive_before_prune": False,
        "archive_store": None,
        "exempt_statuses": ["active", "paused"],
        "exempt_tags": ["pinned"],
        "prune_event_types_first": ["message_streamed", "token_usage_updated"],
        "batch_size": 100,
    }


def test_default_lists_are_not_shared_between_policies() -> None:
    first = RetentionPolicy()
    first.exempt_tags.append("keep")
    assert RetentionPolicy().exempt_tags == ["pinned"]


def test_default_policy_is_valid() -> None:
    RetentionPolicy().validate()


def test_construction_does_not_validate() -> None:
    policy = RetentionPolicy(batch_size=0)
    assert policy.batch_size == 0


# --------------------------------------------------------------------------- validate


@pytest.mark.parametrize("field", LIMIT_FIELDS)
@pytest.mark.parametrize("value", [None, 1, 365])
def test_limit_accepts_positive_integer_or_none(field: str, value: Any) -> None:
    RetentionPolicy(**{field: value}).validate()


@pytest.mark.parametrize("field", LIMIT_FIELDS)
@pytest.mark.parametrize(
    "value", [0, -1, 1.5, 30.0, "30", True, False], ids=["0", "-1", "1.5", "30.0", "str", "T", "F"]
)
def test_limit_rejects_non_positive_or_non_integer(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy(**{field: value}).validate()
    assert_invalid(info, field)


@pytest.mark.parametrize("value", [0, -5, None, 10.0, "100", True], ids=str)
def test_batch_size_must_be_positive_integer(value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy(batch_size=value).validate()
    assert_invalid(info, "batch_size")


@pytest.mark.parametrize("field", ["exempt_statuses", "exempt_tags", "prune_event_types_first"])
@pytest.mark.parametrize(
    "value", ["active", None, [1], ["a\x00"]], ids=["bare-str", "none", "int-item", "nul-item"]
)
def test_list_field_must_be_list_of_strings(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy(**{field: value}).validate()
    assert_invalid(info, field)


@pytest.mark.parametrize("field", ["exempt_statuses", "exempt_tags", "prune_event_types_first"])
def test_list_field_may_be_empty(field: str) -> None:
    empty: Any = []
    RetentionPolicy(**{field: empty}).validate()


def test_exempt_statuses_must_be_session_statuses() -> None:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy(exempt_statuses=["active", "running"]).validate()
    assert_invalid(info, "exempt_statuses")


def test_prune_event_types_first_must_be_event_types() -> None:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy(prune_event_types_first=["message_streamed", "chatter"]).validate()
    assert_invalid(info, "prune_event_types_first")


def test_exempt_tags_may_be_any_strings() -> None:
    RetentionPolicy(exempt_tags=["pinned", "legal-hold", "日本"]).validate()


def test_archive_before_prune_needs_archive_store() -> None:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy(archive_before_prune=True).validate()
    assert_invalid(info, "archive_store")


@pytest.mark.parametrize("store", ["/var/archive", Path("/var/archive")], ids=["str", "path"])
def test_archive_store_may_be_str_or_path(store: Any) -> None:
    RetentionPolicy(archive_before_prune=True, archive_store=store).validate()


@pytest.mark.parametrize("store", ["", 42, ["/tmp"]], ids=["empty", "int", "list"])
def test_archive_store_must_be_a_path(store: Any) -> None:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy(archive_store=store).validate()
    assert_invalid(info, "archive_store")


@pytest.mark.parametrize("value", [1, "yes", None])
def test_archive_before_prune_must_be_bool(value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy(archive_before_prune=value, archive_store="/tmp").validate()
    assert_invalid(info, "archive_before_prune")


def test_validate_does_not_change_the_policy() -> None:
    policy = RetentionPolicy(exempt_tags=("a",))  # type: ignore[arg-type]
    before = dataclasses.replace(policy)
    policy.validate()
    assert policy == before


# --------------------------------------------------------------------------- to_dict / from_dict


def test_to_dict_returns_archive_store_as_string() -> None:
    data = RetentionPolicy(archive_store=Path("/var/archive")).to_dict()
    assert data["archive_store"] == "/var/archive"


def test_to_dict_copies_lists() -> None:
    policy = RetentionPolicy()
    policy.to_dict()["exempt_tags"].append("x")
    assert policy.exempt_tags == ["pinned"]


def test_from_dict_round_trips() -> None:
    policy = RetentionPolicy(max_events_per_session=500, exempt_tags=["keep"], batch_size=7)
    assert RetentionPolicy.from_dict(policy.to_dict()) == policy


def test_from_dict_fills_missing_fields_with_defaults() -> None:
    assert RetentionPolicy.from_dict({"batch_size": 10}) == RetentionPolicy(batch_size=10)


def test_from_dict_rejects_unknown_keys_naming_them() -> None:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy.from_dict({"max_age": 3, "batch": 1})
    assert info.value.details["fields"] == ["batch", "max_age"]
    assert info.value.details["field"] == "batch"
    assert "max_age" in info.value.message


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(ValidationError):
        RetentionPolicy.from_dict(["batch_size"])  # type: ignore[arg-type]


def test_from_dict_copies_lists_from_the_input() -> None:
    tags = ["keep"]
    policy = RetentionPolicy.from_dict({"exempt_tags": tags})
    tags.append("x")
    assert policy.exempt_tags == ["keep"]


def test_from_dict_does_not_validate() -> None:
    assert RetentionPolicy.from_dict({"batch_size": 0}).batch_size == 0


# --------------------------------------------------------------------------- from_settings


def test_from_settings_without_agent_sessions_setting_gives_defaults(settings: Any) -> None:
    if hasattr(settings, "AGENT_SESSIONS"):
        del settings.AGENT_SESSIONS
    assert RetentionPolicy.from_settings() == RetentionPolicy()


def test_from_settings_without_retention_key_gives_defaults(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"QUERY_MAX_LIMIT": 500}
    assert RetentionPolicy.from_settings() == RetentionPolicy()


def test_from_settings_reads_the_retention_dict(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"RETENTION": {"max_events_per_session": 1000, "exempt_tags": []}}
    policy = RetentionPolicy.from_settings()
    assert (policy.max_events_per_session, policy.exempt_tags) == (1000, [])
    assert policy.batch_size == 100


def test_from_settings_overrides_win_over_settings(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"RETENTION": {"batch_size": 10, "hard_delete_after_days": 7}}
    policy = RetentionPolicy.from_settings(batch_size=20, max_total_events=None)
    assert (policy.batch_size, policy.hard_delete_after_days) == (20, 7)


def test_from_settings_rejects_unknown_setting_key(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"RETENTION": {"max_sesion_age_days": 3}}
    with pytest.raises(ValidationError) as info:
        RetentionPolicy.from_settings()
    assert info.value.details["field"] == "max_sesion_age_days"


def test_from_settings_rejects_unknown_override(settings: Any) -> None:
    settings.AGENT_SESSIONS = {}
    with pytest.raises(ValidationError) as info:
        RetentionPolicy.from_settings(dry_run=True)
    assert info.value.details["field"] == "dry_run"


def test_from_settings_validates_the_result(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"RETENTION": {"batch_size": 0}}
    with pytest.raises(ValidationError) as info:
        RetentionPolicy.from_settings()
    assert_invalid(info, "batch_size")


def test_from_settings_validates_overrides(settings: Any) -> None:
    settings.AGENT_SESSIONS = {}
    with pytest.raises(ValidationError) as info:
        RetentionPolicy.from_settings(archive_before_prune=True)
    assert_invalid(info, "archive_store")


@pytest.mark.parametrize(
    ("config", "field"),
    [(["RETENTION"], "AGENT_SESSIONS"), ({"RETENTION": [("batch_size", 1)]}, "RETENTION")],
    ids=["agent-sessions-list", "retention-list"],
)
def test_from_settings_rejects_non_dict_settings(settings: Any, config: Any, field: str) -> None:
    settings.AGENT_SESSIONS = config
    with pytest.raises(ValidationError) as info:
        RetentionPolicy.from_settings()
    assert info.value.details["field"] == field


def test_from_settings_does_not_share_lists_with_settings(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"RETENTION": {"exempt_tags": ["keep"]}}
    policy = RetentionPolicy.from_settings()
    policy.exempt_tags.append("x")
    assert settings.AGENT_SESSIONS["RETENTION"]["exempt_tags"] == ["keep"]
