"""Runs and token usage recorded by the framework adapters.

A framework run (an OpenAI Agents SDK ``Runner.run``, an ADK invocation, a
LangChain/LangGraph invocation) becomes one asm run of the conversation's asm
session, with its status, provider, ``provider_metadata["model"]`` and
``token_usage`` (``input_tokens``, ``output_tokens``, ``total_tokens``). That
is what :meth:`~agent_sessions.query.DjangoQueryAPI.get_usage_summary`,
:meth:`~agent_sessions.query.DjangoQueryAPI.get_cost_summary` and the admin
add up, so framework conversations show real numbers there.

Each adapter derives the run id from the framework's own identity of the run
(:func:`derived_run_id`), so a re-delivered update finds the same row. Usage
is either the framework's running total (``additive=False``: OpenAI's run
context) or one model call's usage added to the run's (``additive=True``:
ADK events, LangChain messages); adapters only pass additive usage for
records they stored for the first time, so a re-delivery never counts twice.

Turned off with ``AGENT_SESSIONS = {"INTEGRATIONS_RECORD_RUNS": False}``
(checked by ``manage.py check``, ``agent_sessions.E015``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.conf import app_settings
from agent_sessions.db import db_for_write, run_write
from agent_sessions.store import DjangoSessionStore

__all__ = [
    "MessageUsage",
    "RunRecord",
    "derived_run_id",
    "message_usage",
    "record_run",
    "record_runs_enabled",
    "usage_dict",
]

#: The statuses a later update may not move a run out of (a finished run stays finished,
#: apart from ``completed`` → ``failed`` when the framework reports a late error).
_TERMINAL = frozenset({core.RunStatus.COMPLETED, core.RunStatus.FAILED, core.RunStatus.CANCELLED})


def record_runs_enabled() -> bool:
    """Whether the adapters record runs (``AGENT_SESSIONS["INTEGRATIONS_RECORD_RUNS"]``)."""
    return app_settings.INTEGRATIONS_RECORD_RUNS


def derived_run_id(*parts: str) -> str:
    """A run id (``run_`` + 32 hex characters) determined by the framework's identity of a run.

    Args:
        *parts: What identifies the run for the framework (the asm session id
            and, say, ADK's invocation id).

    Returns:
        The same id for the same parts, every time and in every process.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"run_{digest[:32]}"


def usage_dict(input_tokens: Any, output_tokens: Any, total_tokens: Any = None) -> dict[str, int]:
    """``token_usage`` as the query API reads it, from a framework's counts (None → 0).

    ``total_tokens`` defaults to input + output when the framework gives none.
    """
    usage = {"input_tokens": int(input_tokens or 0), "output_tokens": int(output_tokens or 0)}
    total = usage["input_tokens"] + usage["output_tokens"] if total_tokens is None else total_tokens
    usage["total_tokens"] = int(total or 0)
    return usage


@dataclass
class MessageUsage:
    """The usage LangChain AI messages report (``usage_metadata``), added up.

    Attributes:
        token_usage: ``input_tokens``, ``output_tokens``, ``total_tokens``.
        turns: How many messages reported usage (one per model call).
        model: The last ``response_metadata["model_name"]`` (or ``"model"``) seen.
        provider: The last ``response_metadata["model_provider"]`` seen.
        finished: Whether the last message is an AI answer without tool calls.
    """

    token_usage: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    model: str | None = None
    provider: str | None = None
    finished: bool = False


def message_usage(messages: Iterable[Any]) -> MessageUsage:
    """Add up the ``usage_metadata`` of LangChain messages (duck-typed, no import needed).

    Args:
        messages: ``BaseMessage`` objects; only AI messages count.

    Returns:
        The totals; ``turns`` is 0 when no message reported usage.
    """
    found = MessageUsage(token_usage=usage_dict(0, 0, 0))
    last = None
    for message in messages:
        last = message
        reported = getattr(message, "usage_metadata", None)
        if getattr(message, "type", None) != "ai" or not reported:
            continue
        found.turns += 1
        counts = usage_dict(
            reported.get("input_tokens"),
            reported.get("output_tokens"),
            reported.get("total_tokens"),
        )
        for key, value in counts.items():
            found.token_usage[key] += value
        response = getattr(message, "response_metadata", None) or {}
        found.model = response.get("model_name") or response.get("model") or found.model
        found.provider = response.get("model_provider") or found.provider
    found.finished = (
        last is not None
        and getattr(last, "type", None) == "ai"
        and not getattr(last, "tool_calls", None)
    )
    return found


@dataclass
class RunRecord:
    """One update of a framework run.

    Attributes:
        session_id: The asm session the run belongs to.
        run_id: The run's id (:func:`derived_run_id`).
        provider: ``asm_runs.provider`` (``"openai"``, ``"google"``, …).
        status: The run's status after this update.
        model: ``provider_metadata["model"]``; None keeps what is stored.
        token_usage: Usage of this update (see ``additive``).
        additive: Add ``token_usage`` to the stored usage (one model call's
            usage) instead of replacing it (a running total).
        turns: Turns to add (``additive``) or the turn count (otherwise); None
            leaves it.
        framework: ``provider_metadata["framework"]``.
        error: ``asm_runs.error`` for a failed run.
    """

    session_id: str
    run_id: str
    provider: str
    status: core.RunStatus | str
    model: str | None = None
    token_usage: dict[str, int] = field(default_factory=dict)
    additive: bool = True
    turns: int | None = None
    framework: str = ""
    error: dict[str, Any] | None = None


def record_run(record: RunRecord, *, using: str | None = None) -> core.Run:
    """Create or update the run of ``record`` in one transaction (the row locked meanwhile).

    Args:
        record: The update.
        using: Database alias; None follows the routers (the write database).

    Returns:
        The stored run.

    Raises:
        ValidationError: a value the database cannot store; nothing is written.
        StorageError: the database failed.
    """
    alias = db_for_write(using, m.Run)
    store = DjangoSessionStore(using=alias)
    status = core.RunStatus(record.status)

    # Not retried after a lost connection: the usage is added, not set.
    def work(_connection: BaseDatabaseWrapper) -> core.Run:
        # Read on the write database, locked: concurrent updates of one run
        # (two processes of one ADK invocation) add their usage one after the other.
        row = m.Run.objects.using(alias).select_for_update().filter(id=record.run_id).first()
        if row is None:
            run = core.Run.new(
                record.session_id,
                id=record.run_id,
                status=core.RunStatus.RUNNING,
                provider=record.provider,
                provider_metadata={"framework": record.framework},
            )
        else:
            run = row.to_domain()
        if record.model:
            run.provider_metadata = {**run.provider_metadata, "model": record.model}
        if record.additive:
            run = run.with_token_usage(record.token_usage)
            if record.turns:
                run.turn_count += record.turns
        else:
            run.token_usage = {**run.token_usage, **record.token_usage}
            if record.turns is not None:
                run.turn_count = record.turns
        if record.error is not None:
            run.error = record.error
        if status != run.status and (
            run.status not in _TERMINAL or status == core.RunStatus.FAILED
        ):
            run = run.with_status(status)
        store.save_run(run)
        return run

    return run_write(alias, "record_run", work, retry_safe=False)
