"""The domain's vocabulary: id prefixes, session and run statuses, and the 28 event types.

No Django dependency; re-exported by :mod:`agent_sessions.core`.
"""

from __future__ import annotations

import enum

__all__ = [
    "EVENT_ID_PREFIX",
    "RUN_ID_PREFIX",
    "SESSION_ID_PREFIX",
    "TERMINAL_RUN_STATUSES",
    "EventType",
    "RunStatus",
    "SessionStatus",
]

SESSION_ID_PREFIX = "ses_"
RUN_ID_PREFIX = "run_"
EVENT_ID_PREFIX = "evt_"


class SessionStatus(enum.StrEnum):
    """The lifecycle state of a session."""

    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunStatus(enum.StrEnum):
    """The lifecycle state of a run; see :data:`TERMINAL_RUN_STATUSES`."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


#: Run statuses after which a run has ended (``ended_at`` is set on entering them).
TERMINAL_RUN_STATUSES: frozenset[RunStatus] = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMEOUT}
)


class EventType(enum.StrEnum):
    """The 28 kinds of event, grouped as in AgentSessionManager."""

    # session
    SESSION_CREATED = "session_created"
    SESSION_STARTED = "session_started"
    SESSION_PAUSED = "session_paused"
    SESSION_RESUMED = "session_resumed"
    SESSION_COMPLETED = "session_completed"
    SESSION_FAILED = "session_failed"
    SESSION_CANCELLED = "session_cancelled"
    # run
    RUN_STARTED = "run_started"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    RUN_TIMEOUT = "run_timeout"
    # message
    MESSAGE_SENT = "message_sent"
    MESSAGE_RECEIVED = "message_received"
    MESSAGE_STREAMED = "message_streamed"
    # tool
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_CALL_COMPLETED = "tool_call_completed"
    TOOL_CALL_FAILED = "tool_call_failed"
    # error
    ERROR_OCCURRED = "error_occurred"
    ERROR_RECOVERED = "error_recovered"
    # usage
    TOKEN_USAGE_UPDATED = "token_usage_updated"
    TURN_COMPLETED = "turn_completed"
    # policy
    POLICY_VIOLATION = "policy_violation"
    # workspace
    WORKSPACE_SNAPSHOT_TAKEN = "workspace_snapshot_taken"
    WORKSPACE_DIFF_COMPUTED = "workspace_diff_computed"
    # approval
    TOOL_APPROVAL_REQUESTED = "tool_approval_requested"
    TOOL_APPROVAL_GRANTED = "tool_approval_granted"
    TOOL_APPROVAL_DENIED = "tool_approval_denied"
