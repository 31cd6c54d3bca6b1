"""Small typed checks that refuse, before anything is written, what the database would refuse.

PostgreSQL rejects NUL characters in text and ``jsonb``, NaN and Infinity in
``jsonb``, strings that are not valid UTF-8 (Python strings with lone
surrogates), values longer than ``varchar(255)``, and integers outside the
column's range. These helpers detect all of that up front and raise
:class:`~agent_sessions.errors.ValidationError` with a message naming the field
and ``details={"field": name}``, so that bad input never reaches the database
as a raw driver exception and never leaves a partial write behind.

Each ``check_*`` function returns the value normalised (``str`` subclasses
such as enum members become plain ``str``, tuples inside JSON become lists,
datetimes are converted to UTC), so callers store what they return.

This module has no Django dependency.
"""

from __future__ import annotations

import enum
import math
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, overload

from agent_sessions.errors import ValidationError
from agent_sessions.storable import MAX_JSON_DEPTH, check_json, copy_json, text_problem

__all__ = [
    "BIGINT_MAX",
    "BIGINT_MIN",
    "INT_MAX",
    "INT_MIN",
    "MAX_JSON_DEPTH",
    "MAX_VARCHAR_LENGTH",
    "check_bool",
    "check_choice",
    "check_datetime",
    "check_float",
    "check_id",
    "check_int",
    "check_json",
    "check_tags",
    "check_text",
    "check_varchar",
    "copy_json",
    "new_artifact_id",
    "new_id",
    "parse_datetime",
    "utcnow",
]

#: Longest value a ``varchar(255)`` column holds, in characters.
MAX_VARCHAR_LENGTH = 255
#: Range of a PostgreSQL ``integer``.
INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
#: Range of a PostgreSQL ``bigint``.
BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1

_E = TypeVar("_E", bound=enum.Enum)


# --------------------------------------------------------------------------- ids & time


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime with microseconds."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """Return a new random id: ``prefix`` + 32 lowercase hex characters.

    Args:
        prefix: For example ``"ses_"``, ``"run_"`` or ``"evt_"``.
    """
    return prefix + uuid.uuid4().hex


def new_artifact_id() -> str:
    """Return a new artifact id: ``"art_"`` + 16 url-safe characters."""
    return "art_" + secrets.token_urlsafe(12)


# --------------------------------------------------------------------------- strings


def _invalid(field: str, message: str, **details: Any) -> ValidationError:
    return ValidationError("validation_error", message, details, field=field)


def _check_string(value: object, field: str, *, required: bool, allow_empty: bool) -> str | None:
    if value is None:
        if required:
            raise _invalid(field, f"{field} is required")
        return None
    return _check_present_string(value, field, allow_empty=allow_empty, name=field)


def _check_present_string(value: object, field: str, *, allow_empty: bool, name: str) -> str:
    # ``name`` is what messages call the value: the field, or an item in it ("tags[2]").
    if value is None:
        raise _invalid(field, f"{name} is required")
    if not isinstance(value, str):
        raise _invalid(field, f"{name} must be a string, not {type(value).__name__}")
    if type(value) is not str:
        value = str.__str__(value)  # enum members and other str subclasses
    if not value and not allow_empty:
        raise _invalid(field, f"{name} must not be empty")
    if len(value) > MAX_VARCHAR_LENGTH:
        raise _invalid(
            field,
            f"{name} is {len(value)} characters long; "
            f"the limit is {MAX_VARCHAR_LENGTH} (varchar(255))",
        )
    problem = text_problem(value)
    if problem:
        raise _invalid(field, f"{name} {problem}")
    return value


@overload
def check_id(value: object, field: str, *, required: Literal[True] = ...) -> str: ...
@overload
def check_id(value: object, field: str, *, required: bool) -> str | None: ...
def check_id(value: object, field: str, *, required: bool = True) -> str | None:
    """Check an id: a non-empty string of at most 255 characters, storable by PostgreSQL.

    Args:
        value: The candidate id.
        field: The field name used in the error.
        required: When False, None is accepted and returned.

    Returns:
        The id as a plain ``str`` (None only when not required and None given).

    Raises:
        ValidationError: ``validation_error`` when the id is missing, not a
            string, empty, longer than 255 characters, or contains a NUL
            character or a lone surrogate.
    """
    return _check_string(value, field, required=required, allow_empty=False)


def check_text(value: object, field: str, *, max_length: int) -> str:
    """Check a required, non-empty text of at most ``max_length`` characters (not varchar).

    Args:
        value: The candidate text.
        field: The field name used in the error.
        max_length: The longest accepted text, in characters.

    Returns:
        The value as a plain ``str``.

    Raises:
        ValidationError: ``validation_error`` when the value is missing, not a
            string, empty, too long, or contains a NUL character or a lone
            surrogate.
    """
    if value is None:
        raise _invalid(field, f"{field} is required")
    if not isinstance(value, str):
        raise _invalid(field, f"{field} must be a string, not {type(value).__name__}")
    text = str.__str__(value)
    if not text:
        raise _invalid(field, f"{field} must not be empty")
    if len(text) > max_length:
        raise _invalid(field, f"{field} is {len(text)} characters long; the limit is {max_length}")
    problem = text_problem(text)
    if problem:
        raise _invalid(field, f"{field} {problem}")
    return text


@overload
def check_varchar(value: object, field: str, *, required: Literal[True]) -> str: ...
@overload
def check_varchar(value: object, field: str, *, required: bool = ...) -> str | None: ...
def check_varchar(value: object, field: str, *, required: bool = False) -> str | None:
    """Check a ``varchar(255)`` value: a string of at most 255 characters.

    The empty string is allowed (unlike :func:`check_id`).

    Args:
        value: The candidate string.
        field: The field name used in the error.
        required: When False (the default), None is accepted and returned.

    Returns:
        The value as a plain ``str``, or None.

    Raises:
        ValidationError: ``validation_error`` when the value is missing but
            required, not a string, too long, or contains a NUL character or a
            lone surrogate.
    """
    return _check_string(value, field, required=required, allow_empty=True)


def check_tags(value: object, field: str = "tags") -> list[str]:
    """Check a list of tags: each a string as :func:`check_varchar` requires.

    Also used for other lists of short strings (e.g. retention settings).
    Errors name ``field`` in ``details["field"]`` and the item (``tags[2]``)
    in the message.

    Args:
        value: A list (or tuple) of strings.
        field: The field name used in the error.

    Returns:
        A new list of plain ``str``.

    Raises:
        ValidationError: ``validation_error`` when ``value`` is not a list or
            tuple (a bare string is refused), or any tag is invalid.
    """
    if not isinstance(value, list | tuple):
        raise _invalid(field, f"{field} must be a list of strings, not {type(value).__name__}")
    return [
        _check_present_string(tag, field, allow_empty=True, name=f"{field}[{index}]")
        for index, tag in enumerate(value)
    ]


# --------------------------------------------------------------------------- numbers


@overload
def check_int(
    value: object,
    field: str,
    *,
    minimum: int | None = ...,
    maximum: int | None = ...,
    required: Literal[True] = ...,
) -> int: ...
@overload
def check_int(
    value: object,
    field: str,
    *,
    minimum: int | None = ...,
    maximum: int | None = ...,
    required: bool,
) -> int | None: ...
def check_int(
    value: object,
    field: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    required: bool = True,
) -> int | None:
    """Check an integer, by default in the range of a PostgreSQL ``integer``.

    For a ``bigint`` column pass ``maximum=BIGINT_MAX`` (and ``minimum=BIGINT_MIN``
    when negative values are allowed).

    Args:
        value: The candidate integer. ``bool`` is refused; int subclasses
            (e.g. ``IntEnum`` members) are returned as plain ``int``.
        field: The field name used in the error.
        minimum: Smallest accepted value; defaults to :data:`INT_MIN`.
        maximum: Largest accepted value; defaults to :data:`INT_MAX`.
        required: When False, None is accepted and returned.

    Returns:
        The value as a plain ``int``, or None.

    Raises:
        ValidationError: ``validation_error`` when missing but required, not an
            integer, or out of range.
    """
    if value is None:
        if required:
            raise _invalid(field, f"{field} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, f"{field} must be an integer, not {type(value).__name__}")
    value = int(value)
    low = INT_MIN if minimum is None else minimum
    high = INT_MAX if maximum is None else maximum
    if value < low:
        raise _invalid(field, f"{field} must be >= {low}, got {value}")
    if value > high:
        raise _invalid(field, f"{field} must be <= {high}, got {value}")
    return value


@overload
def check_float(value: object, field: str, *, required: Literal[True]) -> float: ...
@overload
def check_float(value: object, field: str, *, required: bool = ...) -> float | None: ...
def check_float(value: object, field: str, *, required: bool = False) -> float | None:
    """Check a ``double precision`` value: an int or a finite float.

    Args:
        value: The candidate number (``bool`` is refused).
        field: The field name used in the error.
        required: When False (the default), None is accepted and returned.

    Returns:
        The value as a plain ``float``, or None.

    Raises:
        ValidationError: ``validation_error`` when missing but required, not a
            number, NaN, infinite, or too large for a float.
    """
    if value is None:
        if required:
            raise _invalid(field, f"{field} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(field, f"{field} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise _invalid(field, f"{field} is too large for a double precision number") from None
    if not math.isfinite(number):
        raise _invalid(field, f"{field} must be finite, got {number!r}")
    return number


def check_bool(value: object, field: str) -> bool:
    """Check a boolean (``True``/``False`` only; 0 and 1 are refused).

    Raises:
        ValidationError: ``validation_error`` when ``value`` is not a bool.
    """
    if not isinstance(value, bool):
        raise _invalid(field, f"{field} must be True or False, not {type(value).__name__}")
    return value


def check_choice(
    value: object,
    choices: type[_E],
    field: str,
    *,
    code: str = "validation_error",
) -> _E:
    """Check that ``value`` is a member of the enum ``choices`` or one of its values.

    Args:
        value: An enum member or its value (e.g. ``"active"``).
        choices: The enum class, e.g. ``SessionStatus``.
        field: The field name used in the error.
        code: The ValidationError code to raise, e.g. ``"invalid_status"``.

    Returns:
        The enum member.

    Raises:
        ValidationError: with ``code`` when the value is not one of the choices;
            ``details["allowed"]`` lists the accepted values.
    """
    try:
        return choices(value)
    except (ValueError, TypeError):
        allowed = [member.value for member in choices]
        raise ValidationError(
            code,
            f"{field} {value!r} is not one of: {', '.join(map(str, allowed))}",
            {"allowed": allowed},
            field=field,
        ) from None


# --------------------------------------------------------------------------- datetimes


@overload
def check_datetime(value: object, field: str, *, required: Literal[True] = ...) -> datetime: ...
@overload
def check_datetime(value: object, field: str, *, required: bool) -> datetime | None: ...
def check_datetime(value: object, field: str, *, required: bool = True) -> datetime | None:
    """Check a timezone-aware datetime and return it converted to UTC.

    Naive datetimes are refused rather than guessed at: pass aware UTC
    datetimes, e.g. ``datetime.now(UTC)``.

    Args:
        value: The candidate ``datetime.datetime``.
        field: The field name used in the error.
        required: When False, None is accepted and returned.

    Returns:
        The same instant with ``tzinfo=datetime.UTC``, or None.

    Raises:
        ValidationError: ``validation_error`` when missing but required, not a
            datetime (a ``date`` is refused), naive, or not representable in UTC.
    """
    if value is None:
        if required:
            raise _invalid(field, f"{field} is required")
        return None
    if not isinstance(value, datetime):
        raise _invalid(field, f"{field} must be a datetime, not {type(value).__name__}")
    try:
        offset = value.utcoffset()
    except (ValueError, TypeError) as exc:  # an offset not strictly within ±24 h
        raise _invalid(field, f"{field} has an invalid UTC offset: {exc}") from None
    if value.tzinfo is None or offset is None:
        raise _invalid(
            field,
            f"{field} is a naive datetime; naive datetimes are rejected, "
            "pass a timezone-aware UTC datetime (e.g. datetime.now(UTC))",
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise _invalid(field, f"{field} is out of the representable range in UTC") from None


@overload
def parse_datetime(value: object, field: str, *, required: Literal[True] = ...) -> datetime: ...
@overload
def parse_datetime(value: object, field: str, *, required: bool) -> datetime | None: ...
def parse_datetime(value: object, field: str, *, required: bool = True) -> datetime | None:
    """Accept a datetime or an ISO-8601 string and return an aware UTC datetime.

    Strings may end in ``Z`` or carry an offset (``+02:00``); strings without
    one are naive and refused, like naive datetimes.

    Args:
        value: A ``datetime`` or an ISO-8601 string.
        field: The field name used in the error.
        required: When False, None is accepted and returned.

    Returns:
        The instant as an aware UTC datetime, or None.

    Raises:
        ValidationError: ``validation_error`` when the value is missing but
            required, not a datetime or string, unparsable, or naive.
    """
    if isinstance(value, str):
        text = value
        try:
            if text_problem(text):  # fromisoformat stops at a NUL character
                raise ValueError(text)
            value = datetime.fromisoformat(text)
        except ValueError:
            shown = text if len(text) <= 64 else text[:61] + "..."
            raise _invalid(field, f"{field} is not an ISO-8601 datetime: {shown!r}") from None
    return check_datetime(value, field, required=required)
