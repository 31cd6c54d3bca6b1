"""How Google ADK's sessions, events and state map onto the asm tables.

The one place that knows the identities and shapes the ADK service
(:class:`~agent_sessions.integrations.adk.DjangoSessionService`) stores; no
database access here:

- an ADK session (app, user, session id) is the asm session
  :func:`asm_session_id`; its events are asm events whose ids derive from the
  asm session and the ADK event id (:func:`asm_event_id`, so a re-delivered
  event finds the stored one), with the whole ADK event in
  ``data["adk_event"]``;
- app- and user-scoped state live in one asm session row each,
  :func:`app_state_id` and :func:`user_state_id`;
- an event with model usage, a final answer or an error updates the asm run
  of its invocation (:func:`run_update`);
- the memory service (:mod:`.adk_memory`) marks how much of a session is
  memory in ``metadata[MEMORY_MARK]``, and keeps events of sessions stored
  elsewhere in a session row of its own, :func:`memory_session_id`.

Needs ``pip install django-agent-sessions[adk]``.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from agent_sessions.integrations import missing_extra

try:
    from google.adk.events.event import Event as AdkEvent
    from google.adk.sessions._session_util import make_json_safe_state
    from google.adk.sessions.state import State
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("adk", exc) from exc

from agent_sessions import core
from agent_sessions.integrations.runs import (
    RunRecord,
    derived_run_id,
    record_runs_enabled,
    usage_dict,
)

__all__ = [
    "EVENT_KEY",
    "KIND_APP_STATE",
    "KIND_MEMORY",
    "KIND_SESSION",
    "KIND_USER_STATE",
    "MEMORY_MARK",
    "PROVIDER",
    "SOURCE",
    "app_state_id",
    "asm_event_id",
    "asm_session_id",
    "event_type_for_adk_event",
    "json_safe",
    "memory_session_id",
    "merged_state",
    "normalised_id",
    "run_update",
    "split_state",
    "stored_event",
    "user_state_id",
]

#: Where the serialised ADK event sits inside the asm event's ``data``.
EVENT_KEY = "adk_event"
SOURCE = "adk"
#: ``metadata["adk_kind"]`` of the asm session rows the service writes.
KIND_SESSION, KIND_APP_STATE, KIND_USER_STATE = "session", "app_state", "user_state"
#: ``metadata["adk_kind"]`` of a session row holding memory of a session stored elsewhere.
KIND_MEMORY = "memory"
#: ``metadata`` key of a session row: the sequence number its memory reaches.
MEMORY_MARK = "adk_memory_through"
#: ``asm_runs.provider`` of the runs recorded for ADK invocations.
PROVIDER = "google"
#: The longest ``asm_sessions.id``.
_MAX_ID_LENGTH = 255
_ID_PREFIX = "adk:"


def asm_session_id(app_name: str, user_id: str, session_id: str) -> str:
    """The ``asm_sessions.id`` of the ADK session (app, user, session id).

    ``adk:<app>:<user>:<session id>`` with each part percent-escaped (``:``
    and ``%`` included), so distinct identities never share an id; when that
    would exceed the 255 characters of the column, ``adk:sha256:`` and the
    hash of the three parts instead. Sessions created by earlier versions of
    this adapter kept the ADK id itself; they are still found.

    Args:
        app_name: The ADK app.
        user_id: The ADK user.
        session_id: The ADK session id (already stripped).

    Returns:
        The asm session id.
    """
    readable = _ID_PREFIX + ":".join(
        quote(part, safe="") for part in (app_name, user_id, session_id)
    )
    if len(readable) <= _MAX_ID_LENGTH:
        return readable
    digest = hashlib.sha256("\x1f".join((app_name, user_id, session_id)).encode()).hexdigest()
    return f"{_ID_PREFIX}sha256:{digest}"


def memory_session_id(app_name: str, user_id: str, session_id: str) -> str:
    """The asm session holding memory of the ADK session (app, user, id) stored elsewhere.

    ``adk-memory:<app>:<user>:<session id>``, each part percent-escaped as in
    :func:`asm_session_id`; ``adk-memory:sha256:`` and the hash of the three
    when that would exceed the column.
    """
    readable = "adk-memory:" + ":".join(
        quote(part, safe="") for part in (app_name, user_id, session_id)
    )
    if len(readable) <= _MAX_ID_LENGTH:
        return readable
    digest = hashlib.sha256("\x1f".join((app_name, user_id, session_id)).encode()).hexdigest()
    return f"adk-memory:sha256:{digest}"


def normalised_id(session_id: str | None) -> str:
    """ADK's normalisation of a session id, the same on every call: surrounding blanks go."""
    return session_id.strip() if session_id else ""


def asm_event_id(storage_id: str, adk_event_id: str) -> str:
    """The asm event id of an ADK event: re-delivering the event finds the stored one."""
    digest = hashlib.sha256(f"{storage_id}\x1f{adk_event_id}".encode()).hexdigest()
    return f"evt_{digest[:32]}"


def json_safe(delta: dict[str, Any]) -> dict[str, Any]:
    """A state delta in the JSON form ADK's database services store (datetimes as ISO
    strings, sets as lists, anything else unserialisable as its string form)."""
    return make_json_safe_state(delta) if delta else {}


def event_type_for_adk_event(event: AdkEvent) -> core.EventType:
    """The asm event type that stores an ADK event.

    Returns:
        ``tool_call_completed`` for function responses, ``tool_call_started``
        for function calls, ``message_sent`` for user content,
        ``message_received`` otherwise.
    """
    if event.get_function_responses():
        return core.EventType.TOOL_CALL_COMPLETED
    if event.get_function_calls():
        return core.EventType.TOOL_CALL_STARTED
    if event.content is not None and event.content.role == "user":
        return core.EventType.MESSAGE_SENT
    return core.EventType.MESSAGE_RECEIVED


def split_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split a state (delta) into app, user and session parts; ``temp:`` keys are dropped."""
    app, user, session = {}, {}, {}
    for key, value in state.items():
        if key.startswith(State.APP_PREFIX):
            app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            session[key] = value
    return app, user, session


def merged_state(
    app: dict[str, Any], user: dict[str, Any], session: dict[str, Any]
) -> dict[str, Any]:
    """The state ADK callers see: the session's, and the shared scopes under their prefixes."""
    merged = copy.deepcopy(session)
    merged.update({State.APP_PREFIX + k: v for k, v in app.items()})
    merged.update({State.USER_PREFIX + k: v for k, v in user.items()})
    return merged


def app_state_id(app_name: str) -> str:
    """The asm session row holding an app's ``app:`` state: ``adk-app-state:<app>``.

    Hashed (``adk-app-state-sha256:``) when that would not fit the column.
    """
    readable = f"adk-app-state:{app_name}"
    if len(readable) <= _MAX_ID_LENGTH:
        return readable
    return f"adk-app-state-sha256:{hashlib.sha256(app_name.encode()).hexdigest()}"


def user_state_id(app_name: str, user_id: str) -> str:
    """The asm session row holding a user's ``user:`` state in an app.

    ``adk-user-state:<app>:<user>`` when neither name contains ``:`` (the
    ids stored so far, unchanged); otherwise ``adk-user-state-q:`` and the
    two names percent-escaped (``:`` and ``%`` included), so that no two
    (app, user) pairs share a row (``a:b``/``c`` and ``a``/``b:c`` would
    have under the first form); hashed (``adk-user-state-sha256:``) when
    that would not fit the column.

    Args:
        app_name: The ADK app.
        user_id: The ADK user.

    Returns:
        The asm session id of the row.
    """
    if ":" in app_name or ":" in user_id:
        readable = f"adk-user-state-q:{quote(app_name, safe='')}:{quote(user_id, safe='')}"
    else:
        readable = f"adk-user-state:{app_name}:{user_id}"
    if len(readable) <= _MAX_ID_LENGTH:
        return readable
    digest = hashlib.sha256(f"{app_name}\x1f{user_id}".encode()).hexdigest()
    return f"adk-user-state-sha256:{digest}"


def stored_event(
    storage_id: str, event: AdkEvent
) -> tuple[core.Event, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The validated asm event storing ``event``, and its app, user and session deltas.

    The deltas are in their stored JSON form (see :func:`json_safe`).
    """
    app_delta, user_delta, session_delta = (
        json_safe(part)
        for part in split_state(dict(event.actions.state_delta or {}) if event.actions else {})
    )
    stored = core.Event.new(
        event_type_for_adk_event(event),
        storage_id,
        id=asm_event_id(storage_id, event.id),
        timestamp=datetime.fromtimestamp(event.timestamp, UTC),
        data={EVENT_KEY: event.model_dump(mode="json", exclude_none=True)},
        metadata={"source": SOURCE, "author": event.author},
    )  # validated (and normalised) by its constructor
    return stored, app_delta, user_delta, session_delta


def run_update(storage_id: str, event: AdkEvent) -> RunRecord | None:
    """The run update an event brings (model usage, a final answer, an error), or None."""
    if not (event.invocation_id and record_runs_enabled()):
        return None
    usage = event.usage_metadata
    final = event.author != "user" and event.is_final_response()
    if usage is None and not final and not event.error_code:
        return None
    if event.error_code:
        status = core.RunStatus.FAILED
    elif final:
        status = core.RunStatus.COMPLETED
    else:
        status = core.RunStatus.RUNNING
    return RunRecord(
        session_id=storage_id,
        run_id=derived_run_id(storage_id, event.invocation_id),
        provider=PROVIDER,
        status=status,
        model=event.model_version,
        token_usage=usage_dict(
            usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count
        )
        if usage is not None
        else {},
        turns=1 if usage is not None else 0,
        framework=SOURCE,
        error={"error_code": event.error_code, "error_message": event.error_message or ""}
        if event.error_code
        else None,
    )
