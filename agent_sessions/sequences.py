"""The event log's vendor SQL and codec under their earlier module name.

They now live in :mod:`agent_sessions.eventlog` (:mod:`~agent_sessions.eventlog.sql`
and :mod:`~agent_sessions.eventlog.codec`); the names stay importable from here.
"""

from __future__ import annotations

from agent_sessions.eventlog.codec import EVENT_COLUMNS, dump_json, encode_event, event_params
from agent_sessions.eventlog.sql import (
    APPEND_EVENT_FUNCTION,
    APPEND_ONE_POSTGRES,
    CALL_APPEND_EVENT,
    INSERT_EVENT_FROM_COUNTER,
    NOTIFY_CHANNEL,
    NOTIFY_IF_WATCHED,
    STORED_EVENTS_POSTGRES,
    WATCH_KEYS_PER_BATCH,
    WATCH_LOCK_CLASS,
    AppendFunctionMissing,
    append_one_postgres,
    catch_up_counters,
    copy_events_postgres,
    insert_events_sqlite,
    notify_sessions,
    reserve_blocks,
    take_sqlite_write_lock,
)

__all__ = [
    "APPEND_EVENT_FUNCTION",
    "APPEND_ONE_POSTGRES",
    "CALL_APPEND_EVENT",
    "EVENT_COLUMNS",
    "INSERT_EVENT_FROM_COUNTER",
    "NOTIFY_CHANNEL",
    "NOTIFY_IF_WATCHED",
    "STORED_EVENTS_POSTGRES",
    "WATCH_KEYS_PER_BATCH",
    "WATCH_LOCK_CLASS",
    "AppendFunctionMissing",
    "append_one_postgres",
    "catch_up_counters",
    "copy_events_postgres",
    "dump_json",
    "encode_event",
    "event_params",
    "insert_events_sqlite",
    "notify_sessions",
    "reserve_blocks",
    "take_sqlite_write_lock",
]
