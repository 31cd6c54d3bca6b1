"""The domain vocabulary: statuses, event types, and the Session, Run and Event records.

These are plain dataclasses whose fields are exactly the columns of the
``asm_sessions``, ``asm_runs`` and ``asm_events`` tables, in column order.
They validate and normalise themselves on construction (statuses and types
become enum members, datetimes become aware UTC, JSON values are checked and
copied) and again whenever :meth:`~Session.validate` is called, which the
store does right before writing because attributes may have been changed
in between.

Build new records with the ``new()`` constructors, which fill in generated ids,
timestamps and defaults::

    session = Session.new("agent-1", tags=["demo"])
    run = Run.new(session.id, provider="claude")
    event = Event.new(EventType.RUN_STARTED, session.id, run_id=run.id)

Records are mutable, but the ``with_*`` helpers return new objects and never
change the one they are called on.

This module has no Django dependency.
"""

from __future__ import annotations

from agent_sessions.core.records import Event, Run, Session
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

__all__ = [
    "EVENT_ID_PREFIX",
    "RUN_ID_PREFIX",
    "SESSION_ID_PREFIX",
    "TERMINAL_RUN_STATUSES",
    "Event",
    "EventType",
    "Run",
    "RunStatus",
    "Session",
    "SessionStatus",
    "from_stored",
]
