"""The error hierarchy: codes, default messages, details, and how errors print."""

from __future__ import annotations

import pickle

import pytest

from agent_sessions.errors import (
    AgentSessionsError,
    MigrationRequiredError,
    NotFoundError,
    StorageError,
    ValidationError,
)

SUBCLASS_CODES = [
    (NotFoundError, "session_not_found"),
    (NotFoundError, "run_not_found"),
    (ValidationError, "validation_error"),
    (ValidationError, "invalid_status"),
    (ValidationError, "invalid_event_type"),
    (ValidationError, "invalid_cursor"),
    (StorageError, "storage_error"),
    (MigrationRequiredError, "migration_required"),
]


@pytest.mark.parametrize(("cls", "code"), SUBCLASS_CODES)
def test_every_subclass_is_an_agent_sessions_error(
    cls: type[AgentSessionsError], code: str
) -> None:
    assert isinstance(cls(code), AgentSessionsError)


@pytest.mark.parametrize(("cls", "code"), SUBCLASS_CODES)
def test_first_positional_argument_is_the_code(cls: type[AgentSessionsError], code: str) -> None:
    assert cls(code).code == code


@pytest.mark.parametrize(("cls", "code"), SUBCLASS_CODES)
def test_message_defaults_to_readable_text(cls: type[AgentSessionsError], code: str) -> None:
    message = cls(code).message
    assert message
    assert message != code


@pytest.mark.parametrize(
    ("cls", "default"),
    [
        (NotFoundError, "session_not_found"),
        (ValidationError, "validation_error"),
        (StorageError, "storage_error"),
        (MigrationRequiredError, "migration_required"),
        (AgentSessionsError, "agent_sessions_error"),
    ],
)
def test_each_class_has_a_default_code(cls: type[AgentSessionsError], default: str) -> None:
    assert cls().code == default


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (NotFoundError, "validation_error"),
        (ValidationError, "session_not_found"),
        (StorageError, "migration_required"),
        (MigrationRequiredError, "storage_error"),
        (ValidationError, "not_a_code"),
    ],
)
def test_subclass_rejects_codes_of_other_classes(cls: type[AgentSessionsError], code: str) -> None:
    with pytest.raises(ValueError, match=code):
        cls(code)


def test_base_class_accepts_any_non_empty_code() -> None:
    assert AgentSessionsError("custom_code").code == "custom_code"


def test_empty_code_is_rejected() -> None:
    with pytest.raises(ValueError, match="code"):
        AgentSessionsError("")


def test_non_string_code_is_rejected() -> None:
    with pytest.raises(TypeError):
        AgentSessionsError(42)  # type: ignore[arg-type]


def test_message_and_details_can_be_given_as_keywords() -> None:
    err = NotFoundError("run_not_found", message="Run run_1 not found", details={"run_id": "run_1"})
    assert (err.message, err.details) == ("Run run_1 not found", {"run_id": "run_1"})


def test_details_default_to_an_empty_dict() -> None:
    assert StorageError().details == {}


def test_details_are_copied_from_the_argument() -> None:
    details = {"a": 1}
    err = StorageError(details=details)
    details["a"] = 2
    assert err.details == {"a": 1}


def test_non_dict_details_are_rejected() -> None:
    with pytest.raises(TypeError):
        StorageError(details=["x"])  # type: ignore[arg-type]


def test_str_includes_code_and_message() -> None:
    text = str(NotFoundError("session_not_found", "Session ses_1 not found"))
    assert "session_not_found" in text
    assert "Session ses_1 not found" in text


def test_repr_shows_class_code_message_and_details() -> None:
    err = ValidationError("invalid_cursor", "bad cursor", {"cursor": "abc"})
    assert repr(err) == (
        "ValidationError(code='invalid_cursor', message='bad cursor', details={'cursor': 'abc'})"
    )


def test_validation_error_field_keyword_sets_details_field() -> None:
    err = ValidationError("validation_error", "agent_id is required", field="agent_id")
    assert err.details == {"field": "agent_id"}
    assert err.field == "agent_id"


def test_validation_error_field_merges_with_details() -> None:
    err = ValidationError(details={"path": "data['a']"}, field="data")
    assert err.details == {"path": "data['a']", "field": "data"}


def test_validation_error_field_is_none_when_unknown() -> None:
    assert ValidationError().field is None


def test_migration_required_message_tells_to_run_migrate() -> None:
    assert "manage.py migrate" in MigrationRequiredError().message


def test_storage_error_from_exception_records_the_driver_error() -> None:
    cause = RuntimeError("connection reset")
    err = StorageError.from_exception(cause)
    assert err.code == "storage_error"
    assert err.details == {"exception": "builtins.RuntimeError", "error": "connection reset"}
    assert err.__cause__ is cause


@pytest.mark.parametrize(
    "err",
    [
        NotFoundError("run_not_found", details={"run_id": "r"}),
        ValidationError("invalid_status", "bad", field="status"),
        MigrationRequiredError(),
    ],
)
def test_errors_survive_pickling(err: AgentSessionsError) -> None:
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), copy.code, copy.message, copy.details) == (
        type(err),
        err.code,
        err.message,
        err.details,
    )


def test_errors_can_be_raised_and_caught_by_base_class() -> None:
    with pytest.raises(AgentSessionsError) as info:
        raise NotFoundError("session_not_found")
    assert info.value.code == "session_not_found"
