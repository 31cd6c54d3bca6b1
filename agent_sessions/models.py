"""Django models on AgentSessionManager's five ``asm_*`` tables.

Field names equal column names, so the ORM reads naturally::

    Event.objects.filter(session_id=sid).order_by("sequence_number")

There are no foreign keys in the database: an event may name a session that
has no row (legal data in ASM), so relations are plain id columns and every
row stays visible to every query. ``to_domain()``/``from_domain()`` convert
between rows and the Django-free dataclasses of :mod:`agent_sessions.core`.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from agent_sessions import core
from agent_sessions.fields import (
    AsmIdField,
    AsmIndex,
    EmptyTags,
    JSONObjectField,
    TagsField,
    UniqueIndex,
    UTCDateTimeField,
)


def _json_object(**kwargs: Any) -> JSONObjectField:
    """A nullable JSON map column with ASM's ``DEFAULT '{}'``."""
    kwargs.setdefault("null", True)
    return JSONObjectField(default=dict, db_default={}, blank=True, **kwargs)


#: The tag of ``asm_sessions`` rows that hold a framework's shared state, not a
#: conversation (the ADK adapter's ``app:`` and ``user:`` state rows).
#: Retention never deletes them, and searches and the admin do not list them.
INTERNAL_TAG = "asm:internal"


def conversations(queryset: models.QuerySet[Session]) -> models.QuerySet[Session]:
    """The sessions of ``queryset`` that are conversations (no :data:`INTERNAL_TAG`)."""
    return queryset.exclude(tags__has_any=[INTERNAL_TAG])


class SessionQuerySet(models.QuerySet["Session"]):
    """Domain queries on sessions, spelled once."""

    def conversations(self) -> models.QuerySet[Session]:
        """Sessions that are conversations: rows tagged :data:`INTERNAL_TAG` left out."""
        return conversations(self)


class Session(models.Model):
    """One agent session (``asm_sessions``)."""

    id = AsmIdField(primary_key=True, help_text="Application-chosen id, e.g. ses_<32 hex>.")
    agent_id = models.CharField(max_length=255, help_text="The agent this session belongs to.")
    status = models.CharField(
        max_length=255,
        choices=[(s.value, s.value) for s in core.SessionStatus],
        help_text="pending, active, paused, completed, failed or cancelled.",
    )
    parent_session_id = models.CharField(
        max_length=255, null=True, blank=True, help_text="Id of the session this one forked from."
    )
    metadata = _json_object(help_text="Free-form JSON object.")
    context = _json_object(help_text="The agent's context as a JSON object.")
    tags = TagsField(
        null=True, default=list, db_default=EmptyTags(), blank=True, help_text="Labels."
    )
    created_at = UTCDateTimeField(help_text="When the session was created (UTC).")
    updated_at = UTCDateTimeField(help_text="When the session last changed (UTC).")
    deleted_at = UTCDateTimeField(
        null=True, blank=True, help_text="Set when soft-deleted by retention (UTC)."
    )

    objects = SessionQuerySet.as_manager()

    class Meta:
        db_table = "asm_sessions"
        verbose_name = "session"
        indexes = [
            AsmIndex(fields=["status"], name="asm_sessions_status_index"),
            AsmIndex(fields=["agent_id"], name="asm_sessions_agent_id_index"),
            AsmIndex(fields=["created_at"], name="asm_sessions_created_at_index"),
            AsmIndex(fields=["deleted_at"], name="asm_sessions_deleted_at_index"),
            # Added by 0002 for the QueryAPI's keyset paging (default session order).
            AsmIndex(fields=["updated_at", "id"], name="asm_sessions_updated_at_id_index"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    def to_domain(self) -> core.Session:
        """Return this row as a :class:`agent_sessions.core.Session`."""
        return core.from_stored(
            lambda values: core.Session(**values),
            dict(
                id=self.id,
                agent_id=self.agent_id,
                status=self.status,
                parent_session_id=self.parent_session_id,
                metadata=self.metadata if self.metadata is not None else {},
                context=self.context if self.context is not None else {},
                tags=list(self.tags or []),
                created_at=self.created_at,
                updated_at=self.updated_at,
                deleted_at=self.deleted_at,
            ),
            "status",
            core.SessionStatus,
        )

    @classmethod
    def from_domain(cls, session: core.Session) -> Session:
        """Return an unsaved row holding ``session``'s values."""
        return cls(
            id=session.id,
            agent_id=session.agent_id,
            status=str(session.status),
            parent_session_id=session.parent_session_id,
            metadata=session.metadata,
            context=session.context,
            tags=list(session.tags),
            created_at=session.created_at,
            updated_at=session.updated_at,
            deleted_at=session.deleted_at,
        )


class Run(models.Model):
    """One run (an agent turn sequence) within a session (``asm_runs``)."""

    id = AsmIdField(primary_key=True, help_text="Application-chosen id, e.g. run_<32 hex>.")
    session_id = models.CharField(
        max_length=255, help_text="The session's id (no foreign key: it may have no row)."
    )
    status = models.CharField(
        max_length=255,
        choices=[(s.value, s.value) for s in core.RunStatus],
        help_text="pending, running, completed, failed, cancelled or timeout.",
    )
    input = models.JSONField(null=True, blank=True, help_text="The run's input (any JSON).")
    output = models.JSONField(null=True, blank=True, help_text="The run's output (any JSON).")
    error = models.JSONField(null=True, blank=True, help_text="The error that ended the run.")
    metadata = _json_object(help_text="Free-form JSON object.")
    turn_count = models.IntegerField(
        null=True, default=0, db_default=0, help_text="Number of completed turns."
    )
    token_usage = _json_object(help_text="Token counts, e.g. input_tokens, output_tokens.")
    started_at = UTCDateTimeField(help_text="When the run started (UTC).")
    ended_at = UTCDateTimeField(null=True, blank=True, help_text="When the run ended (UTC).")
    provider = models.CharField(
        max_length=255, null=True, blank=True, help_text="claude, codex, amp, …"
    )
    provider_metadata = JSONObjectField(
        default=dict, db_default={}, blank=True, help_text="Provider details, e.g. model."
    )
    cost_usd = models.FloatField(
        null=True, blank=True, help_text="Stored cost in USD; computed from pricing when empty."
    )

    class Meta:
        db_table = "asm_runs"
        verbose_name = "run"
        indexes = [
            AsmIndex(fields=["session_id", "status"], name="asm_runs_session_id_status_index"),
            AsmIndex(fields=["provider"], name="asm_runs_provider_index"),
            AsmIndex(fields=["started_at"], name="asm_runs_started_at_index"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    def to_domain(self) -> core.Run:
        """Return this row as a :class:`agent_sessions.core.Run`."""
        return core.from_stored(
            lambda values: core.Run(**values),
            dict(
                id=self.id,
                session_id=self.session_id,
                status=self.status,
                input=self.input,
                output=self.output,
                error=self.error,
                metadata=self.metadata if self.metadata is not None else {},
                turn_count=self.turn_count if self.turn_count is not None else 0,
                token_usage=self.token_usage if self.token_usage is not None else {},
                started_at=self.started_at,
                ended_at=self.ended_at,
                provider=self.provider,
                provider_metadata=(
                    self.provider_metadata if self.provider_metadata is not None else {}
                ),
                cost_usd=self.cost_usd,
            ),
            "status",
            core.RunStatus,
        )

    @classmethod
    def from_domain(cls, run: core.Run) -> Run:
        """Return an unsaved row holding ``run``'s values."""
        return cls(
            id=run.id,
            session_id=run.session_id,
            status=str(run.status),
            input=run.input,
            output=run.output,
            error=run.error,
            metadata=run.metadata,
            turn_count=run.turn_count,
            token_usage=run.token_usage,
            started_at=run.started_at,
            ended_at=run.ended_at,
            provider=run.provider,
            provider_metadata=run.provider_metadata,
            cost_usd=run.cost_usd,
        )


class Event(models.Model):
    """One entry of a session's append-only event log (``asm_events``)."""

    id = AsmIdField(primary_key=True, help_text="Application-chosen id, e.g. evt_<32 hex>.")
    type = models.CharField(
        max_length=255,
        choices=[(t.value, t.value) for t in core.EventType],
        help_text="One of the 28 ASM event types.",
    )
    timestamp = UTCDateTimeField(help_text="When the event happened (UTC).")
    session_id = models.CharField(
        max_length=255, help_text="The session's id (no foreign key: it may have no row)."
    )
    run_id = models.CharField(max_length=255, null=True, blank=True, help_text="The run's id.")
    # Settable to None: from_domain() copies an event the store has not numbered yet.
    sequence_number: models.IntegerField[int | None, int] = models.IntegerField(
        help_text="Position in the session's log: 1, 2, 3, … without gaps."
    )
    data = _json_object(help_text="The event's payload (JSON object).")
    metadata = _json_object(help_text="Free-form JSON object.")
    schema_version = models.IntegerField(default=1, db_default=1, help_text="Payload version.")
    provider = models.CharField(max_length=255, null=True, blank=True, help_text="Provider name.")
    correlation_id = models.CharField(
        max_length=255, null=True, blank=True, help_text="Ties related events together."
    )

    class Meta:
        db_table = "asm_events"
        verbose_name = "event"
        indexes = [
            UniqueIndex(
                fields=["session_id", "sequence_number"],
                name="asm_events_session_id_sequence_number_index",
            ),
            AsmIndex(fields=["session_id", "type"], name="asm_events_session_id_type_index"),
            AsmIndex(fields=["session_id", "run_id"], name="asm_events_session_id_run_id_index"),
            AsmIndex(fields=["correlation_id"], name="asm_events_correlation_id_index"),
            AsmIndex(fields=["provider"], name="asm_events_provider_index"),
            AsmIndex(fields=["timestamp"], name="asm_events_timestamp_index"),
            # Added by 0002 for the QueryAPI's keyset paging (default event order).
            AsmIndex(
                fields=["sequence_number", "session_id", "id"],
                name="asm_events_sequence_number_session_id_id_index",
            ),
            # Added by 0003 for the admin's event search by run id.
            AsmIndex(fields=["run_id"], name="asm_events_run_id_index"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.sequence_number} {self.type}"

    def to_domain(self) -> core.Event:
        """Return this row as a :class:`agent_sessions.core.Event`."""
        return core.from_stored(
            lambda values: core.Event(**values),
            dict(
                id=self.id,
                type=self.type,
                timestamp=self.timestamp,
                session_id=self.session_id,
                run_id=self.run_id,
                sequence_number=self.sequence_number,
                data=self.data if self.data is not None else {},
                metadata=self.metadata if self.metadata is not None else {},
                schema_version=self.schema_version,
                provider=self.provider,
                correlation_id=self.correlation_id,
            ),
            "type",
            core.EventType,
        )

    @classmethod
    def from_domain(cls, event: core.Event) -> Event:
        """Return an unsaved row holding ``event``'s values."""
        return cls(
            id=event.id,
            type=str(event.type),
            timestamp=event.timestamp,
            session_id=event.session_id,
            run_id=event.run_id,
            sequence_number=event.sequence_number,
            data=event.data,
            metadata=event.metadata,
            schema_version=event.schema_version,
            provider=event.provider,
            correlation_id=event.correlation_id,
        )


class SessionSequence(models.Model):
    """The per-session counter behind gap-free sequence numbers."""

    session_id = AsmIdField(primary_key=True, help_text="The session's id.")
    last_sequence = models.IntegerField(
        default=0, db_default=0, help_text="Highest sequence number handed out."
    )
    updated_at = UTCDateTimeField(null=True, blank=True, help_text="Last append (UTC).")

    class Meta:
        db_table = "asm_session_sequences"
        verbose_name = "session sequence"

    def __str__(self) -> str:
        return f"{self.session_id}: {self.last_sequence}"


class Artifact(models.Model):
    """A registered artifact (file, blob) of a session or run (``asm_artifacts``)."""

    id = AsmIdField(primary_key=True, help_text="Application-chosen id, e.g. art_<16 chars>.")
    session_id = models.CharField(
        max_length=255, null=True, blank=True, help_text="The session's id."
    )
    run_id = models.CharField(max_length=255, null=True, blank=True, help_text="The run's id.")
    key = models.CharField(max_length=255, help_text="Unique key of the artifact.")
    content_type = models.CharField(
        max_length=255, null=True, blank=True, help_text="MIME type, e.g. text/plain."
    )
    byte_size = models.BigIntegerField(help_text="Size in bytes.")
    checksum_sha256 = models.CharField(max_length=255, help_text="SHA-256 of the content (hex).")
    storage_backend = models.CharField(max_length=255, help_text="Where it is stored, e.g. s3.")
    storage_ref = models.CharField(max_length=255, help_text="Backend-specific reference.")
    metadata = JSONObjectField(default=dict, db_default={}, blank=True, help_text="JSON object.")
    created_at = UTCDateTimeField(help_text="When it was registered (UTC).")
    deleted_at = UTCDateTimeField(null=True, blank=True, help_text="Set when soft-deleted (UTC).")

    class Meta:
        db_table = "asm_artifacts"
        verbose_name = "artifact"
        indexes = [
            UniqueIndex(fields=["key"], name="asm_artifacts_key_index"),
            AsmIndex(fields=["session_id"], name="asm_artifacts_session_id_index"),
            AsmIndex(fields=["created_at"], name="asm_artifacts_created_at_index"),
        ]

    def __str__(self) -> str:
        return self.key


#: The ``asm_artifacts`` columns, in table order: what artifact dicts hold.
ARTIFACT_COLUMNS: tuple[str, ...] = tuple(f.attname for f in Artifact._meta.concrete_fields)
