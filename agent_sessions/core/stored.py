"""Records built from stored rows, keeping what a newer writer wrote (no Django dependency)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from agent_sessions.core.vocabulary import RunStatus
from agent_sessions.validation import check_json, check_varchar

if TYPE_CHECKING:  # the records call from_stored; a run-time import would be circular
    from agent_sessions.core.records import Event, Run, Session

__all__ = ["from_stored"]

_R = TypeVar("_R", "Session", "Run", "Event")
_RUN_OBJECT_FIELDS = ("input", "output", "error")


def from_stored(
    build: Callable[[Mapping[str, Any]], _R],
    values: Mapping[str, Any],
    vocabulary_field: str,
    vocabulary: type[enum.StrEnum],
) -> _R:
    """Build a record from a stored row, keeping what a newer writer wrote.

    The one lenient construction path every read uses (store, query, export,
    admin, archive, adapters): a status or event type this version does not
    know is kept as its plain string instead of failing the read, and so is
    a run's ``input``/``output``/``error`` that is not a JSON object (rows
    written before that rule). Everything else is validated as usual. A
    record read this way cannot be written back unchanged: ``validate()``,
    which every write runs, still refuses the unknown value.

    Args:
        build: Builds the record from values (``cls.from_dict`` or a constructor).
        values: The row's values.
        vocabulary_field: ``"status"`` or ``"type"``.
        vocabulary: The enum of known values.
    """
    kept: dict[str, Any] = {}
    values = dict(values)
    raw = values.get(vocabulary_field)
    if isinstance(raw, str) and raw and raw not in vocabulary._value2member_map_:
        kept[vocabulary_field] = check_varchar(raw, vocabulary_field)
        values[vocabulary_field] = next(iter(vocabulary))
    if vocabulary is RunStatus:
        for name in _RUN_OBJECT_FIELDS:
            value = values.get(name)
            if value is not None and not isinstance(value, dict):
                kept[name] = check_json(value, name)
                values[name] = None
    record = build(values)
    for name, value in kept.items():
        setattr(record, name, value)
    return record
