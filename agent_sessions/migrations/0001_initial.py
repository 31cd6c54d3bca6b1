"""The five asm_* tables exactly as AgentSessionManager's Ecto migration (v0.8) makes them.

Each CreateModel adopts a table an Elixir application already created
instead of failing (see agent_sessions.operations).
"""

from django.db import migrations, models

import agent_sessions.fields
import agent_sessions.operations


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        agent_sessions.operations.AdoptOrCreateModel(
            name="SessionSequence",
            fields=[
                (
                    "session_id",
                    agent_sessions.fields.AsmIdField(
                        help_text="The session's id.",
                        max_length=255,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "last_sequence",
                    models.IntegerField(
                        db_default=0, default=0, help_text="Highest sequence number handed out."
                    ),
                ),
                (
                    "updated_at",
                    agent_sessions.fields.UTCDateTimeField(
                        blank=True, help_text="Last append (UTC).", null=True
                    ),
                ),
            ],
            options={
                "verbose_name": "session sequence",
                "db_table": "asm_session_sequences",
            },
        ),
        agent_sessions.operations.AdoptOrCreateModel(
            name="Artifact",
            fields=[
                (
                    "id",
                    agent_sessions.fields.AsmIdField(
                        help_text="Application-chosen id, e.g. art_<16 chars>.",
                        max_length=255,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "session_id",
                    models.CharField(
                        blank=True, help_text="The session's id.", max_length=255, null=True
                    ),
                ),
                (
                    "run_id",
                    models.CharField(
                        blank=True, help_text="The run's id.", max_length=255, null=True
                    ),
                ),
                ("key", models.CharField(help_text="Unique key of the artifact.", max_length=255)),
                (
                    "content_type",
                    models.CharField(
                        blank=True,
                        help_text="MIME type, e.g. text/plain.",
                        max_length=255,
                        null=True,
                    ),
                ),
                ("byte_size", models.BigIntegerField(help_text="Size in bytes.")),
                (
                    "checksum_sha256",
                    models.CharField(help_text="SHA-256 of the content (hex).", max_length=255),
                ),
                (
                    "storage_backend",
                    models.CharField(help_text="Where it is stored, e.g. s3.", max_length=255),
                ),
                (
                    "storage_ref",
                    models.CharField(help_text="Backend-specific reference.", max_length=255),
                ),
                (
                    "metadata",
                    agent_sessions.fields.JSONObjectField(
                        blank=True, db_default={}, default=dict, help_text="JSON object."
                    ),
                ),
                (
                    "created_at",
                    agent_sessions.fields.UTCDateTimeField(
                        help_text="When it was registered (UTC)."
                    ),
                ),
                (
                    "deleted_at",
                    agent_sessions.fields.UTCDateTimeField(
                        blank=True, help_text="Set when soft-deleted (UTC).", null=True
                    ),
                ),
            ],
            options={
                "verbose_name": "artifact",
                "db_table": "asm_artifacts",
                "indexes": [
                    agent_sessions.fields.UniqueIndex(
                        fields=["key"], name="asm_artifacts_key_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["session_id"], name="asm_artifacts_session_id_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["created_at"], name="asm_artifacts_created_at_index"
                    ),
                ],
            },
        ),
        agent_sessions.operations.AdoptOrCreateModel(
            name="Event",
            fields=[
                (
                    "id",
                    agent_sessions.fields.AsmIdField(
                        help_text="Application-chosen id, e.g. evt_<32 hex>.",
                        max_length=255,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "type",
                    models.CharField(
                        choices=[
                            ("session_created", "session_created"),
                            ("session_started", "session_started"),
                            ("session_paused", "session_paused"),
                            ("session_resumed", "session_resumed"),
                            ("session_completed", "session_completed"),
                            ("session_failed", "session_failed"),
                            ("session_cancelled", "session_cancelled"),
                            ("run_started", "run_started"),
                            ("run_completed", "run_completed"),
                            ("run_failed", "run_failed"),
                            ("run_cancelled", "run_cancelled"),
                            ("run_timeout", "run_timeout"),
                            ("message_sent", "message_sent"),
                            ("message_received", "message_received"),
                            ("message_streamed", "message_streamed"),
                            ("tool_call_started", "tool_call_started"),
                            ("tool_call_completed", "tool_call_completed"),
                            ("tool_call_failed", "tool_call_failed"),
                            ("error_occurred", "error_occurred"),
                            ("error_recovered", "error_recovered"),
                            ("token_usage_updated", "token_usage_updated"),
                            ("turn_completed", "turn_completed"),
                            ("policy_violation", "policy_violation"),
                            ("workspace_snapshot_taken", "workspace_snapshot_taken"),
                            ("workspace_diff_computed", "workspace_diff_computed"),
                            ("tool_approval_requested", "tool_approval_requested"),
                            ("tool_approval_granted", "tool_approval_granted"),
                            ("tool_approval_denied", "tool_approval_denied"),
                        ],
                        help_text="One of the 28 ASM event types.",
                        max_length=255,
                    ),
                ),
                (
                    "timestamp",
                    agent_sessions.fields.UTCDateTimeField(
                        help_text="When the event happened (UTC)."
                    ),
                ),
                (
                    "session_id",
                    models.CharField(
                        help_text="The session's id (no foreign key: it may have no row).",
                        max_length=255,
                    ),
                ),
                (
                    "run_id",
                    models.CharField(
                        blank=True, help_text="The run's id.", max_length=255, null=True
                    ),
                ),
                (
                    "sequence_number",
                    models.IntegerField(
                        help_text="Position in the session's log: 1, 2, 3, … without gaps."
                    ),
                ),
                (
                    "data",
                    agent_sessions.fields.JSONObjectField(
                        blank=True,
                        db_default={},
                        default=dict,
                        help_text="The event's payload (JSON object).",
                        null=True,
                    ),
                ),
                (
                    "metadata",
                    agent_sessions.fields.JSONObjectField(
                        blank=True,
                        db_default={},
                        default=dict,
                        help_text="Free-form JSON object.",
                        null=True,
                    ),
                ),
                (
                    "schema_version",
                    models.IntegerField(db_default=1, default=1, help_text="Payload version."),
                ),
                (
                    "provider",
                    models.CharField(
                        blank=True, help_text="Provider name.", max_length=255, null=True
                    ),
                ),
                (
                    "correlation_id",
                    models.CharField(
                        blank=True,
                        help_text="Ties related events together.",
                        max_length=255,
                        null=True,
                    ),
                ),
            ],
            options={
                "verbose_name": "event",
                "db_table": "asm_events",
                "indexes": [
                    agent_sessions.fields.UniqueIndex(
                        fields=["session_id", "sequence_number"],
                        name="asm_events_session_id_sequence_number_index",
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["session_id", "type"], name="asm_events_session_id_type_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["session_id", "run_id"], name="asm_events_session_id_run_id_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["correlation_id"], name="asm_events_correlation_id_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["provider"], name="asm_events_provider_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["timestamp"], name="asm_events_timestamp_index"
                    ),
                ],
            },
        ),
        agent_sessions.operations.AdoptOrCreateModel(
            name="Run",
            fields=[
                (
                    "id",
                    agent_sessions.fields.AsmIdField(
                        help_text="Application-chosen id, e.g. run_<32 hex>.",
                        max_length=255,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "session_id",
                    models.CharField(
                        help_text="The session's id (no foreign key: it may have no row).",
                        max_length=255,
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "pending"),
                            ("running", "running"),
                            ("completed", "completed"),
                            ("failed", "failed"),
                            ("cancelled", "cancelled"),
                            ("timeout", "timeout"),
                        ],
                        help_text="pending, running, completed, failed, cancelled or timeout.",
                        max_length=255,
                    ),
                ),
                (
                    "input",
                    models.JSONField(
                        blank=True, help_text="The run's input (any JSON).", null=True
                    ),
                ),
                (
                    "output",
                    models.JSONField(
                        blank=True, help_text="The run's output (any JSON).", null=True
                    ),
                ),
                (
                    "error",
                    models.JSONField(
                        blank=True, help_text="The error that ended the run.", null=True
                    ),
                ),
                (
                    "metadata",
                    agent_sessions.fields.JSONObjectField(
                        blank=True,
                        db_default={},
                        default=dict,
                        help_text="Free-form JSON object.",
                        null=True,
                    ),
                ),
                (
                    "turn_count",
                    models.IntegerField(
                        db_default=0, default=0, help_text="Number of completed turns.", null=True
                    ),
                ),
                (
                    "token_usage",
                    agent_sessions.fields.JSONObjectField(
                        blank=True,
                        db_default={},
                        default=dict,
                        help_text="Token counts, e.g. input_tokens, output_tokens.",
                        null=True,
                    ),
                ),
                (
                    "started_at",
                    agent_sessions.fields.UTCDateTimeField(help_text="When the run started (UTC)."),
                ),
                (
                    "ended_at",
                    agent_sessions.fields.UTCDateTimeField(
                        blank=True, help_text="When the run ended (UTC).", null=True
                    ),
                ),
                (
                    "provider",
                    models.CharField(
                        blank=True, help_text="claude, codex, amp, …", max_length=255, null=True
                    ),
                ),
                (
                    "provider_metadata",
                    agent_sessions.fields.JSONObjectField(
                        blank=True,
                        db_default={},
                        default=dict,
                        help_text="Provider details, e.g. model.",
                    ),
                ),
                (
                    "cost_usd",
                    models.FloatField(
                        blank=True,
                        help_text="Stored cost in USD; computed from pricing when empty.",
                        null=True,
                    ),
                ),
            ],
            options={
                "verbose_name": "run",
                "db_table": "asm_runs",
                "indexes": [
                    agent_sessions.fields.AsmIndex(
                        fields=["session_id", "status"], name="asm_runs_session_id_status_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["provider"], name="asm_runs_provider_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["started_at"], name="asm_runs_started_at_index"
                    ),
                ],
            },
        ),
        agent_sessions.operations.AdoptOrCreateModel(
            name="Session",
            fields=[
                (
                    "id",
                    agent_sessions.fields.AsmIdField(
                        help_text="Application-chosen id, e.g. ses_<32 hex>.",
                        max_length=255,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "agent_id",
                    models.CharField(
                        help_text="The agent this session belongs to.", max_length=255
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "pending"),
                            ("active", "active"),
                            ("paused", "paused"),
                            ("completed", "completed"),
                            ("failed", "failed"),
                            ("cancelled", "cancelled"),
                        ],
                        help_text="pending, active, paused, completed, failed or cancelled.",
                        max_length=255,
                    ),
                ),
                (
                    "parent_session_id",
                    models.CharField(
                        blank=True,
                        help_text="Id of the session this one forked from.",
                        max_length=255,
                        null=True,
                    ),
                ),
                (
                    "metadata",
                    agent_sessions.fields.JSONObjectField(
                        blank=True,
                        db_default={},
                        default=dict,
                        help_text="Free-form JSON object.",
                        null=True,
                    ),
                ),
                (
                    "context",
                    agent_sessions.fields.JSONObjectField(
                        blank=True,
                        db_default={},
                        default=dict,
                        help_text="The agent's context as a JSON object.",
                        null=True,
                    ),
                ),
                (
                    "tags",
                    agent_sessions.fields.TagsField(
                        blank=True,
                        db_default=agent_sessions.fields.EmptyTags(),
                        default=list,
                        help_text="Labels.",
                        null=True,
                    ),
                ),
                (
                    "created_at",
                    agent_sessions.fields.UTCDateTimeField(
                        help_text="When the session was created (UTC)."
                    ),
                ),
                (
                    "updated_at",
                    agent_sessions.fields.UTCDateTimeField(
                        help_text="When the session last changed (UTC)."
                    ),
                ),
                (
                    "deleted_at",
                    agent_sessions.fields.UTCDateTimeField(
                        blank=True, help_text="Set when soft-deleted by retention (UTC).", null=True
                    ),
                ),
            ],
            options={
                "verbose_name": "session",
                "db_table": "asm_sessions",
                "indexes": [
                    agent_sessions.fields.AsmIndex(
                        fields=["status"], name="asm_sessions_status_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["agent_id"], name="asm_sessions_agent_id_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["created_at"], name="asm_sessions_created_at_index"
                    ),
                    agent_sessions.fields.AsmIndex(
                        fields=["deleted_at"], name="asm_sessions_deleted_at_index"
                    ),
                ],
            },
        ),
    ]
