"""The event log's vendor SQL and codec under their earlier module name.

They now live in :mod:`agent_sessions.eventlog` (:mod:`~agent_sessions.eventlog.sql`
and :mod:`~agent_sessions.eventlog.codec`); the names stay importable from here.
"""

from __future__ import annotations

from agent_sessions.eventlog import sql as _sql
from agent_sessions.eventlog.codec import EVENT_COLUMNS, dump_json, encode_event, event_params
from agent_sessions.eventlog.sql import *  # noqa: F403

__all__ = [*_sql.__all__, "EVENT_COLUMNS", "dump_json", "encode_event", "event_params"]
