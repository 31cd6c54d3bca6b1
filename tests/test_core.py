"""Session, Run and Event: construction, validation, helpers and serialisation (CONTRACT §1-2)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agent_sessions.core import (
    TERMINAL_RUN_STATUSES,
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
)
from agent_sessions.errors import ValidationError

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 5, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))

Factory = Callable[..., Any]


def full_session(**overrides: Any) -> Session:
    values: dict[str, Any] = {
        "id": "ses_1",
        "agent_id": "agent-1",
        "status": "active",
        "parent_session_id": "ses_0",
        "metadata": {"user": "ada", "nested": {"list": [1, 2.5, None, True]}},
        "context": {"system": "be brief"},
        "tags": ["pinned", "demo"],
        "created_at": T0,
        "updated_at": T1,
        "deleted_at": T1,
    }
    return Session(**{**values, **overrides})


def full_run(**overrides: Any) -> Run:
    values: dict[str, Any] = {
        "id": "run_1",
        "session_id": "ses_1",
        "status": "completed",
        "input": {"prompt": "hi"},
        "output": {"items": ["a", "b"]},
        "error": None,
        "metadata": {"k": "v"},
        "turn_count": 3,
        "token_usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        "started_at": T0,
        "ended_at": T1,
        "provider": "claude",
        "provider_metadata": {"model": "claude-sonnet-4-5"},
        "cost_usd": 0.0125,
    }
    return Run(**{**values, **overrides})


def full_event(**overrides: Any) -> Event:
    values: dict[str, Any] = {
        "id": "evt_1",
        "type": "message_sent",
        "timestamp": T0,
        "session_id": "ses_1",
        "run_id": "run_1",
        "sequence_number": 7,
        "data": {"content": "hello", "parts": [{"text": "é"}]},
        "metadata": {"source": "test"},
        "schema_version": 2,
        "provider": "claude",
        "correlation_id": "corr-1",
    }
    return Event(**{**values, **overrides})


FACTORIES: dict[str, Factory] = {"session": full_session, "run": full_run, "event": full_event}


def assert_validation_error(
    info: pytest.ExceptionInfo[ValidationError], field: str, code: str = "validation_error"
) -> None:
    assert type(info.value) is ValidationError
    assert info.value.code == code
    assert info.value.details.get("field") == field


# --------------------------------------------------------------------------- vocabulary


def test_session_statuses_are_the_six_contract_values() -> None:
    assert [s.value for s in SessionStatus] == [
        "pending",
        "active",
        "paused",
        "completed",
        "failed",
        "cancelled",
    ]


def test_run_statuses_are_the_six_contract_values() -> None:
    assert [s.value for s in RunStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "timeout",
    ]


def test_terminal_run_statuses() -> None:
    assert {"completed", "failed", "cancelled", "timeout"} == TERMINAL_RUN_STATUSES


def test_there_are_28_lowercase_event_types() -> None:
    values = [t.value for t in EventType]
    assert len(set(values)) == 28
    assert all(re.fullmatch(r"[a-z_]+", v) for v in values)


@pytest.mark.parametrize(
    "value",
    [
        "session_created",
        "run_timeout",
        "message_streamed",
        "tool_call_failed",
        "error_recovered",
        "token_usage_updated",
        "turn_completed",
        "policy_violation",
        "workspace_diff_computed",
        "tool_approval_denied",
    ],
)
def test_event_type_includes_contract_value(value: str) -> None:
    assert EventType(value).value == value


def test_enum_members_are_strings() -> None:
    assert isinstance(SessionStatus.ACTIVE, str)
    assert str(EventType.RUN_STARTED) == "run_started"


# --------------------------------------------------------------------------- fields


def test_session_fields_are_the_table_columns_in_order() -> None:
    assert [f.name for f in dataclasses.fields(Session)] == [
        "id",
        "agent_id",
        "status",
        "parent_session_id",
        "metadata",
        "context",
        "tags",
        "created_at",
        "updated_at",
        "deleted_at",
    ]


def test_run_fields_are_the_table_columns_in_order() -> None:
    assert [f.name for f in dataclasses.fields(Run)] == [
        "id",
        "session_id",
        "status",
        "input",
        "output",
        "error",
        "metadata",
        "turn_count",
        "token_usage",
        "started_at",
        "ended_at",
        "provider",
        "provider_metadata",
        "cost_usd",
    ]


def test_event_fields_are_the_table_columns_in_order() -> None:
    assert [f.name for f in dataclasses.fields(Event)] == [
        "id",
        "type",
        "timestamp",
        "session_id",
        "run_id",
        "sequence_number",
        "data",
        "metadata",
        "schema_version",
        "provider",
        "correlation_id",
    ]


# --------------------------------------------------------------------------- new()


def test_session_new_defaults() -> None:
    session = Session.new("agent-1")
    assert re.fullmatch(r"ses_[0-9a-f]{32}", session.id)
    assert session.agent_id == "agent-1"
    assert session.status is SessionStatus.PENDING
    assert (session.parent_session_id, session.deleted_at) == (None, None)
    assert (session.metadata, session.context, session.tags) == ({}, {}, [])
    assert session.created_at == session.updated_at
    assert session.created_at.tzinfo is UTC


def test_session_new_sets_created_at_to_now() -> None:
    before = datetime.now(UTC)
    session = Session.new("agent-1")
    assert before <= session.created_at <= datetime.now(UTC)


def test_session_new_keeps_given_id() -> None:
    assert Session.new("agent-1", id="my-session").id == "my-session"


def test_session_new_generates_id_when_given_none() -> None:
    assert Session.new("agent-1", id=None).id.startswith("ses_")


def test_session_new_updated_at_defaults_to_given_created_at() -> None:
    session = Session.new("agent-1", created_at=T0)
    assert session.updated_at == T0


def test_session_new_accepts_every_field() -> None:
    session = Session.new(
        "agent-1",
        id="ses_1",
        status=SessionStatus.PAUSED,
        parent_session_id="ses_0",
        metadata={"a": 1},
        context={"b": 2},
        tags=["x"],
        created_at=T0,
        updated_at=T1,
        deleted_at=T1,
    )
    assert (session.status, session.tags, session.updated_at) == ("paused", ["x"], T1)


def test_ids_generated_by_new_are_unique() -> None:
    assert len({Session.new("a").id for _ in range(200)}) == 200


def test_run_new_defaults() -> None:
    run = Run.new("ses_1")
    assert re.fullmatch(r"run_[0-9a-f]{32}", run.id)
    assert run.session_id == "ses_1"
    assert run.status is RunStatus.PENDING
    assert (run.metadata, run.token_usage, run.provider_metadata) == ({}, {}, {})
    assert run.turn_count == 0
    assert (run.input, run.output, run.error, run.ended_at) == (None, None, None, None)
    assert (run.provider, run.cost_usd) == (None, None)
    assert run.started_at.tzinfo is UTC


def test_run_new_sets_started_at_to_now() -> None:
    before = datetime.now(UTC)
    run = Run.new("ses_1")
    assert before <= run.started_at <= datetime.now(UTC)


def test_event_new_defaults() -> None:
    event = Event.new(EventType.SESSION_CREATED, "ses_1")
    assert re.fullmatch(r"evt_[0-9a-f]{32}", event.id)
    assert event.type is EventType.SESSION_CREATED
    assert event.session_id == "ses_1"
    assert (event.data, event.metadata) == ({}, {})
    assert event.schema_version == 1
    assert event.sequence_number is None
    assert (event.run_id, event.provider, event.correlation_id) == (None, None, None)
    assert event.timestamp.tzinfo is UTC


def test_event_new_keeps_a_given_timestamp() -> None:
    assert Event.new("message_sent", "ses_1", timestamp=T0).timestamp == T0


def test_event_new_converts_given_timestamp_to_utc() -> None:
    event = Event.new("message_sent", "ses_1", timestamp=datetime(2024, 5, 1, 14, tzinfo=PLUS_TWO))
    assert event.timestamp == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC


@pytest.mark.parametrize(
    "make",
    [
        lambda: Session.new("agent-1", colour="red"),
        lambda: Run.new("ses_1", colour="red"),
        lambda: Event.new("message_sent", "ses_1", colour="red"),
    ],
    ids=["session", "run", "event"],
)
def test_new_rejects_unknown_keyword_with_validation_error(make: Callable[[], Any]) -> None:
    with pytest.raises(ValidationError) as info:
        make()
    assert_validation_error(info, "colour")


# --------------------------------------------------------------------------- statuses & types


@pytest.mark.parametrize("status", ["active", SessionStatus.ACTIVE])
def test_session_status_accepts_enum_or_string(status: Any) -> None:
    session = Session.new("agent-1", status=status)
    assert session.status is SessionStatus.ACTIVE


@pytest.mark.parametrize("status", ["running", RunStatus.RUNNING])
def test_run_status_accepts_enum_or_string(status: Any) -> None:
    assert Run.new("ses_1", status=status).status is RunStatus.RUNNING


@pytest.mark.parametrize("event_type", ["tool_call_started", EventType.TOOL_CALL_STARTED])
def test_event_type_accepts_enum_or_string(event_type: Any) -> None:
    assert Event.new(event_type, "ses_1").type is EventType.TOOL_CALL_STARTED


@pytest.mark.parametrize("status", ["bogus", "ACTIVE", "running", "", None, 1])
def test_unknown_session_status_is_invalid_status(status: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Session.new("agent-1", status=status)
    assert_validation_error(info, "status", "invalid_status")


@pytest.mark.parametrize("status", ["bogus", "active", "Completed", None])
def test_unknown_run_status_is_invalid_status(status: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Run.new("ses_1", status=status)
    assert_validation_error(info, "status", "invalid_status")


@pytest.mark.parametrize("event_type", ["bogus", "SESSION_CREATED", "active", 5])
def test_unknown_event_type_is_invalid_event_type(event_type: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Event.new(event_type, "ses_1")
    assert_validation_error(info, "type", "invalid_event_type")


@pytest.mark.parametrize("event_type", ["", None])
def test_missing_event_type_is_validation_error(event_type: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Event.new(event_type, "ses_1")
    assert_validation_error(info, "type")


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda v: Session.new(v), "agent_id"),
        (lambda v: Run.new(v), "session_id"),
        (lambda v: Event.new("message_sent", v), "session_id"),
    ],
    ids=["session-agent_id", "run-session_id", "event-session_id"],
)
@pytest.mark.parametrize("value", ["", None], ids=["empty", "none"])
def test_missing_required_id_is_validation_error(
    make: Callable[[Any], Any], field: str, value: Any
) -> None:
    with pytest.raises(ValidationError) as info:
        make(value)
    assert_validation_error(info, field)


# --------------------------------------------------------------------------- field validation

# (record, field) for every string column.
ID_FIELDS = [
    ("session", "id"),
    ("session", "agent_id"),
    ("session", "parent_session_id"),
    ("run", "id"),
    ("run", "session_id"),
    ("event", "id"),
    ("event", "session_id"),
    ("event", "run_id"),
]
VARCHAR_FIELDS = [
    ("run", "provider"),
    ("event", "provider"),
    ("event", "correlation_id"),
]
STRING_FIELDS = ID_FIELDS + VARCHAR_FIELDS
JSON_OBJECT_FIELDS = [
    ("session", "metadata"),
    ("session", "context"),
    ("run", "metadata"),
    ("run", "token_usage"),
    ("run", "provider_metadata"),
    ("event", "data"),
    ("event", "metadata"),
]
# JSON objects or None (CONTRACT §11: ASM's readers crash on anything else there).
JSON_NULLABLE_OBJECT_FIELDS = [("run", "input"), ("run", "output"), ("run", "error")]
JSON_FIELDS = JSON_OBJECT_FIELDS + JSON_NULLABLE_OBJECT_FIELDS
DATETIME_FIELDS = [
    ("session", "created_at"),
    ("session", "updated_at"),
    ("session", "deleted_at"),
    ("run", "started_at"),
    ("run", "ended_at"),
    ("event", "timestamp"),
]


def _ids(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"{record}.{field}" for record, field in pairs]


@pytest.mark.parametrize(("record", "field"), STRING_FIELDS, ids=_ids(STRING_FIELDS))
def test_string_column_accepts_255_characters(record: str, field: str) -> None:
    obj = FACTORIES[record](**{field: "x" * 255})
    assert getattr(obj, field) == "x" * 255


@pytest.mark.parametrize(("record", "field"), STRING_FIELDS, ids=_ids(STRING_FIELDS))
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("x" * 256, id="256-chars"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\ud800", id="lone-surrogate"),
        pytest.param(123, id="int"),
        pytest.param(b"bytes", id="bytes"),
    ],
)
def test_string_column_rejects_bad_value(record: str, field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        FACTORIES[record](**{field: value})
    assert_validation_error(info, field)


@pytest.mark.parametrize(("record", "field"), JSON_FIELDS, ids=_ids(JSON_FIELDS))
@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"k": "a\x00b"}, id="nul-in-value"),
        pytest.param({"k\x00": "v"}, id="nul-in-key"),
        pytest.param({"k": [{"deep": "\x00"}]}, id="nul-deep"),
        pytest.param({"k": math.nan}, id="nan"),
        pytest.param({"k": math.inf}, id="inf"),
        pytest.param({"k": -math.inf}, id="minus-inf"),
        pytest.param({"k": {1, 2}}, id="set"),
        pytest.param({"k": object()}, id="object"),
        pytest.param({"k": b"bytes"}, id="bytes"),
        pytest.param({1: "v"}, id="int-key"),
    ],
)
def test_json_column_rejects_bad_value(record: str, field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        FACTORIES[record](**{field: value})
    assert_validation_error(info, field)


@pytest.mark.parametrize(("record", "field"), JSON_OBJECT_FIELDS, ids=_ids(JSON_OBJECT_FIELDS))
@pytest.mark.parametrize("value", [None, [], "text", 1], ids=["none", "list", "str", "int"])
def test_json_object_column_rejects_non_objects(record: str, field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        FACTORIES[record](**{field: value})
    assert_validation_error(info, field)


@pytest.mark.parametrize(
    ("record", "field"), JSON_NULLABLE_OBJECT_FIELDS, ids=_ids(JSON_NULLABLE_OBJECT_FIELDS)
)
@pytest.mark.parametrize("value", [None, {}, {"a": {"b": None}}, {"list": [1, "a"]}])
def test_run_json_column_accepts_an_object_or_none(record: str, field: str, value: Any) -> None:
    assert getattr(FACTORIES[record](**{field: value}), field) == value


@pytest.mark.parametrize(
    ("record", "field"), JSON_NULLABLE_OBJECT_FIELDS, ids=_ids(JSON_NULLABLE_OBJECT_FIELDS)
)
@pytest.mark.parametrize("value", [[1, "a"], "text", 1.5, 0, False, True])
def test_run_json_column_rejects_anything_but_an_object(
    record: str, field: str, value: Any
) -> None:
    with pytest.raises(ValidationError, match="JSON object") as info:
        FACTORIES[record](**{field: value})
    assert_validation_error(info, field)


@pytest.mark.parametrize(
    ("record", "field"), JSON_NULLABLE_OBJECT_FIELDS, ids=_ids(JSON_NULLABLE_OBJECT_FIELDS)
)
def test_run_json_column_rejects_nul_in_a_string_value(record: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        FACTORIES[record](**{field: {"text": "a\x00"}})
    assert_validation_error(info, field)


@pytest.mark.parametrize(("record", "field"), DATETIME_FIELDS, ids=_ids(DATETIME_FIELDS))
def test_datetime_column_rejects_naive_datetime(record: str, field: str) -> None:
    with pytest.raises(ValidationError, match="naive") as info:
        FACTORIES[record](**{field: datetime(2024, 5, 1, 12)})
    assert_validation_error(info, field)


@pytest.mark.parametrize(("record", "field"), DATETIME_FIELDS, ids=_ids(DATETIME_FIELDS))
def test_datetime_column_rejects_strings(record: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        FACTORIES[record](**{field: "2024-05-01T12:00:00Z"})
    assert_validation_error(info, field)


@pytest.mark.parametrize(("record", "field"), DATETIME_FIELDS, ids=_ids(DATETIME_FIELDS))
def test_datetime_column_is_converted_to_utc(record: str, field: str) -> None:
    obj = FACTORIES[record](**{field: datetime(2024, 5, 1, 14, tzinfo=PLUS_TWO)})
    assert getattr(obj, field).tzinfo is UTC
    assert getattr(obj, field) == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ("session", "created_at"),
        ("session", "updated_at"),
        ("run", "started_at"),
        ("event", "timestamp"),
    ],
)
def test_required_datetime_column_rejects_none(record: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        FACTORIES[record](**{field: None})
    assert_validation_error(info, field)


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param("pinned", id="bare-string"),
        pytest.param(None, id="none"),
        pytest.param([1], id="int-item"),
        pytest.param(["a\x00"], id="nul-item"),
        pytest.param(["x" * 256], id="long-item"),
    ],
)
def test_session_tags_reject_bad_values(tags: Any) -> None:
    with pytest.raises(ValidationError) as info:
        full_session(tags=tags)
    assert_validation_error(info, "tags")


@pytest.mark.parametrize(
    ("record", "field", "value"),
    [
        ("run", "turn_count", -1),
        ("run", "turn_count", True),
        ("run", "turn_count", "1"),
        ("run", "turn_count", 1.0),
        ("run", "turn_count", None),
        ("run", "turn_count", 2**31),
        ("event", "sequence_number", 0),
        ("event", "sequence_number", -5),
        ("event", "sequence_number", True),
        ("event", "sequence_number", 2**31),
        ("event", "schema_version", 0),
        ("event", "schema_version", None),
        ("event", "schema_version", "1"),
        ("event", "schema_version", 1.5),
    ],
)
def test_integer_column_rejects_bad_value(record: str, field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        FACTORIES[record](**{field: value})
    assert_validation_error(info, field)


def test_event_sequence_number_may_be_none() -> None:
    assert full_event(sequence_number=None).sequence_number is None


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, "1.5", True, [1.0]],
    ids=["nan", "inf", "minus-inf", "str", "bool", "list"],
)
def test_cost_usd_rejects_bad_value(value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        full_run(cost_usd=value)
    assert_validation_error(info, "cost_usd")


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, 0.0), (0.25, 0.25)])
def test_cost_usd_accepts_none_or_finite_number(value: Any, expected: float | None) -> None:
    assert full_run(cost_usd=value).cost_usd == expected


# --------------------------------------------------------------------------- validate()


def test_construction_copies_json_from_the_caller() -> None:
    metadata: dict[str, Any] = {"a": [1]}
    session = Session.new("agent-1", metadata=metadata)
    metadata["a"].append(2)
    assert session.metadata == {"a": [1]}


def test_construction_normalises_tuple_tags_and_json() -> None:
    session = Session.new("agent-1", tags=("a", "b"), metadata={"t": (1, 2)})
    assert (session.tags, session.metadata) == (["a", "b"], {"t": [1, 2]})


def test_validate_catches_values_mutated_after_construction() -> None:
    session = Session.new("agent-1")
    session.metadata["bad"] = "\x00"
    with pytest.raises(ValidationError) as info:
        session.validate()
    assert_validation_error(info, "metadata")


def test_validate_catches_attribute_replaced_after_construction() -> None:
    event = Event.new("message_sent", "ses_1")
    event.timestamp = datetime(2024, 1, 1)
    with pytest.raises(ValidationError) as info:
        event.validate()
    assert_validation_error(info, "timestamp")


def test_validate_normalises_a_status_string_set_later() -> None:
    run = Run.new("ses_1")
    run.status = "running"  # type: ignore[assignment]
    run.validate()
    assert run.status is RunStatus.RUNNING


def test_validate_is_idempotent() -> None:
    event = full_event()
    before = event.to_dict()
    event.validate()
    event.validate()
    assert event.to_dict() == before


# --------------------------------------------------------------------------- helpers


def test_session_with_status_returns_new_session_with_status() -> None:
    session = full_session(status="pending")
    updated = session.with_status("active")
    assert updated is not session
    assert updated.status is SessionStatus.ACTIVE


def test_session_with_status_bumps_updated_at() -> None:
    session = full_session(updated_at=T0)
    assert session.with_status(SessionStatus.COMPLETED).updated_at > T0


def test_session_with_status_does_not_mutate_original() -> None:
    session = full_session(status="pending", updated_at=T0)
    session.with_status("active")
    assert (session.status, session.updated_at) == (SessionStatus.PENDING, T0)


def test_session_with_status_rejects_unknown_status() -> None:
    with pytest.raises(ValidationError) as info:
        full_session().with_status("bogus")
    assert_validation_error(info, "status", "invalid_status")


def test_session_with_status_copies_json() -> None:
    session = full_session()
    updated = session.with_status("paused")
    updated.metadata["nested"]["list"].append("x")
    assert session.metadata["nested"]["list"] == [1, 2.5, None, True]


@pytest.mark.parametrize("status", sorted(TERMINAL_RUN_STATUSES))
def test_run_with_terminal_status_sets_ended_at(status: RunStatus) -> None:
    run = Run.new("ses_1", status="running")
    before = datetime.now(UTC)
    ended = run.with_status(status)
    assert ended.status is status
    assert ended.ended_at is not None
    assert ended.ended_at >= before


@pytest.mark.parametrize("status", ["pending", "running"])
def test_run_with_non_terminal_status_keeps_ended_at(status: str) -> None:
    assert Run.new("ses_1").with_status(status).ended_at is None


def test_run_with_status_does_not_mutate_original() -> None:
    run = Run.new("ses_1", status="running")
    run.with_status("completed")
    assert (run.status, run.ended_at) == (RunStatus.RUNNING, None)


def test_run_with_status_rejects_unknown_status() -> None:
    with pytest.raises(ValidationError) as info:
        Run.new("ses_1").with_status("done")
    assert_validation_error(info, "status", "invalid_status")


def test_run_with_output_completes_the_run() -> None:
    run = Run.new("ses_1", status="running")
    done = run.with_output({"answer": 42})
    assert (done.status, done.output) == (RunStatus.COMPLETED, {"answer": 42})
    assert done.ended_at is not None
    assert (run.status, run.output, run.ended_at) == (RunStatus.RUNNING, None, None)


def test_run_with_output_rejects_unstorable_output() -> None:
    with pytest.raises(ValidationError) as info:
        Run.new("ses_1").with_output({"x": math.nan})
    assert_validation_error(info, "output")


def test_run_with_error_fails_the_run() -> None:
    run = Run.new("ses_1", status="running")
    failed = run.with_error({"message": "boom"})
    assert (failed.status, failed.error) == (RunStatus.FAILED, {"message": "boom"})
    assert failed.ended_at is not None
    assert (run.status, run.error) == (RunStatus.RUNNING, None)


def test_run_with_token_usage_adds_numeric_values() -> None:
    run = Run.new("ses_1", token_usage={"input_tokens": 10, "output_tokens": 5})
    updated = run.with_token_usage({"input_tokens": 3, "output_tokens": 2})
    assert updated.token_usage == {"input_tokens": 13, "output_tokens": 7}


def test_run_with_token_usage_adds_new_keys_and_keeps_others() -> None:
    run = Run.new("ses_1", token_usage={"input_tokens": 10})
    updated = run.with_token_usage({"cache_read_tokens": 4})
    assert updated.token_usage == {"input_tokens": 10, "cache_read_tokens": 4}


def test_run_with_token_usage_adds_floats() -> None:
    run = Run.new("ses_1", token_usage={"cost": 1})
    assert run.with_token_usage({"cost": 0.5}).token_usage == {"cost": 1.5}


def test_run_with_token_usage_replaces_non_numeric_values() -> None:
    run = Run.new("ses_1", token_usage={"model": "a", "total_tokens": "n/a"})
    updated = run.with_token_usage({"model": "b", "total_tokens": 5})
    assert updated.token_usage == {"model": "b", "total_tokens": 5}


def test_run_with_token_usage_treats_bool_as_non_numeric() -> None:
    run = Run.new("ses_1", token_usage={"cached": True, "n": 1})
    updated = run.with_token_usage({"cached": True, "n": True})
    assert updated.token_usage == {"cached": True, "n": True}


def test_run_with_token_usage_does_not_mutate_original() -> None:
    run = Run.new("ses_1", token_usage={"input_tokens": 10})
    run.with_token_usage({"input_tokens": 3})
    assert run.token_usage == {"input_tokens": 10}


@pytest.mark.parametrize(
    "usage", [None, [1], {"n": math.nan}, {"n": "\x00"}], ids=["none", "list", "nan", "nul"]
)
def test_run_with_token_usage_rejects_bad_usage(usage: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Run.new("ses_1").with_token_usage(usage)
    assert_validation_error(info, "token_usage")


def test_run_with_token_usage_rejects_overflowing_sum() -> None:
    run = Run.new("ses_1", token_usage={"n": 1e308})
    with pytest.raises(ValidationError) as info:
        run.with_token_usage({"n": 1e308})
    assert_validation_error(info, "token_usage")


def test_run_with_turn_increments_turn_count() -> None:
    run = Run.new("ses_1", turn_count=2)
    assert run.with_turn().turn_count == 3
    assert run.turn_count == 2


def test_run_helpers_do_not_share_json_with_original() -> None:
    run = full_run()
    updated = run.with_turn()
    updated.metadata["k"] = "changed"
    updated.token_usage["input_tokens"] = 0
    assert (run.metadata, run.token_usage["input_tokens"]) == ({"k": "v"}, 10)


def test_run_is_terminal() -> None:
    assert full_run(status="timeout").is_terminal
    assert not full_run(status="running").is_terminal


# --------------------------------------------------------------------------- to_dict / from_dict


@pytest.mark.parametrize("record", ["session", "run", "event"])
def test_to_dict_keys_are_the_fields_in_order(record: str) -> None:
    obj = FACTORIES[record]()
    assert list(obj.to_dict()) == [f.name for f in dataclasses.fields(obj)]


@pytest.mark.parametrize("record", ["session", "run", "event"])
def test_to_dict_is_json_serialisable(record: str) -> None:
    data = FACTORIES[record]().to_dict()
    assert json.loads(json.dumps(data)) == data


def test_to_dict_gives_plain_string_status() -> None:
    status = full_session().to_dict()["status"]
    assert type(status) is str
    assert status == "active"


def test_to_dict_gives_plain_string_event_type() -> None:
    event_type = full_event().to_dict()["type"]
    assert type(event_type) is str
    assert event_type == "message_sent"


def test_to_dict_gives_iso_timestamps_with_microseconds() -> None:
    data = full_session(created_at=T0, updated_at=T1, deleted_at=None).to_dict()
    assert data["created_at"] == "2024-05-01T12:00:00.123456+00:00"
    assert data["updated_at"] == "2024-05-01T12:05:00.000000+00:00"
    assert data["deleted_at"] is None


def test_to_dict_deep_copies_json() -> None:
    session = full_session()
    data = session.to_dict()
    data["metadata"]["nested"]["list"].append("x")
    data["tags"].append("x")
    assert session.metadata["nested"]["list"] == [1, 2.5, None, True]
    assert session.tags == ["pinned", "demo"]


@pytest.mark.parametrize("record", ["session", "run", "event"])
def test_from_dict_round_trips(record: str) -> None:
    obj = FACTORIES[record]()
    assert type(obj).from_dict(obj.to_dict()) == obj


@pytest.mark.parametrize("record", ["session", "run", "event"])
def test_from_dict_round_trips_through_json(record: str) -> None:
    obj = FACTORIES[record]()
    assert type(obj).from_dict(json.loads(json.dumps(obj.to_dict()))) == obj


@pytest.mark.parametrize(
    "make",
    [
        lambda: Session.new("agent-1"),
        lambda: Run.new("ses_1"),
        lambda: Event.new("session_created", "ses_1"),
    ],
    ids=["session", "run", "event"],
)
def test_from_dict_round_trips_objects_made_by_new(make: Callable[[], Any]) -> None:
    obj = make()
    assert type(obj).from_dict(obj.to_dict()) == obj


def test_from_dict_accepts_z_timestamps() -> None:
    data = full_event().to_dict() | {"timestamp": "2024-05-01T12:00:00.123456Z"}
    assert Event.from_dict(data).timestamp == T0


def test_from_dict_accepts_datetime_objects() -> None:
    data = full_run().to_dict() | {"started_at": T0}
    assert Run.from_dict(data).started_at == T0


def test_from_dict_ignores_unknown_keys() -> None:
    data = full_session().to_dict() | {"extra": 1, "lock_version": 3}
    assert Session.from_dict(data) == full_session()


def test_session_from_dict_fills_missing_optional_keys_with_defaults() -> None:
    session = Session.from_dict({"id": "ses_1", "agent_id": "agent-1", "created_at": T0})
    assert session.status is SessionStatus.PENDING
    assert (session.metadata, session.context, session.tags) == ({}, {}, [])
    assert session.updated_at == T0
    assert session.deleted_at is None


def test_run_from_dict_fills_missing_optional_keys_with_defaults() -> None:
    run = Run.from_dict({"id": "run_1", "session_id": "ses_1"})
    assert (run.status, run.turn_count, run.token_usage) == (RunStatus.PENDING, 0, {})
    assert run.started_at.tzinfo is UTC


def test_event_from_dict_fills_missing_optional_keys_with_defaults() -> None:
    event = Event.from_dict(
        {"id": "evt_1", "type": "run_started", "session_id": "ses_1", "schema_version": 1}
    )
    assert (event.data, event.metadata, event.sequence_number) == ({}, {}, None)
    assert event.timestamp.tzinfo is UTC


@pytest.mark.parametrize(
    ("record", "key"),
    [
        ("session", "id"),
        ("session", "agent_id"),
        ("run", "id"),
        ("run", "session_id"),
        ("event", "id"),
        ("event", "type"),
        ("event", "session_id"),
        ("event", "schema_version"),
    ],
)
def test_from_dict_requires_key(record: str, key: str) -> None:
    obj = FACTORIES[record]()
    data = obj.to_dict()
    del data[key]
    with pytest.raises(ValidationError) as info:
        type(obj).from_dict(data)
    assert_validation_error(info, key)


@pytest.mark.parametrize("value", [0, -1, None, "1", 1.0, True], ids=str)
def test_event_from_dict_requires_integer_schema_version_of_at_least_one(value: Any) -> None:
    data = full_event().to_dict() | {"schema_version": value}
    with pytest.raises(ValidationError) as info:
        Event.from_dict(data)
    assert_validation_error(info, "schema_version")


@pytest.mark.parametrize("cls", [Session, Run, Event])
@pytest.mark.parametrize(
    "data", [None, [], "{}", [("id", "x")]], ids=["none", "list", "str", "pairs"]
)
def test_from_dict_rejects_non_dict(cls: type[Any], data: Any) -> None:
    with pytest.raises(ValidationError) as info:
        cls.from_dict(data)
    assert info.value.code == "validation_error"


@pytest.mark.parametrize(
    ("record", "key", "value", "code"),
    [
        ("session", "status", "bogus", "invalid_status"),
        ("run", "status", "bogus", "invalid_status"),
        ("event", "type", "bogus", "invalid_event_type"),
        ("session", "created_at", "2024-05-01T12:00:00", "validation_error"),
        ("session", "created_at", None, "validation_error"),
        ("run", "ended_at", "not a date", "validation_error"),
        ("event", "data", {"k": "\x00"}, "validation_error"),
        ("session", "id", None, "validation_error"),
        ("run", "turn_count", -1, "validation_error"),
    ],
)
def test_from_dict_validates_values(record: str, key: str, value: Any, code: str) -> None:
    obj = FACTORIES[record]()
    data = obj.to_dict() | {key: value}
    with pytest.raises(ValidationError) as info:
        type(obj).from_dict(data)
    assert_validation_error(info, key, code)


def test_from_dict_does_not_share_json_with_input() -> None:
    data = full_event().to_dict()
    event = Event.from_dict(data)
    data["data"]["parts"].append("x")
    assert event.data == {"content": "hello", "parts": [{"text": "é"}]}
