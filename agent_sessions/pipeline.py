"""The event pipeline: what happens to every event on its way into ``asm_events`` (CONTRACT §12).

ASM v0.8 runs each event through a pipeline before its store; so do we, in
:func:`process_event`, which the event codec
(:func:`agent_sessions.sequences.encode_event`) calls for every event it
turns into column values. Every write path goes through that codec — the
store's single append, batches and ``flush``, and the framework adapters'
own statements — so none can skip the pipeline.

Its steps, on the writer's private copy of the event:

1. **Redaction** (off by default; ``AGENT_SESSIONS["REDACTION"]``, see
   :mod:`agent_sessions.redaction`): secrets in ``data`` (and ``metadata``
   when configured) are replaced before anything is written.
2. **Shape warnings** (on by default; ``AGENT_SESSIONS["SHAPE_WARNINGS"]``):
   advisory checks of the ``data`` fields each event type is expected to
   carry. Problems are stored as a list of messages under
   ``metadata["_validation_warnings"]``; the event is written all the same.
   They run after redaction, so a message that quotes a value never quotes
   a secret that redaction removed.

What changed is returned as a :class:`PipelineOutcome`, from which the
writers send :mod:`agent_sessions.signals` after their commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from agent_sessions import core
from agent_sessions.conf import SETTING_NAME, app_settings
from agent_sessions.redaction import RedactionConfig, settings_config

__all__ = [
    "SHAPE_RULES",
    "WARNINGS_KEY",
    "PipelineOutcome",
    "process_event",
    "shape_warnings",
]

#: The metadata key that holds an event's shape warnings (ASM's name).
WARNINGS_KEY = "_validation_warnings"

#: Per event type, the ``data`` fields it should carry and their JSON types (ASM's rules).
SHAPE_RULES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "message_received": (("content", "string"), ("role", "string")),
    "message_streamed": (("content", "string"),),
    "tool_call_started": (("tool_name", "string"),),
    "tool_call_completed": (("tool_name", "string"),),
    "tool_call_failed": (("tool_name", "string"),),
    "token_usage_updated": (("input_tokens", "integer"), ("output_tokens", "integer")),
    "run_completed": (("stop_reason", "string"),),
    "error_occurred": (("error_message", "string"),),
    "policy_violation": (("policy", "string"), ("kind", "string")),
    "tool_approval_requested": (("tool_name", "string"), ("policy_name", "string")),
    "tool_approval_granted": (("tool_name", "string"),),
    "tool_approval_denied": (("tool_name", "string"),),
}

# A warning quotes the offending value; a huge one is cut to keep metadata small.
_MAX_QUOTED_CHARS = 200
_quote = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "), allow_nan=False).encode


@dataclass(slots=True)
class PipelineOutcome:
    """What the pipeline changed in one event.

    Attributes:
        warnings: The shape warnings stored in ``metadata["_validation_warnings"]``.
        redaction_count: How many secrets were replaced (0: none).
        fields_redacted: The top-level fields redaction changed
            (``"data.<key>"``, ``"metadata.<key>"``).
    """

    warnings: list[str] = field(default_factory=list)
    redaction_count: int = 0
    fields_redacted: list[str] = field(default_factory=list)


def shape_warnings(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """The shape warnings of an event's ``data`` (empty when it has the expected shape).

    Messages are ASM's: ``"missing required field '<f>' for shape
    validation"`` when the field is absent or null, ``"field '<f>' expected
    <type>, got <value>"`` when it has another JSON type (the value quoted as
    JSON, cut after 200 characters). Booleans are not integers.

    Args:
        event_type: The event's type.
        data: The event's data object.
    """
    rules = SHAPE_RULES.get(event_type)
    if not rules:
        return []
    warnings: list[str] = []
    for name, expected in rules:
        value = data.get(name)
        if value is None:
            warnings.append(f"missing required field '{name}' for shape validation")
        elif not _has_type(value, expected):
            warnings.append(f"field '{name}' expected {expected}, got {_quoted(value)}")
    return warnings


def _has_type(value: Any, expected: str) -> bool:
    if expected == "string":
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool)


def _quoted(value: Any) -> str:
    try:
        text = _quote(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > _MAX_QUOTED_CHARS:
        text = text[: _MAX_QUOTED_CHARS - 3] + "..."
    return text


# (the AGENT_SESSIONS value they were read from, redaction config, shape warnings on?)
_cache: tuple[object, RedactionConfig, bool] | None = None


def _settings() -> tuple[RedactionConfig, bool]:
    """The pipeline's settings, read once per ``AGENT_SESSIONS`` value (it runs per event)."""
    global _cache
    value = getattr(settings, SETTING_NAME, None)
    cached = _cache
    if cached is not None and cached[0] is value:
        return cached[1], cached[2]
    config, check_shapes = settings_config(), app_settings.SHAPE_WARNINGS
    _cache = (value, config, check_shapes)
    return config, check_shapes


def clear_cache(**kwargs: Any) -> None:
    """Forget the settings read (a ``setting_changed`` receiver)."""
    global _cache
    _cache = None


def process_event(event: core.Event) -> PipelineOutcome | None:
    """Run the pipeline on a validated event that belongs to the writer, in place.

    Only for the writer's own copy: ``data`` and ``metadata`` may be
    replaced. Running it twice on the same event (a retried write) changes
    nothing more.

    Args:
        event: The validated event about to be written.

    Returns:
        What changed, or None when nothing did.

    Raises:
        django.core.exceptions.ImproperlyConfigured: the ``REDACTION``
            setting is invalid.
    """
    event_type = str(event.type)
    outcome: PipelineOutcome | None = None
    config, check_shapes = _settings()
    if config.enabled:
        from agent_sessions.redaction import redact_event_fields

        data, metadata, result = redact_event_fields(event_type, event.data, event.metadata, config)
        if result is not None:
            event.data, event.metadata = data, metadata
            outcome = PipelineOutcome(
                redaction_count=result.redaction_count, fields_redacted=result.fields_redacted
            )
    if check_shapes:
        warnings = shape_warnings(event_type, event.data)
        if warnings:
            event.metadata = {**event.metadata, WARNINGS_KEY: warnings}
            if outcome is None:
                outcome = PipelineOutcome()
            outcome.warnings = warnings
    return outcome
