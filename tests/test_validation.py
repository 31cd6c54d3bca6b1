"""The validation helpers refuse, before writing, what PostgreSQL would refuse."""

from __future__ import annotations

import enum
import math
import re
from collections import OrderedDict
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from agent_sessions.errors import ValidationError
from agent_sessions.validation import (
    BIGINT_MAX,
    INT_MAX,
    INT_MIN,
    MAX_JSON_DEPTH,
    check_bool,
    check_choice,
    check_datetime,
    check_float,
    check_id,
    check_int,
    check_json,
    check_tags,
    check_varchar,
    copy_json,
    new_artifact_id,
    new_id,
    parse_datetime,
    utcnow,
)

PLUS_TWO = timezone(timedelta(hours=2))


class Color(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1


def assert_invalid(info: pytest.ExceptionInfo[ValidationError], field: str) -> None:
    assert type(info.value) is ValidationError
    assert info.value.code == "validation_error"
    assert info.value.details["field"] == field
    assert field in info.value.message


# --------------------------------------------------------------------------- ids


def test_new_id_is_prefix_and_32_lowercase_hex() -> None:
    assert re.fullmatch(r"ses_[0-9a-f]{32}", new_id("ses_"))


def test_new_ids_are_unique() -> None:
    assert len({new_id("evt_") for _ in range(1000)}) == 1000


def test_new_artifact_id_is_art_and_16_url_safe_characters() -> None:
    assert re.fullmatch(r"art_[A-Za-z0-9_-]{16}", new_artifact_id())


def test_utcnow_is_aware_utc() -> None:
    now = utcnow()
    assert now.tzinfo is UTC


# --------------------------------------------------------------------------- check_id


def test_check_id_accepts_255_characters() -> None:
    assert check_id("x" * 255, "id") == "x" * 255


def test_check_id_accepts_non_ascii_text() -> None:
    assert check_id("séance-日本", "id") == "séance-日本"


def test_check_id_returns_plain_str_for_str_subclass() -> None:
    value = check_id(Color.RED, "id")
    assert type(value) is str
    assert value == "red"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("x" * 256, id="256-chars"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\ud800b", id="lone-surrogate"),
        pytest.param(42, id="int"),
        pytest.param(b"abc", id="bytes"),
        pytest.param(["a"], id="list"),
    ],
)
def test_check_id_rejects_bad_values(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_id(value, "session_id")
    assert_invalid(info, "session_id")


def test_check_id_accepts_none_when_not_required() -> None:
    assert check_id(None, "run_id", required=False) is None


def test_check_id_rejects_empty_even_when_not_required() -> None:
    with pytest.raises(ValidationError) as info:
        check_id("", "run_id", required=False)
    assert_invalid(info, "run_id")


# --------------------------------------------------------------------------- check_varchar


def test_check_varchar_allows_none_by_default() -> None:
    assert check_varchar(None, "provider") is None


def test_check_varchar_allows_empty_string() -> None:
    assert check_varchar("", "provider") == ""


def test_check_varchar_accepts_255_characters() -> None:
    assert check_varchar("é" * 255, "provider") == "é" * 255


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("x" * 256, id="256-chars"),
        pytest.param("\x00", id="nul"),
        pytest.param("\udfff", id="lone-surrogate"),
        pytest.param(3.5, id="float"),
    ],
)
def test_check_varchar_rejects_bad_values(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_varchar(value, "provider")
    assert_invalid(info, "provider")


def test_check_varchar_rejects_none_when_required() -> None:
    with pytest.raises(ValidationError) as info:
        check_varchar(None, "provider", required=True)
    assert_invalid(info, "provider")


# --------------------------------------------------------------------------- check_tags


def test_check_tags_returns_a_new_list() -> None:
    tags = ["a", "b"]
    result = check_tags(tags)
    assert result == ["a", "b"]
    assert result is not tags


def test_check_tags_accepts_a_tuple() -> None:
    assert check_tags(("a",)) == ["a"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("pinned", id="bare-string"),
        pytest.param(None, id="none"),
        pytest.param({"a"}, id="set"),
        pytest.param(["ok", None], id="none-item"),
        pytest.param(["ok", 1], id="int-item"),
        pytest.param(["a\x00"], id="nul-item"),
        pytest.param(["x" * 256], id="long-item"),
    ],
)
def test_check_tags_rejects_bad_values(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_tags(value)
    assert_invalid(info, "tags")


# --------------------------------------------------------------------------- check_json


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"a": 1, "b": [1, 2.5, "x", None, True, False], "c": {"d": {"e": []}}},
        [],
        "text",
        0,
        -1.5,
        True,
        10**30,
    ],
)
def test_check_json_accepts_json_values(value: Any) -> None:
    assert check_json(value, "data") == value


def test_check_json_normalises_tuples_to_lists() -> None:
    assert check_json({"a": (1, (2, 3))}, "data") == {"a": [1, [2, 3]]}


def test_check_json_normalises_scalar_subclasses_to_plain_values() -> None:
    result = check_json({"color": Color.RED, "level": Level.LOW}, "data")
    assert result == {"color": "red", "level": 1}
    assert type(result["color"]) is str
    assert type(result["level"]) is int


def test_check_json_normalises_dict_subclasses_to_dict() -> None:
    result = check_json(OrderedDict(a=1), "data")
    assert type(result) is dict


def test_check_json_keeps_booleans_as_booleans() -> None:
    result = check_json({"flag": True}, "data")
    assert result["flag"] is True


def test_check_json_returns_a_deep_copy() -> None:
    original: dict[str, Any] = {"a": {"b": [1]}}
    result = check_json(original, "data")
    original["a"]["b"].append(2)
    assert result == {"a": {"b": [1]}}


def test_check_json_rejects_none_by_default() -> None:
    with pytest.raises(ValidationError) as info:
        check_json(None, "data")
    assert_invalid(info, "data")


def test_check_json_accepts_none_when_allowed() -> None:
    assert check_json(None, "output", allow_none=True) is None


def test_check_json_accepts_none_inside_values() -> None:
    assert check_json({"a": None}, "data") == {"a": None}


@pytest.mark.parametrize("value", [[], "x", 1, None])
def test_check_json_require_object_rejects_non_objects(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_json(value, "metadata", require_object=True)
    assert_invalid(info, "metadata")


BAD_JSON = [
    pytest.param("a\x00b", id="nul-string"),
    pytest.param({"k": "\x00"}, id="nul-in-value"),
    pytest.param({"k\x00": 1}, id="nul-in-key"),
    pytest.param({"k": ["ok", {"deep": "x\x00"}]}, id="nul-deep"),
    pytest.param({"k": "\ud800"}, id="lone-surrogate"),
    pytest.param({"\udc00": 1}, id="lone-surrogate-key"),
    pytest.param(float("nan"), id="nan"),
    pytest.param({"k": float("inf")}, id="inf"),
    pytest.param([float("-inf")], id="minus-inf"),
    pytest.param({"k": {1, 2}}, id="set"),
    pytest.param({"k": object()}, id="object"),
    pytest.param({"k": b"bytes"}, id="bytes"),
    pytest.param({"k": datetime.now(UTC)}, id="datetime"),
    pytest.param({"k": 1 + 2j}, id="complex"),
    pytest.param({1: "int-key"}, id="int-key"),
    pytest.param({None: "none-key"}, id="none-key"),
    pytest.param({("a",): "tuple-key"}, id="tuple-key"),
]


@pytest.mark.parametrize("value", BAD_JSON)
def test_check_json_rejects_values_postgres_would_refuse(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_json(value, "data")
    assert_invalid(info, "data")


def test_check_json_error_names_the_path() -> None:
    with pytest.raises(ValidationError) as info:
        check_json({"a": [0, {"b": "\x00"}]}, "data")
    assert info.value.details["path"] == "data['a'][1]['b']"
    assert "data['a'][1]['b']" in info.value.message


def test_check_json_says_not_json_serialisable() -> None:
    with pytest.raises(ValidationError, match="not JSON-serialisable"):
        check_json({"k": object()}, "data")


def test_check_json_rejects_reference_cycles() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValidationError) as info:
        check_json(cyclic, "data")
    assert_invalid(info, "data")


def test_check_json_accepts_nesting_up_to_the_limit() -> None:
    value: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH):
        value = [value]
    assert check_json(value, "data") == value


def test_check_json_rejects_nesting_beyond_the_limit() -> None:
    value: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH + 1):
        value = {"k": value}
    with pytest.raises(ValidationError) as info:
        check_json(value, "data")
    assert_invalid(info, "data")


def test_copy_json_copies_containers() -> None:
    original: dict[str, Any] = {"a": [1, {"b": 2}], "t": (1,)}
    result = copy_json(original)
    assert result == {"a": [1, {"b": 2}], "t": [1]}
    assert result["a"] is not original["a"]
    assert result["a"][1] is not original["a"][1]


# --------------------------------------------------------------------------- check_int


@pytest.mark.parametrize("value", [0, 1, -1, INT_MIN, INT_MAX])
def test_check_int_accepts_integers_in_postgres_integer_range(value: int) -> None:
    assert check_int(value, "turn_count") == value


def test_check_int_returns_plain_int_for_int_enum() -> None:
    value = check_int(Level.LOW, "turn_count")
    assert type(value) is int


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(True, id="bool"),
        pytest.param(1.0, id="float"),
        pytest.param("1", id="str"),
        pytest.param(None, id="none"),
        pytest.param(INT_MAX + 1, id="above-int-max"),
        pytest.param(INT_MIN - 1, id="below-int-min"),
    ],
)
def test_check_int_rejects_bad_values(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_int(value, "turn_count")
    assert_invalid(info, "turn_count")


def test_check_int_enforces_minimum() -> None:
    with pytest.raises(ValidationError) as info:
        check_int(0, "sequence_number", minimum=1)
    assert_invalid(info, "sequence_number")


def test_check_int_bigint_variant_accepts_large_values() -> None:
    assert check_int(BIGINT_MAX, "byte_size", maximum=BIGINT_MAX) == BIGINT_MAX


def test_check_int_bigint_variant_rejects_values_beyond_bigint() -> None:
    with pytest.raises(ValidationError) as info:
        check_int(BIGINT_MAX + 1, "byte_size", maximum=BIGINT_MAX)
    assert_invalid(info, "byte_size")


def test_check_int_accepts_none_when_not_required() -> None:
    assert check_int(None, "sequence_number", required=False) is None


# --------------------------------------------------------------------------- check_float


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (1.25, 1.25), (3, 3.0)])
def test_check_float_accepts_finite_numbers(value: float, expected: float) -> None:
    result = check_float(value, "cost_usd")
    assert result == expected
    assert type(result) is float


def test_check_float_allows_none_by_default() -> None:
    assert check_float(None, "cost_usd") is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(-math.inf, id="minus-inf"),
        pytest.param(10**400, id="int-too-large"),
        pytest.param(True, id="bool"),
        pytest.param("1.5", id="str"),
    ],
)
def test_check_float_rejects_bad_values(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_float(value, "cost_usd")
    assert_invalid(info, "cost_usd")


def test_check_float_rejects_none_when_required() -> None:
    with pytest.raises(ValidationError) as info:
        check_float(None, "cost_usd", required=True)
    assert_invalid(info, "cost_usd")


# ----------------------------------------------------------- check_bool, check_choice


def test_check_bool_accepts_booleans() -> None:
    assert check_bool(False, "archive_before_prune") is False


@pytest.mark.parametrize("value", [0, 1, "true", None])
def test_check_bool_rejects_non_booleans(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_bool(value, "archive_before_prune")
    assert_invalid(info, "archive_before_prune")


def test_check_choice_accepts_value_and_returns_member() -> None:
    assert check_choice("blue", Color, "color") is Color.BLUE


@pytest.mark.parametrize("value", ["green", "RED", "", None, 1, ["red"]])
def test_check_choice_rejects_unknown_values_with_given_code(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_choice(value, Color, "color", code="invalid_status")
    assert info.value.code == "invalid_status"
    assert info.value.details["field"] == "color"
    assert info.value.details["allowed"] == ["red", "blue"]


# --------------------------------------------------------------------------- datetimes


def test_check_datetime_returns_utc() -> None:
    value = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=PLUS_TWO)
    result = check_datetime(value, "created_at")
    assert result == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert result.tzinfo is UTC


def test_check_datetime_keeps_microseconds() -> None:
    value = datetime(2024, 1, 1, microsecond=999999, tzinfo=UTC)
    assert check_datetime(value, "created_at").microsecond == 999999


def test_check_datetime_rejects_naive_datetimes() -> None:
    with pytest.raises(ValidationError, match="naive") as info:
        check_datetime(datetime(2024, 1, 1), "created_at")
    assert_invalid(info, "created_at")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param(date(2024, 1, 1), id="date"),
        pytest.param("2024-01-01T00:00:00Z", id="string"),
        pytest.param(1704067200, id="epoch-int"),
        pytest.param(datetime(1, 1, 1, tzinfo=PLUS_TWO), id="out-of-range-in-utc"),
    ],
)
def test_check_datetime_rejects_bad_values(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_datetime(value, "created_at")
    assert_invalid(info, "created_at")


def test_check_datetime_accepts_none_when_not_required() -> None:
    assert check_datetime(None, "deleted_at", required=False) is None


@pytest.mark.parametrize(
    "text",
    ["2024-05-01T12:00:00.123456Z", "2024-05-01T14:00:00.123456+02:00"],
)
def test_parse_datetime_accepts_iso_strings_with_offset(text: str) -> None:
    expected = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert parse_datetime(text, "timestamp") == expected


def test_parse_datetime_accepts_datetimes() -> None:
    value = datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_datetime(value, "timestamp") == value


def test_parse_datetime_accepts_none_when_not_required() -> None:
    assert parse_datetime(None, "ended_at", required=False) is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2024-05-01T12:00:00", id="naive-string"),
        pytest.param("yesterday", id="garbage"),
        pytest.param("2024-05-01T12:00:00Z\x00", id="nul"),
        pytest.param(None, id="none"),
        pytest.param(12.5, id="float"),
    ],
)
def test_parse_datetime_rejects_bad_values(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_datetime(value, "timestamp")
    assert_invalid(info, "timestamp")
