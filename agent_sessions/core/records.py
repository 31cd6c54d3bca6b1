"""The Session, Run and Event records: rows of ``asm_sessions``, ``asm_runs``, ``asm_events``.

Re-exported by :mod:`agent_sessions.core`, which documents them; no Django dependency.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent_sessions.core.stored import from_stored
from agent_sessions.core.vocabulary import (
    EVENT_ID_PREFIX,
    RUN_ID_PREFIX,
    SESSION_ID_PREFIX,
    TERMINAL_RUN_STATUSES,
    EventType,
    RunStatus,
    SessionStatus,
)
from agent_sessions.errors import ValidationError
from agent_sessions.validation import (
    check_choice,
    check_datetime,
    check_float,
    check_id,
    check_int,
    check_json,
    check_tags,
    check_varchar,
    copy_json,
    new_id,
    parse_datetime,
    utcnow,
)

__all__ = ["Event", "Run", "Session"]


# --------------------------------------------------------------------------- helpers


def _session_status(value: object) -> SessionStatus:
    return check_choice(value, SessionStatus, "status", code="invalid_status")


def _run_status(value: object) -> RunStatus:
    return check_choice(value, RunStatus, "status", code="invalid_status")


def _event_type(value: object) -> EventType:
    # A missing type is a plain validation error; an unknown one has its own code.
    if value is None or value == "":
        raise ValidationError("validation_error", "type is required", field="type")
    return check_choice(value, EventType, "type", code="invalid_event_type")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _field_names(cls: type[Any]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _reject_unknown(cls_name: str, given: Mapping[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValidationError(
            "validation_error",
            f"{cls_name} has no field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
            {"fields": unknown},
            field=unknown[0],
        )


def _as_record(cls_name: str, data: object) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(
            "validation_error",
            f"{cls_name}.from_dict() needs a dict, not {type(data).__name__}",
        )
    return data


def _require_keys(cls_name: str, data: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key not in data:
            raise ValidationError(
                "validation_error", f"{cls_name} dict is missing {key!r}", field=key
            )


def _pick(
    data: Mapping[str, Any], names: frozenset[str], datetime_fields: tuple[str, ...]
) -> dict[str, Any]:
    """Known keys of ``data``, with ISO-8601 timestamp strings parsed."""
    values = {name: data[name] for name in names if name in data}
    for name in datetime_fields:
        if name in values:
            values[name] = parse_datetime(values[name], name, required=False)
    return values


# --------------------------------------------------------------------------- Session


@dataclass(kw_only=True, slots=True)
class Session:
    """A conversation of one agent: the ``asm_sessions`` row.

    Construct with :meth:`new` (generated id and timestamps) or with every
    required field as keywords. Construction validates and normalises all
    fields; see :meth:`validate`.

    Attributes:
        id: Application-chosen id; generated ones are ``ses_`` + 32 hex.
        agent_id: The agent this session belongs to.
        status: A :class:`SessionStatus` (strings are converted).
        parent_session_id: Id of the session this one was forked from, if any.
        metadata: Free-form JSON object.
        context: JSON object of context handed to the agent.
        tags: Short strings used for filtering and retention exemptions.
        created_at: Creation time, aware UTC.
        updated_at: Last change, aware UTC.
        deleted_at: Soft-deletion time, or None.
    """

    id: str
    agent_id: str
    status: SessionStatus = SessionStatus.PENDING
    parent_session_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field and normalise it in place.

        Statuses given as strings become :class:`SessionStatus` members,
        datetimes become UTC, and JSON fields and tags are replaced by
        validated copies. Calling it again is harmless.

        Raises:
            ValidationError: ``invalid_status`` for an unknown status,
                ``validation_error`` for anything else (``details["field"]``
                names the field).
        """
        self.id = check_id(self.id, "id")
        self.agent_id = check_id(self.agent_id, "agent_id")
        self.status = _session_status(self.status)
        self.parent_session_id = check_id(
            self.parent_session_id, "parent_session_id", required=False
        )
        self.metadata = check_json(self.metadata, "metadata", require_object=True)
        self.context = check_json(self.context, "context", require_object=True)
        self.tags = check_tags(self.tags)
        self.created_at = check_datetime(self.created_at, "created_at")
        self.updated_at = check_datetime(self.updated_at, "updated_at")
        self.deleted_at = check_datetime(self.deleted_at, "deleted_at", required=False)

    @classmethod
    def new(cls, agent_id: str, **fields: Any) -> Session:
        """Create a session with generated id and timestamps.

        Defaults: id ``ses_<32 hex>``, status ``pending``, metadata ``{}``,
        context ``{}``, tags ``[]``, created_at now (UTC), updated_at equal to
        created_at. A field passed as None where a value is generated (id,
        created_at, updated_at) counts as not given.

        Args:
            agent_id: The agent this session belongs to.
            **fields: Any other :class:`Session` field.

        Returns:
            The validated session (not saved anywhere).

        Raises:
            ValidationError: for an unknown keyword or an invalid value.
        """
        _reject_unknown(cls.__name__, fields, _SESSION_FIELDS)
        values = dict(fields)
        if values.get("id") is None:
            values["id"] = new_id(SESSION_ID_PREFIX)
        if values.get("created_at") is None:
            values["created_at"] = utcnow()
        if values.get("updated_at") is None:
            values["updated_at"] = values["created_at"]
        values["agent_id"] = agent_id
        return cls(**values)

    def with_status(self, status: SessionStatus | str) -> Session:
        """Return a copy with ``status`` and ``updated_at`` set to now.

        Raises:
            ValidationError: ``invalid_status`` for an unknown status.
        """
        return dataclasses.replace(self, status=_session_status(status), updated_at=utcnow())

    def to_dict(self) -> dict[str, Any]:
        """Return the session as plain data: string keys, ISO-8601 timestamps, string status.

        JSON values and tags are deep copies.
        """
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "status": str(self.status),
            "parent_session_id": self.parent_session_id,
            "metadata": copy_json(self.metadata),
            "context": copy_json(self.context),
            "tags": list(self.tags),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "deleted_at": _iso(self.deleted_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session:
        """Build a session from :meth:`to_dict` output (or any similar mapping).

        ``id`` and ``agent_id`` are required; other missing keys take the
        defaults of :meth:`new` (created_at now, updated_at = created_at).
        Unknown keys are ignored. Timestamps may be datetimes or ISO-8601
        strings with an offset or ``Z``.

        Raises:
            ValidationError: ``data`` is not a mapping, a required key is
                missing, or a value is invalid.
        """
        data = _as_record(cls.__name__, data)
        _require_keys(cls.__name__, data, ("id", "agent_id"))
        values = _pick(data, _SESSION_FIELDS, ("created_at", "updated_at", "deleted_at"))
        values.setdefault("created_at", utcnow())
        values.setdefault("updated_at", values["created_at"])
        return cls(**values)

    @classmethod
    def from_stored_dict(cls, data: Mapping[str, Any]) -> Session:
        """Like :meth:`from_dict`, for a row someone stored: see :func:`from_stored`."""
        return from_stored(cls.from_dict, data, "status", SessionStatus)


# --------------------------------------------------------------------------- Run


@dataclass(kw_only=True, slots=True)
class Run:
    """One execution within a session: the ``asm_runs`` row.

    Attributes:
        id: Application-chosen id; generated ones are ``run_`` + 32 hex.
        session_id: The session's id (no row needs to exist for it).
        status: A :class:`RunStatus` (strings are converted).
        input: The run's input, a JSON object or None.
        output: The run's output, a JSON object or None.
        error: The error that ended the run, a JSON object or None.
        metadata: Free-form JSON object.
        turn_count: Completed turns, 0 or more.
        token_usage: JSON object of token counts (``input_tokens``, ``output_tokens``…).
        started_at: Start time, aware UTC.
        ended_at: End time, aware UTC, or None while the run has not ended.
        provider: The model provider (``claude``, ``codex``, ``amp``…), or None.
        provider_metadata: JSON object of provider details (e.g. ``model``).
        cost_usd: The run's cost in USD when known, else None.
    """

    id: str
    session_id: str
    status: RunStatus = RunStatus.PENDING
    input: Any = None
    output: Any = None
    error: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    turn_count: int = 0
    token_usage: dict[str, Any] = field(default_factory=dict)
    started_at: datetime
    ended_at: datetime | None = None
    provider: str | None = None
    provider_metadata: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field and normalise it in place.

        Raises:
            ValidationError: ``invalid_status`` for an unknown status,
                ``validation_error`` for anything else (``details["field"]``
                names the field).
        """
        self.id = check_id(self.id, "id")
        self.session_id = check_id(self.session_id, "session_id")
        self.status = _run_status(self.status)
        # JSON objects only: ASM declares them as maps and its readers crash on
        # a string, list or number there.
        self.input = check_json(self.input, "input", allow_none=True, require_object=True)
        self.output = check_json(self.output, "output", allow_none=True, require_object=True)
        self.error = check_json(self.error, "error", allow_none=True, require_object=True)
        self.metadata = check_json(self.metadata, "metadata", require_object=True)
        self.turn_count = check_int(self.turn_count, "turn_count", minimum=0)
        self.token_usage = check_json(self.token_usage, "token_usage", require_object=True)
        self.started_at = check_datetime(self.started_at, "started_at")
        self.ended_at = check_datetime(self.ended_at, "ended_at", required=False)
        self.provider = check_varchar(self.provider, "provider")
        self.provider_metadata = check_json(
            self.provider_metadata, "provider_metadata", require_object=True
        )
        self.cost_usd = check_float(self.cost_usd, "cost_usd")

    @property
    def is_terminal(self) -> bool:
        """Whether the run's status is one of :data:`TERMINAL_RUN_STATUSES`."""
        return self.status in TERMINAL_RUN_STATUSES

    @classmethod
    def new(cls, session_id: str, **fields: Any) -> Run:
        """Create a run with generated id and start time.

        Defaults: id ``run_<32 hex>``, status ``pending``, metadata ``{}``,
        turn_count 0, token_usage ``{}``, provider_metadata ``{}``, started_at
        now (UTC); input, output, error, ended_at, provider, cost_usd None. An
        id or started_at passed as None counts as not given.

        Args:
            session_id: The session the run belongs to.
            **fields: Any other :class:`Run` field.

        Raises:
            ValidationError: for an unknown keyword or an invalid value.
        """
        _reject_unknown(cls.__name__, fields, _RUN_FIELDS)
        values = dict(fields)
        if values.get("id") is None:
            values["id"] = new_id(RUN_ID_PREFIX)
        if values.get("started_at") is None:
            values["started_at"] = utcnow()
        values["session_id"] = session_id
        return cls(**values)

    def with_status(self, status: RunStatus | str) -> Run:
        """Return a copy with ``status``; entering a terminal status sets ``ended_at`` to now.

        For a non-terminal status ``ended_at`` is kept as it is.

        Raises:
            ValidationError: ``invalid_status`` for an unknown status.
        """
        new_status = _run_status(status)
        ended_at = utcnow() if new_status in TERMINAL_RUN_STATUSES else self.ended_at
        return dataclasses.replace(self, status=new_status, ended_at=ended_at)

    def with_output(self, output: Any) -> Run:
        """Return a copy that completed with ``output`` (status ``completed``, ended_at now).

        Raises:
            ValidationError: ``output`` is not storable JSON.
        """
        return dataclasses.replace(
            self, output=output, status=RunStatus.COMPLETED, ended_at=utcnow()
        )

    def with_error(self, error: Any) -> Run:
        """Return a copy that failed with ``error`` (status ``failed``, ended_at now).

        Raises:
            ValidationError: ``error`` is not storable JSON.
        """
        return dataclasses.replace(self, error=error, status=RunStatus.FAILED, ended_at=utcnow())

    def with_token_usage(self, usage: Mapping[str, Any]) -> Run:
        """Return a copy with ``usage`` added to ``token_usage``.

        Per key: when both the stored and the new value are numbers (int or
        float; bool is not a number), they are added; otherwise the new value
        replaces the stored one. Keys only in ``token_usage`` are kept.

        Raises:
            ValidationError: ``usage`` is not a JSON object, or a sum is not finite.
        """
        added = check_json(usage, "token_usage", require_object=True)
        merged = dict(self.token_usage)
        for key, value in added.items():
            current = merged.get(key)
            merged[key] = current + value if _is_number(current) and _is_number(value) else value
        return dataclasses.replace(self, token_usage=merged)

    def with_turn(self) -> Run:
        """Return a copy with ``turn_count`` increased by one."""
        return dataclasses.replace(self, turn_count=self.turn_count + 1)

    def to_dict(self) -> dict[str, Any]:
        """Return the run as plain data: string keys, ISO-8601 timestamps, string status.

        JSON values are deep copies.
        """
        return {
            "id": self.id,
            "session_id": self.session_id,
            "status": str(self.status),
            "input": copy_json(self.input),
            "output": copy_json(self.output),
            "error": copy_json(self.error),
            "metadata": copy_json(self.metadata),
            "turn_count": self.turn_count,
            "token_usage": copy_json(self.token_usage),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "provider": self.provider,
            "provider_metadata": copy_json(self.provider_metadata),
            "cost_usd": self.cost_usd,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        """Build a run from :meth:`to_dict` output (or any similar mapping).

        ``id`` and ``session_id`` are required; other missing keys take the
        defaults of :meth:`new` (started_at now). Unknown keys are ignored.

        Raises:
            ValidationError: ``data`` is not a mapping, a required key is
                missing, or a value is invalid.
        """
        data = _as_record(cls.__name__, data)
        _require_keys(cls.__name__, data, ("id", "session_id"))
        values = _pick(data, _RUN_FIELDS, ("started_at", "ended_at"))
        values.setdefault("started_at", utcnow())
        return cls(**values)

    @classmethod
    def from_stored_dict(cls, data: Mapping[str, Any]) -> Run:
        """Like :meth:`from_dict`, for a row someone stored: see :func:`from_stored`."""
        return from_stored(cls.from_dict, data, "status", RunStatus)


# --------------------------------------------------------------------------- Event


@dataclass(kw_only=True, slots=True)
class Event:
    """Something that happened in a session: the ``asm_events`` row.

    Attributes:
        id: Application-chosen id; generated ones are ``evt_`` + 32 hex.
        type: An :class:`EventType` (strings are converted).
        timestamp: When it happened, aware UTC.
        session_id: The session's id (no row needs to exist for it).
        run_id: The run's id, or None.
        sequence_number: Per-session position assigned by the store on append
            (1, 2, …); None before the event is stored.
        data: JSON object, the event's payload.
        metadata: Free-form JSON object.
        schema_version: Version of the payload's shape, 1 or more.
        provider: The model provider, or None.
        correlation_id: Id tying related events together, or None.
    """

    id: str
    type: EventType
    timestamp: datetime
    session_id: str
    run_id: str | None = None
    sequence_number: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    schema_version: int = 1
    provider: str | None = None
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field and normalise it in place.

        Raises:
            ValidationError: ``invalid_event_type`` for an unknown type,
                ``validation_error`` for anything else, including a missing or
                empty type (``details["field"]`` names the field).
        """
        self.id = check_id(self.id, "id")
        self.type = _event_type(self.type)
        self.timestamp = check_datetime(self.timestamp, "timestamp")
        self.session_id = check_id(self.session_id, "session_id")
        self.run_id = check_id(self.run_id, "run_id", required=False)
        self.sequence_number = check_int(
            self.sequence_number, "sequence_number", minimum=1, required=False
        )
        self.data = check_json(self.data, "data", require_object=True)
        self.metadata = check_json(self.metadata, "metadata", require_object=True)
        self.schema_version = check_int(self.schema_version, "schema_version", minimum=1)
        self.provider = check_varchar(self.provider, "provider")
        self.correlation_id = check_varchar(self.correlation_id, "correlation_id")

    @classmethod
    def new(cls, type: EventType | str, session_id: str, **fields: Any) -> Event:
        """Create an event with generated id and timestamp.

        Defaults: id ``evt_<32 hex>``, timestamp now (UTC) unless given,
        data ``{}``, metadata ``{}``, schema_version 1, sequence_number None
        (the store assigns it), run_id/provider/correlation_id None. An id or
        timestamp passed as None counts as not given.

        Args:
            type: An :class:`EventType` or its string value.
            session_id: The session the event belongs to.
            **fields: Any other :class:`Event` field.

        Raises:
            ValidationError: ``invalid_event_type`` for an unknown type,
                ``validation_error`` for an unknown keyword or another invalid value.
        """
        _reject_unknown(cls.__name__, fields, _EVENT_FIELDS)
        values = dict(fields)
        if values.get("id") is None:
            values["id"] = new_id(EVENT_ID_PREFIX)
        if values.get("timestamp") is None:
            values["timestamp"] = utcnow()
        values["type"] = type
        values["session_id"] = session_id
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the event as plain data: string keys, ISO-8601 timestamp, string type.

        JSON values are deep copies.
        """
        return {
            "id": self.id,
            "type": str(self.type),
            "timestamp": _iso(self.timestamp),
            "session_id": self.session_id,
            "run_id": self.run_id,
            "sequence_number": self.sequence_number,
            "data": copy_json(self.data),
            "metadata": copy_json(self.metadata),
            "schema_version": self.schema_version,
            "provider": self.provider,
            "correlation_id": self.correlation_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Build an event from :meth:`to_dict` output (or any similar mapping).

        ``id``, ``type``, ``session_id`` and ``schema_version`` (an integer of
        at least 1) are required; a missing timestamp becomes now, other
        missing keys take their defaults. Unknown keys are ignored.

        Raises:
            ValidationError: ``data`` is not a mapping, a required key is
                missing, or a value is invalid.
        """
        data = _as_record(cls.__name__, data)
        _require_keys(cls.__name__, data, ("id", "type", "session_id", "schema_version"))
        values = _pick(data, _EVENT_FIELDS, ("timestamp",))
        values.setdefault("timestamp", utcnow())
        return cls(**values)

    @classmethod
    def from_stored_dict(cls, data: Mapping[str, Any]) -> Event:
        """Like :meth:`from_dict`, for a row someone stored: see :func:`from_stored`."""
        return from_stored(cls.from_dict, data, "type", EventType)


_SESSION_FIELDS = _field_names(Session)
_RUN_FIELDS = _field_names(Run)
_EVENT_FIELDS = _field_names(Event)
