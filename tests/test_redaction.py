"""agent_sessions.redaction: the default patterns, the scan rules and the configuration (§12)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from agent_sessions.redaction import (
    DEFAULT_PATTERNS,
    FIELDS_WITHOUT_DEEP_SCAN,
    MAX_DEPTH,
    NEVER_SCANNED_TYPES,
    compile_config,
    redact,
    redact_event_fields,
    redaction_problem,
    settings_config,
)

ENABLED = compile_config({"enabled": True})
CATEGORIZED = compile_config({"enabled": True, "replacement": "categorized"})

# Built from pieces so that no complete credential sits in the source.
B64 = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3kL5"
JWT = (
    "eyJ" + "hbGciOiJIUzI1NiJ9" + "." + "eyJzdWIiOiIxMjM0NTY3ODkwIn0" + "." + "SflKxwRJSMeKKF2QT4fw"
)

# category → (a string containing that secret, a near miss that is not one)
CASES: dict[str, tuple[str, str]] = {
    "aws_access_key": ("key AKIA" + "IOSFODNN7EXAMPL1" + " used", "key AKIA" + "IOSFODNN7EXAM"),
    "aws_secret_key": (
        "aws_secret_access_key = " + B64[:40],
        "the aws secret access key lives in the vault",
    ),
    "gcp_api_key": ("AIza" + B64[:35], "AIza" + B64[:30]),
    "anthropic_key": ("sk-ant-api03-" + B64[:40], "sk-ant-api03-" + B64[:5]),
    "openai_key": ("sk-proj-" + B64[:30], "sk-proj-" + B64[:10]),
    "openai_legacy_key": ("sk-" + B64[:48], "sk-" + B64[:30]),
    "github_pat": ("ghp_" + B64[:36], "ghp_" + B64[:30]),
    "github_oauth": ("gho_" + B64[:36], "gho_" + B64[:30]),
    "github_app": ("ghs_" + B64[:36], "ghs_" + B64[:30]),
    "github_refresh": ("ghr_" + B64[:36], "ghr_" + B64[:30]),
    "github_fine_pat": ("github_pat_" + B64[:30], "github_pat_" + B64[:12]),
    "gitlab_token": ("glpat-" + B64[:20], "glpat-" + B64[:10]),
    "jwt_token": (JWT, "eyJhbGciOi.short"),
    "bearer_token": ("Authorization: Bearer " + B64[:32], "a bearer of good news"),
    "password": ("PASSWORD=hunter2hunter", "the password is in the vault"),
    "api_key_generic": ("api_key: abc123def456", "the API key was rotated"),
    "secret_key": ("Secret-Key = s3cr3tvalue", "keep the secret key safe"),
    "access_token": ("access_token=ya29.abcdef", "the access token expired"),
    "auth_token": ("AUTH_TOKEN: xyz987", "an auth token is needed"),
    "connection_string": (
        "postgres://app:pw@db.internal:5432/app",
        "postgres is a database; see https://example.com/docs",
    ),
    "private_key": (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + B64 + "\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PUBLIC KEY-----\nMIIBIj" + B64[:20],
    ),
    "env_secret": ("DATABASE_URL=" + "sqlite:///tmp/x.db", "set DATABASE_URL in the environment"),
}


def test_there_are_22_default_categories_all_tested() -> None:
    categories = [category for category, _ in DEFAULT_PATTERNS]
    assert len(categories) == 22
    assert set(categories) == set(CASES)


@pytest.mark.parametrize("category", sorted(CASES))
def test_default_category_redacts_its_secret(category: str) -> None:
    secret, _ = CASES[category]
    redacted = redact({"text": f"before {secret} after"}, CATEGORIZED)["text"]
    assert f"[REDACTED:{category}]" in redacted
    assert redacted.startswith("before ")
    for chunk in re.split(r"\s+", secret):
        if len(chunk) >= 8 and re.search(r"\d", chunk):  # no credential-like piece survives
            assert chunk not in redacted


@pytest.mark.parametrize("category", sorted(CASES))
def test_default_category_leaves_near_miss_alone(category: str) -> None:
    _, near_miss = CASES[category]
    assert redact({"text": near_miss}, ENABLED) == {"text": near_miss}


def test_categories_match_case_insensitively_where_documented() -> None:
    assert redact("BEARER " + B64[:30], ENABLED) == "[REDACTED]"
    assert redact("Api-Key=abc", ENABLED) == "[REDACTED]"
    assert redact("MySQL://root:pw@host/db", ENABLED) == "[REDACTED]"
    # AKIA keys are upper case: a lower-case look-alike is not one.
    assert redact("akia" + "iosfodnn7exampl1", ENABLED) == "akia" + "iosfodnn7exampl1"


def test_non_ascii_text_is_scanned_too() -> None:
    text = "İstanbul şifre: password=gizli123 ✓"
    assert redact(text, ENABLED) == "İstanbul şifre: [REDACTED] ✓"


def test_fixed_replacement_and_count() -> None:
    config = compile_config({"replacement": "***"})
    assert config.redact_string("a AKIA" + "IOSFODNN7EXAMPL1" + " b pwd=x c") == (
        "a *** b *** c",
        2,
    )


def test_replacement_text_is_literal() -> None:
    config = compile_config({"replacement": r"<\1 \g<0>>"})
    assert redact("pwd=secret", config) == r"<\1 \g<0>>"


def test_redact_returns_a_copy_and_keeps_other_values() -> None:
    value: dict[str, Any] = {
        "a": ["pwd=x1", 1, 2.5, True, None, {"k": "ok"}],
        "pwd=keys-are-not-scanned": "fine",
    }
    result = redact(value, ENABLED)
    assert result == {
        "a": ["[REDACTED]", 1, 2.5, True, None, {"k": "ok"}],
        "pwd=keys-are-not-scanned": "fine",
    }
    assert value["a"][0] == "pwd=x1"
    assert result["a"][5] is not value["a"][5]


def test_redact_uses_the_setting_even_when_disabled(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"REDACTION": {"replacement": "categorized"}}
    assert redact("pwd=x1") == "[REDACTED:password]"


def test_depth_limit() -> None:
    def nested(levels: int) -> dict[str, Any]:
        value: dict[str, Any] = {"s": "pwd=deep"}
        for _ in range(levels):
            value = {"n": value}
        return value

    # data itself is level 0: a string in the container at level MAX_DEPTH is scanned…
    assert redact(nested(MAX_DEPTH), ENABLED) != nested(MAX_DEPTH)
    # …one level deeper is stored as it is.
    assert redact(nested(MAX_DEPTH + 1), ENABLED) == nested(MAX_DEPTH + 1)
    lists: Any = ["pwd=deep"]
    for _ in range(MAX_DEPTH):
        lists = [lists]
    assert redact(lists, ENABLED) != lists
    assert redact([lists], ENABLED) == [lists]


# --------------------------------------------------------------------------- events


SECRET = "pwd=hunter2"


@pytest.mark.parametrize("event_type", sorted(NEVER_SCANNED_TYPES))
def test_never_scanned_types(event_type: str) -> None:
    config = compile_config({"enabled": True, "scan_metadata": True})
    data = {"content": SECRET}
    metadata = {"note": SECRET}
    assert redact_event_fields(event_type, data, metadata, config) == (data, metadata, None)


@pytest.mark.parametrize("event_type", sorted(FIELDS_WITHOUT_DEEP_SCAN))
def test_without_deep_scan_only_the_types_fields_are_scanned(event_type: str) -> None:
    config = compile_config({"enabled": True, "deep_scan": False})
    fields = FIELDS_WITHOUT_DEEP_SCAN[event_type]
    data = {name: {"nested": [SECRET]} for name in fields}
    data["other"] = {"nested": [SECRET]}
    new, _, result = redact_event_fields(event_type, data, {}, config)
    assert result is not None
    assert result.redaction_count == len(fields)
    assert result.fields_redacted == [f"data.{name}" for name in fields]
    assert all(new[name] == {"nested": ["[REDACTED]"]} for name in fields)
    assert new["other"] == {"nested": [SECRET]}


def test_without_deep_scan_other_types_are_not_scanned() -> None:
    config = compile_config({"enabled": True, "deep_scan": False})
    data = {"content": SECRET, "stop_reason": SECRET}
    assert redact_event_fields("run_completed", data, {}, config) == (data, {}, None)


def test_deep_scan_scans_every_field() -> None:
    data = {"anything": {"deep": [SECRET]}, "content": "hello"}
    new, _, result = redact_event_fields("run_completed", data, {}, ENABLED)
    assert new == {"anything": {"deep": ["[REDACTED]"]}, "content": "hello"}
    assert result is not None
    assert (result.redaction_count, result.fields_redacted) == (1, ["data.anything"])
    assert data["anything"] == {"deep": [SECRET]}  # the argument is not changed


def test_metadata_is_scanned_only_when_configured() -> None:
    metadata = {"note": SECRET, "n": 1}
    assert redact_event_fields("message_sent", {}, metadata, ENABLED)[1] is metadata
    config = compile_config({"enabled": True, "scan_metadata": True})
    _, new, result = redact_event_fields("message_sent", {"content": SECRET}, metadata, config)
    assert new == {"note": "[REDACTED]", "n": 1}
    assert result is not None
    assert result.fields_redacted == ["data.content", "metadata.note"]
    assert result.redaction_count == 2


# --------------------------------------------------------------------------- configuration


def test_custom_patterns_are_added_to_the_defaults() -> None:
    config = compile_config(
        {
            "patterns": [r"INTERNAL-\d{6}", ["ticket", r"(?i)tkt_[a-z]{4}"]],
            "replacement": "categorized",
        }
    )
    assert redact("INTERNAL-123456 TKT_abcd pwd=x", config) == (
        "[REDACTED:custom] [REDACTED:ticket] [REDACTED:password]"
    )
    assert config.categories[-2:] == ("custom", "ticket")


def test_custom_patterns_can_replace_the_defaults() -> None:
    config = compile_config({"patterns": {"replace": [["ticket", re.compile("tkt_[a-z]{4}")]]}})
    assert redact("tkt_abcd pwd=x", config) == "[REDACTED] pwd=x"
    assert config.categories == ("ticket",)


def test_short_custom_patterns_match_short_strings() -> None:
    config = compile_config({"patterns": {"replace": ["x"]}})
    assert redact(["x", "ab"], config) == ["[REDACTED]", "ab"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a dict"),
        ({"enable": True}, "unknown keys ['enable']"),
        ({"enabled": 1}, "['enabled'] must be True or False"),
        ({"deep_scan": "yes"}, "['deep_scan'] must be True or False"),
        ({"replacement": None}, "['replacement'] must be a string"),
        ({"patterns": "mine"}, "['patterns'] must be 'default'"),
        ({"patterns": ["("]}, "is not a valid regex"),
        ({"patterns": [".*"]}, "matches the empty string"),
        ({"patterns": [["a", "b", "c"]]}, "[category, regex] pair"),
        ({"patterns": {"add": []}}, "{'replace': [...]}"),
        ({"patterns": [3]}, "non-empty regex string"),
    ],
)
def test_invalid_configuration(value: Any, message: str) -> None:
    problem = redaction_problem(value)
    assert problem is not None
    assert message in problem
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_config(value)


def test_valid_configuration_has_no_problem() -> None:
    assert redaction_problem({}) is None
    assert (
        redaction_problem(
            {
                "enabled": True,
                "patterns": {"replace": [r"x\d+", ["c", r"y\d+"]]},
                "replacement": "categorized",
                "deep_scan": False,
                "scan_metadata": True,
            }
        )
        is None
    )


def test_settings_config_is_cached_per_settings_value(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"REDACTION": {"enabled": True}}
    first = settings_config()
    assert first.enabled
    assert settings_config() is first
    with override_settings(AGENT_SESSIONS={"REDACTION": {"replacement": "categorized"}}):
        changed = settings_config()
        assert not changed.enabled
        assert changed.replacement is None
    assert settings_config().enabled


def test_invalid_setting_is_improperly_configured(settings: Any) -> None:
    settings.AGENT_SESSIONS = {"REDACTION": {"enabled": "yes"}}
    with pytest.raises(ImproperlyConfigured, match=r"AGENT_SESSIONS\['REDACTION'\]"):
        settings_config()
