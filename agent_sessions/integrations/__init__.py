"""Adapters that let agent frameworks keep their sessions in the ``asm_*`` tables.

Each adapter lives in its own module and needs its framework, installed as an
optional extra; importing :mod:`agent_sessions` (or this package) needs none
of them:

- :mod:`agent_sessions.integrations.openai_agents` — OpenAI Agents SDK
  ``Session`` (``pip install django-agent-sessions[openai-agents]``);
- :mod:`agent_sessions.integrations.langchain` — LangChain
  ``BaseChatMessageHistory`` (``[langchain]``);
- :mod:`agent_sessions.integrations.langgraph` — LangGraph checkpointer
  (``[langgraph]``);
- :mod:`agent_sessions.integrations.adk` — Google ADK ``BaseSessionService``
  (``[adk]``), and :mod:`agent_sessions.integrations.adk_memory` — its
  ``BaseMemoryService`` over the full-text search.

Shared pieces live beside them: :mod:`.payload_log` (a framework's records
kept as events of one asm session), :mod:`.runs` (runs and token usage the
adapters record), :mod:`.pgsql` and :mod:`.pgasync` (the PostgreSQL fast
paths). This module only holds :func:`missing_extra`, so that an adapter can
raise a helpful ImportError before importing anything else.
"""

from __future__ import annotations

__all__ = ["missing_extra"]


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
