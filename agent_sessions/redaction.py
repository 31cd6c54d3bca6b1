"""Redaction of secrets in events before they are written (CONTRACT §12).

Off by default. With ``AGENT_SESSIONS["REDACTION"] = {"enabled": True}``
every event is scanned on its way into ``asm_events`` (single appends,
batches, ``flush`` and the framework adapters alike, see
:mod:`agent_sessions.pipeline`), and whatever looks like a secret is replaced
by ``"[REDACTED]"``, or ``"[REDACTED:<category>]"`` in categorized mode. The
database, the archive, the live stream and the admin then never see it.

:func:`redact` applies the same patterns to any JSON value, for a project's
own callbacks and logs::

    from agent_sessions.redaction import redact
    redact({"note": "key AKIAABCDEFGHIJKLMNOP"})   # {"note": "key [REDACTED]"}

This module decides where to look (which events, which fields, how deep)
and caches the compiled setting (per settings value, dropped when settings
change); :mod:`agent_sessions.redaction_rules` holds the patterns, compiles
them and says why checking one string stays cheap. Its public names are
importable from here too.

This module has no Django dependency apart from reading the setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_sessions.redaction_rules import (
    CATEGORIZED,
    CUSTOM_CATEGORY,
    DEFAULT_PATTERNS,
    DEFAULT_REPLACEMENT,
    RedactionConfig,
    compile_config,
    redaction_problem,
)
from agent_sessions.validation import copy_json

__all__ = [
    "CATEGORIZED",
    "CUSTOM_CATEGORY",
    "DEFAULT_PATTERNS",
    "DEFAULT_REPLACEMENT",
    "FIELDS_WITHOUT_DEEP_SCAN",
    "MAX_DEPTH",
    "NEVER_SCANNED_TYPES",
    "RedactionConfig",
    "RedactionResult",
    "compile_config",
    "redact",
    "redaction_problem",
    "settings_config",
]

#: Containers nested deeper than this (the scanned object itself is level 0)
#: are stored as they are: ASM's limit, which also bounds the scan's cost.
MAX_DEPTH = 10

#: Event types whose events are never scanned (they carry no free text).
NEVER_SCANNED_TYPES: frozenset[str] = frozenset(
    {
        "session_created",
        "session_started",
        "session_paused",
        "session_resumed",
        "session_completed",
        "session_cancelled",
        "run_started",
        "run_cancelled",
        "run_timeout",
        "token_usage_updated",
        "turn_completed",
        "workspace_snapshot_taken",
        "workspace_diff_computed",
        "error_recovered",
    }
)

#: Without deep scan, only these top-level ``data`` fields are scanned (their
#: whole value, at any depth up to :data:`MAX_DEPTH`); other types: nothing.
FIELDS_WITHOUT_DEEP_SCAN: Mapping[str, tuple[str, ...]] = {
    "message_sent": ("content",),
    "message_received": ("content",),
    "message_streamed": ("content", "delta"),
    "tool_call_started": ("tool_input",),
    "tool_call_completed": ("tool_input", "tool_output"),
    "tool_call_failed": ("tool_input", "tool_output"),
    "error_occurred": ("error_message", "provider_error"),
    "run_failed": ("error_message", "provider_error"),
    "session_failed": ("error_message", "provider_error"),
    "policy_violation": ("details",),
}


@dataclass(slots=True)
class RedactionResult:
    """What redacting one event changed.

    Attributes:
        redaction_count: How many secrets were replaced.
        fields_redacted: The top-level fields whose value changed, as
            ``"data.<key>"`` or ``"metadata.<key>"``, in scan order.
    """

    redaction_count: int = 0
    fields_redacted: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the settings


_cache: tuple[Any, RedactionConfig] | None = None


def settings_config() -> RedactionConfig:
    """The compiled ``AGENT_SESSIONS["REDACTION"]`` setting.

    Compiled once per settings value; :func:`clear_cache` (connected to
    Django's ``setting_changed``) drops it.

    Raises:
        django.core.exceptions.ImproperlyConfigured: the setting is invalid
            (``manage.py check`` reports it as ``agent_sessions.E050``).
    """
    global _cache
    from agent_sessions.conf import app_settings

    value = app_settings.REDACTION
    cached = _cache
    if cached is not None and cached[0] is value:
        return cached[1]
    problem = redaction_problem(value)
    if problem is not None:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"AGENT_SESSIONS['REDACTION'] {problem}.")
    config = compile_config(value)
    _cache = (value, config)
    return config


def clear_cache(**kwargs: Any) -> None:
    """Forget the compiled setting (a ``setting_changed`` receiver)."""
    global _cache
    _cache = None


# --------------------------------------------------------------------------- scanning


def redact(value: Any, config: RedactionConfig | Mapping[str, Any] | None = None) -> Any:
    """Return a redacted copy of any JSON value; the argument is not changed.

    Every string at any depth (up to :data:`MAX_DEPTH` levels of nesting) is
    scanned; keys are not. The patterns and the replacement are the
    project's ``REDACTION`` setting unless ``config`` is given. Unlike the
    write path, this function redacts even when the setting's ``enabled`` is
    False: calling it is the opt-in.

    Args:
        value: A JSON value (dict, list, str, number, bool, None).
        config: A :class:`RedactionConfig`, or a dict shaped like the
            ``REDACTION`` setting, or None for the setting.

    Returns:
        The redacted copy.

    Raises:
        ValueError: ``config`` is an invalid dict.
    """
    if config is None:
        compiled = settings_config()
    elif isinstance(config, RedactionConfig):
        compiled = config
    else:
        compiled = compile_config(config)
    if isinstance(value, str):
        return compiled.redact_string(value)[0]
    redacted, _ = _scan(value, compiled, 0)
    return copy_json(redacted)


def redact_event_fields(
    event_type: str,
    data: dict[str, Any],
    metadata: dict[str, Any],
    config: RedactionConfig,
) -> tuple[dict[str, Any], dict[str, Any], RedactionResult | None]:
    """Redact an event's ``data`` (and ``metadata`` when configured).

    Args:
        event_type: The event's type (never-scanned types are returned as they are).
        data: Its data object.
        metadata: Its metadata object.
        config: The configuration (its ``enabled`` is not looked at).

    Returns:
        ``(data, metadata, result)``: each object is the one given when
        nothing in it changed, else a new one sharing the unchanged parts;
        ``result`` is None when nothing was redacted.
    """
    if event_type in NEVER_SCANNED_TYPES:
        return data, metadata, None
    result: RedactionResult | None = None
    if config.deep_scan:
        fields: Iterable[str] | None = None
    else:
        fields = FIELDS_WITHOUT_DEEP_SCAN.get(event_type, ())
    data, result = _scan_object(data, config, "data.", fields, result)
    if config.scan_metadata:
        metadata, result = _scan_object(metadata, config, "metadata.", None, result)
    return data, metadata, result


def _scan_object(
    value: dict[str, Any],
    config: RedactionConfig,
    prefix: str,
    fields: Iterable[str] | None,
    result: RedactionResult | None,
) -> tuple[dict[str, Any], RedactionResult | None]:
    """Scan a top-level object (all keys, or only ``fields``), recording changed keys."""
    changed: dict[str, Any] | None = None
    keys = value.keys() if fields is None else [key for key in fields if key in value]
    for key in keys:
        item = value[key]
        new, count = _scan(item, config, 1)
        if count:
            if changed is None:
                changed = dict(value)
            changed[key] = new
            if result is None:
                result = RedactionResult()
            result.redaction_count += count
            result.fields_redacted.append(prefix + key)
    return (value if changed is None else changed), result


def _scan(value: Any, config: RedactionConfig, depth: int) -> tuple[Any, int]:
    """``(redacted value, count)``; the value itself when nothing changed.

    ``depth`` is the nesting level of ``value``'s container contents: the
    top-level object's items are at 1, and containers found at a level above
    :data:`MAX_DEPTH` are not entered.
    """
    kind = type(value)
    if kind is str:
        return config.redact_string(value) if value else (value, 0)
    # The dict and list loops stay apart: this runs on every write with
    # redaction on, and one shared loop measured up to a tenth slower.
    if kind is dict:
        if depth > MAX_DEPTH:
            return value, 0
        total = 0
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            new, count = _scan(item, config, depth + 1)
            if count:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
                total += count
        return (value if changed is None else changed), total
    if kind is list:
        if depth > MAX_DEPTH:
            return value, 0
        total = 0
        items: list[Any] | None = None
        for index, item in enumerate(value):
            new, count = _scan(item, config, depth + 1)
            if count:
                if items is None:
                    items = list(value)
                items[index] = new
                total += count
        return (value if items is None else items), total
    if isinstance(value, str):  # str subclasses (enum members) in a caller's value
        return config.redact_string(str.__str__(value))
    if isinstance(value, Mapping | list | tuple):
        return _scan(dict(value) if isinstance(value, Mapping) else list(value), config, depth)
    return value, 0
