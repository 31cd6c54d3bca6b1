"""What PostgreSQL can store: text without NUL characters or lone surrogates, and JSON values.

The bottom of :mod:`agent_sessions.validation`, which re-exports
:func:`check_json`, :func:`copy_json` and :data:`MAX_JSON_DEPTH` and builds its
typed field checks on :func:`text_problem`. No Django dependency.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from agent_sessions.errors import ValidationError

__all__ = ["MAX_JSON_DEPTH", "check_json", "copy_json", "text_problem"]

#: Deepest nesting of lists/objects accepted in a JSON value. Far beyond real
#: data, and low enough that serialising it never hits Python's recursion limit.
MAX_JSON_DEPTH = 256

_SURROGATE = re.compile("[\ud800-\udfff]")
# Integers this wide may exceed Python's int-to-str digit limit, which would
# make ``json.dumps`` fail later; only such values pay for the exact check.
_WIDE_INT_BITS = 10_000


def text_problem(value: str) -> str | None:
    """Return why PostgreSQL would refuse the text ``value``, or None if it is fine."""
    if "\x00" in value:
        return "contains a NUL character (\\x00), which PostgreSQL cannot store"
    if not value.isascii() and _SURROGATE.search(value):
        return "contains a lone surrogate, which is not encodable as UTF-8"
    return None


def _invalid(field: str, message: str, **details: Any) -> ValidationError:
    return ValidationError("validation_error", message, details, field=field)


# --------------------------------------------------------------------------- JSON


class _JSONProblem(Exception):
    """A problem found deep inside a JSON value; the path is filled in while unwinding."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str | int] = []


def _json_copy(value: Any, depth: int) -> Any:
    # Exact types first: the common case costs one ``type()`` comparison.
    kind = type(value)
    if value is None or kind is bool or kind is int:
        if kind is int and value.bit_length() > _WIDE_INT_BITS:
            _check_wide_int(value)
        return value
    if kind is str:
        problem = text_problem(value)
        if problem:
            raise _JSONProblem(problem)
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _JSONProblem(f"is {value!r}; NaN and Infinity are not valid JSON")
        return value
    if isinstance(value, dict | list | tuple):
        if depth >= MAX_JSON_DEPTH:
            raise _JSONProblem(
                f"is nested more than {MAX_JSON_DEPTH} levels deep (or contains a reference cycle)"
            )
        if isinstance(value, dict):
            return _json_copy_object(value, depth + 1)
        result = []
        for index, item in enumerate(value):
            try:
                result.append(_json_copy(item, depth + 1))
            except _JSONProblem as problem:
                problem.path.append(index)
                raise
        return result
    # Subclasses of the JSON scalar types (enum members, numpy-free subclasses)
    # are stored as their plain value.
    if isinstance(value, str):
        return _json_copy(str.__str__(value), depth)
    if isinstance(value, int):
        return _json_copy(int(value), depth)
    if isinstance(value, float):
        return _json_copy(float(value), depth)
    raise _JSONProblem(f"is not JSON-serialisable ({type(value).__name__})")


def _json_copy_object(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise _JSONProblem(
                    f"has a key of type {type(key).__name__} ({key!r}); JSON object keys "
                    "must be strings"
                )
            key = str.__str__(key)
        problem = text_problem(key)
        if problem:
            raise _JSONProblem(f"has a key that {problem}")
        try:
            result[key] = _json_copy(item, depth)
        except _JSONProblem as exc:
            exc.path.append(key)
            raise
    return result


def _check_wide_int(value: int) -> None:
    try:
        str(value)
    except ValueError:
        raise _JSONProblem("is an integer too large to serialise") from None


def _format_path(field: str, path: Iterable[str | int]) -> str:
    return field + "".join(f"[{step!r}]" for step in path)


def check_json(
    value: object,
    field: str,
    *,
    allow_none: bool = False,
    require_object: bool = False,
) -> Any:
    """Check that ``value`` is storable as PostgreSQL ``jsonb`` and return a normalised copy.

    Accepted, recursively: dicts with string keys, lists and tuples (returned
    as lists), strings, ints, finite floats, booleans and None. Keys and
    strings must not contain NUL characters or lone surrogates. Subclasses of
    ``str``/``int``/``float`` (for example enum members) become their plain
    value; dict subclasses become plain dicts.

    The result is always a new deep copy: containers are never shared with
    the argument, so later changes made by the caller to the original do not
    affect the checked value, and vice versa.

    Args:
        value: The candidate JSON value.
        field: The field name used in the error.
        allow_none: When True, a top-level None is accepted (a SQL NULL rather
            than JSON ``null``).
        require_object: When True, the top level must be a dict (a JSON object).

    Returns:
        The normalised deep copy.

    Raises:
        ValidationError: ``validation_error`` naming the field; the message
            gives the path of the offending part (``details["path"]``).
    """
    if value is None and not allow_none:
        raise _invalid(
            field, f"{field} is required (a JSON {'object' if require_object else 'value'})"
        )
    if require_object and not isinstance(value, dict) and value is not None:
        raise _invalid(field, f"{field} must be a JSON object (dict), not {type(value).__name__}")
    try:
        return _json_copy(value, 0)
    except _JSONProblem as problem:
        path = _format_path(field, reversed(problem.path))
        raise _invalid(field, f"{path} {problem.reason}", path=path) from None
    except RecursionError:
        raise _invalid(field, f"{field} is nested too deeply") from None


def copy_json(value: Any) -> Any:
    """Return a deep copy of an already valid JSON value (no checks).

    Dicts and lists are copied recursively (tuples become lists); scalars are
    returned as they are.
    """
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [copy_json(item) for item in value]
    return value
