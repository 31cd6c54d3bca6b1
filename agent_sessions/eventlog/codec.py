"""The event codec: an :class:`~agent_sessions.core.Event` becomes an ``asm_events`` row, and back.

One place for both directions: :func:`prepared_event` validates the caller's
event once (a normalised copy), :func:`encode_event` runs the event pipeline
(:mod:`agent_sessions.pipeline`: redaction, shape warnings) and turns it into
the column values every writer stores, and :func:`event_from_row` builds an
``Event`` from a stored row without validating it again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from agent_sessions import core
from agent_sessions.errors import ValidationError
from agent_sessions.fields import to_utc_naive
from agent_sessions.pipeline import PipelineOutcome, process_event

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_SELECT",
    "QUOTED_EVENT_COLUMNS",
    "checked_events",
    "db_time",
    "dump_json",
    "encode_event",
    "event_from_row",
    "event_params",
    "event_row",
    "prepared_event",
    "stored_timestamp",
]

#: The columns of ``asm_events`` in table order; rows are read and written in this order.
EVENT_COLUMNS = (
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
)


QUOTED_EVENT_COLUMNS = ", ".join(f'"{name}"' for name in EVENT_COLUMNS)


#: JSON text as ASM stores it: compact, UTF-8 as is, no NaN or infinity.
dump_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

EVENT_SELECT = f"SELECT {QUOTED_EVENT_COLUMNS} FROM asm_events"
_EVENT_TYPES = {t.value: t for t in core.EventType}
_EVENT_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(core.Event))
_loads = json.loads


def encode_event(event: core.Event) -> tuple[dict[str, Any], PipelineOutcome | None]:
    """The columns of a validated event as the named parameters of
    :data:`INSERT_EVENT_FROM_COUNTER` (its timestamp is already UTC), after the
    event pipeline.

    The one place where an event becomes what is written: every writer
    (the store, the framework adapters' statements) builds its parameters
    here, so the pipeline (:func:`agent_sessions.pipeline.process_event`:
    redaction, shape warnings) cannot be skipped. It changes ``event`` in
    place, so pass the writer's own validated copy; that copy then carries
    what was stored.

    Returns:
        The parameters, and what the pipeline changed (None: nothing), for
        the writer's signals.
    """
    outcome = process_event(event)
    return {
        "id": event.id,
        "type": event.type.value,
        "timestamp": event.timestamp.replace(tzinfo=None),
        "session_id": event.session_id,
        "run_id": event.run_id,
        "data": dump_json(event.data),
        "metadata": dump_json(event.metadata),
        "schema_version": event.schema_version,
        "provider": event.provider,
        "correlation_id": event.correlation_id,
    }, outcome


def event_params(event: core.Event) -> dict[str, Any]:
    """:func:`encode_event` without the pipeline's outcome (for writers that send no signals)."""
    return encode_event(event)[0]


def db_time(connection: BaseDatabaseWrapper, value: datetime) -> Any:
    """An aware datetime as a ``timestamp`` parameter: naive UTC, text on SQLite."""
    naive = to_utc_naive(value)
    if connection.vendor == "postgresql":
        return naive
    # The fixed-width text UTCDateTimeField writes, so comparisons stay chronological.
    return naive.isoformat(" ", timespec="microseconds")


def stored_timestamp(value: Any) -> datetime:
    """A ``timestamp`` column as a raw cursor returns it (naive UTC; ISO text on SQLite), aware."""
    if type(value) is str:
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


def _json_object(value: Any) -> Any:
    if value is None:
        return {}
    return _loads(value) if type(value) is str else value


def event_from_row(row: Sequence[Any]) -> core.Event:
    """Build an Event from a stored row without validating it again (it was validated on write).

    Rows written by other applications get the same read conversions as the
    ORM's: NULL JSON maps read as ``{}``, timestamps come back aware UTC.
    """
    event = _blank_event()
    (
        event.id,
        type_,
        timestamp,
        event.session_id,
        event.run_id,
        event.sequence_number,
        data,
        metadata,
        event.schema_version,
        event.provider,
        event.correlation_id,
    ) = row
    # A type this version does not know (written by a newer ASM) is passed
    # through as its string rather than making the whole log unreadable.
    event.type = _EVENT_TYPES.get(type_, type_)
    event.timestamp = stored_timestamp(timestamp)
    event.data = _json_object(data)
    event.metadata = _json_object(metadata)
    return event


def _blank_event() -> core.Event:
    # Skips __init__ and with it validation: the row was validated when written.
    return object.__new__(core.Event)


def prepared_event(event: core.Event) -> core.Event:
    """A validated copy of ``event`` without its caller-supplied sequence number."""
    if not isinstance(event, core.Event):
        raise ValidationError(
            "validation_error", f"expected an Event, not {type(event).__name__}", field="event"
        )
    # A shallow copy, then validate() on it: it replaces every field by a checked,
    # normalised value (JSON deep-copied), so the caller's object stays untouched.
    # Cheaper than dataclasses.replace(), which re-reads the field list each call.
    copy = _blank_event()
    for name in _EVENT_FIELD_NAMES:
        setattr(copy, name, getattr(event, name))
    copy.sequence_number = None
    copy.validate()
    return copy


def checked_events(events: Sequence[core.Event]) -> list[core.Event]:
    if isinstance(events, str | bytes) or not isinstance(events, Sequence | tuple | list):
        raise ValidationError(
            "validation_error", "events must be a sequence of Event objects", field="events"
        )
    return [prepared_event(event) for event in events]


def event_row(
    connection: BaseDatabaseWrapper, event: core.Event, number: int
) -> tuple[list[Any], PipelineOutcome | None]:
    """The event's row in :data:`EVENT_COLUMNS` order, built by the event codec (pipeline run)."""
    params, outcome = encode_event(event)
    params["sequence_number"] = number
    if connection.vendor != "postgresql":
        params["timestamp"] = db_time(connection, event.timestamp)
    return [params[name] for name in EVENT_COLUMNS], outcome
