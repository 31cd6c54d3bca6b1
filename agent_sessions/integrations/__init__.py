"""Adapters that let agent frameworks keep their sessions in the ``asm_*`` tables.

Each adapter lives in its own module and needs its framework, installed as an
optional extra; importing :mod:`agent_sessions` (or this package) needs none
of them:

- :mod:`agent_sessions.integrations.openai_agents` — OpenAI Agents SDK
  ``Session`` (``pip install django-agent-sessions[openai-agents]``);
- :mod:`agent_sessions.integrations.langchain` — LangChain
  ``BaseChatMessageHistory`` (``[langchain]``);
- :mod:`agent_sessions.integrations.adk` — Google ADK ``BaseSessionService``
  (``[adk]``).

This module holds the little they share: the ImportError for a missing extra
and the "create the asm session on first use" write.
"""

from __future__ import annotations

from typing import Any

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.db import db_for_write, translate_errors
from agent_sessions.validation import utcnow

__all__ = ["ensure_session", "missing_extra", "touch_session"]


def missing_extra(extra: str, exc: ImportError) -> ImportError:
    """The ImportError to raise when an adapter's framework is not installed.

    Args:
        extra: The name of the extra that installs it (``"openai-agents"``).
        exc: The original ImportError.

    Returns:
        An ImportError whose message names the ``pip install`` command.
    """
    return ImportError(
        f"This adapter needs the {extra!r} extra, which is not installed ({exc}). "
        f"Install it with: pip install django-agent-sessions[{extra}]"
    )


def ensure_session(session: core.Session, *, using: str | None = None) -> None:
    """Insert ``session`` unless a session with its id is already stored.

    Runs as one ``INSERT … ON CONFLICT DO NOTHING``, so concurrent first uses
    of the same id from several processes are safe and the stored row (if any)
    is never changed.

    Args:
        session: The session to create (validated before writing).
        using: Database alias; None follows the routers.

    Raises:
        ValidationError: the session holds an invalid value.
        StorageError: the database failed.
    """
    session.validate()
    alias = db_for_write(using, m.Session)
    with translate_errors("ensure_session"):
        m.Session.objects.using(alias).bulk_create(
            [m.Session.from_domain(session)], ignore_conflicts=True
        )


def touch_session(session_id: str, *, using: str | None = None, **changes: Any) -> int:
    """Set ``updated_at`` to now (and any other given columns) on one session row.

    Args:
        session_id: The session to update.
        using: Database alias; None follows the routers.
        **changes: Further column values to set.

    Returns:
        How many rows were updated (0 when the session has no row).
    """
    alias = db_for_write(using, m.Session)
    with translate_errors("touch_session"):
        return (
            m.Session.objects.using(alias)
            .filter(id=session_id)
            .update(updated_at=utcnow(), **changes)
        )
