"""Retention policy: how long sessions and events are kept.

A :class:`RetentionPolicy` is plain data; the maintenance layer
(:class:`agent_sessions.ports.Maintenance`) applies it. ``None`` in an age or
count field means "no limit" (AgentSessionManager's ``:infinity``).

Building a policy does not validate it, so a policy can be assembled step by
step; call :meth:`RetentionPolicy.validate` (``execute`` does) before use.
:meth:`RetentionPolicy.from_settings` validates, so a misconfiguration
surfaces when the settings are read.

This module has no Django dependency apart from the lazy import of
``django.conf.settings`` inside :meth:`RetentionPolicy.from_settings`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_sessions.core import EventType, SessionStatus
from agent_sessions.errors import ValidationError
from agent_sessions.validation import check_tags

__all__ = ["RetentionPolicy"]

# Fields holding "a positive integer, or None for no limit".
_LIMIT_FIELDS = (
    "max_session_age_days",
    "max_completed_session_age_days",
    "max_events_per_session",
    "max_total_events",
    "hard_delete_after_days",
)
_LIST_FIELDS = ("exempt_statuses", "exempt_tags", "prune_event_types_first")


def _invalid(field_name: str, message: str) -> ValidationError:
    return ValidationError("validation_error", message, field=field_name)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class RetentionPolicy:
    """What maintenance deletes, and when.

    Attributes:
        max_session_age_days: Soft-delete sessions of any status created longer
            ago than this (exempt tags still protect them); None = no limit.
        max_completed_session_age_days: Soft-delete non-exempt sessions not
            updated for this long.
        max_events_per_session: Prune events above this many per session.
        max_total_events: Prune events, oldest first across sessions, above
            this many in total.
        hard_delete_after_days: Permanently delete sessions soft-deleted longer
            ago than this.
        archive_before_prune: Write pruned events and hard-deleted sessions as
            JSON Lines to ``archive_store`` before deleting them.
        archive_store: Directory path for archives; required when
            ``archive_before_prune`` is True.
        exempt_statuses: Session statuses never soft-deleted by age.
        exempt_tags: Sessions carrying any of these tags are never soft-deleted.
        prune_event_types_first: Event types pruned before any other.
        batch_size: Rows handled per transaction.
    """

    max_session_age_days: int | None = None
    max_completed_session_age_days: int | None = 90
    max_events_per_session: int | None = None
    max_total_events: int | None = None
    hard_delete_after_days: int | None = 30
    archive_before_prune: bool = False
    archive_store: str | os.PathLike[str] | None = None
    exempt_statuses: list[str] = field(default_factory=lambda: ["active", "paused"])
    exempt_tags: list[str] = field(default_factory=lambda: ["pinned"])
    prune_event_types_first: list[str] = field(
        default_factory=lambda: ["message_streamed", "token_usage_updated"]
    )
    batch_size: int = 100

    def validate(self) -> None:
        """Check every field; does not change the policy.

        Raises:
            ValidationError: ``validation_error`` with ``details["field"]``
                naming the first offending field: an age or count that is not a
                positive integer or None (bools are refused), a batch_size that
                is not a positive integer, a list field that is not a list of
                strings (or names an unknown session status or event type),
                ``archive_before_prune`` not a bool, an ``archive_store`` that is
                not a non-empty path, or archiving turned on without an
                ``archive_store``.
        """
        for name in _LIMIT_FIELDS:
            value = getattr(self, name)
            if value is not None and not _is_positive_int(value):
                raise _invalid(
                    name, f"{name} must be a positive integer or None (no limit), got {value!r}"
                )
        if not _is_positive_int(self.batch_size):
            raise _invalid(
                "batch_size", f"batch_size must be a positive integer, got {self.batch_size!r}"
            )
        for name in _LIST_FIELDS:
            value = getattr(self, name)
            check_tags(value, name)
        self._check_choices("exempt_statuses", SessionStatus)
        self._check_choices("prune_event_types_first", EventType)
        if not isinstance(self.archive_before_prune, bool):
            raise _invalid(
                "archive_before_prune",
                f"archive_before_prune must be True or False, got {self.archive_before_prune!r}",
            )
        store = self.archive_store
        if store is not None and (not isinstance(store, str | os.PathLike) or not os.fspath(store)):
            raise _invalid(
                "archive_store", f"archive_store must be a directory path, got {store!r}"
            )
        if self.archive_before_prune and store is None:
            raise _invalid(
                "archive_store", "archive_before_prune needs an archive_store (a directory path)"
            )

    def _check_choices(self, name: str, choices: type[SessionStatus] | type[EventType]) -> None:
        allowed = {member.value for member in choices}
        for item in getattr(self, name):
            if item not in allowed:
                raise _invalid(
                    name,
                    f"{name} contains {item!r}, which is not one of: "
                    f"{', '.join(member.value for member in choices)}",
                )

    def to_dict(self) -> dict[str, Any]:
        """Return the policy's fields as a dict (lists copied, ``archive_store`` as a str)."""
        data = dataclasses.asdict(self)
        if self.archive_store is not None and isinstance(self.archive_store, os.PathLike):
            data["archive_store"] = os.fspath(self.archive_store)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetentionPolicy:
        """Build a policy from a mapping of field names; missing fields take defaults.

        Does not validate the values (call :meth:`validate`). List values are
        copied, so later changes to ``data`` do not affect the policy.

        Raises:
            ValidationError: ``data`` is not a mapping or has unknown keys
                (``details["field"]`` names the first; ``details["fields"]``
                lists all).
        """
        if not isinstance(data, Mapping):
            raise ValidationError(
                "validation_error",
                f"retention settings must be a dict, not {type(data).__name__}",
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise ValidationError(
                "validation_error",
                f"Unknown retention setting{'s' if len(unknown) > 1 else ''}: "
                f"{', '.join(unknown)} (known: {', '.join(sorted(known))})",
                {"fields": unknown},
                field=unknown[0],
            )
        values: dict[str, Any] = {
            key: list(value) if key in _LIST_FIELDS and isinstance(value, list | tuple) else value
            for key, value in data.items()
        }
        return cls(**values)

    @classmethod
    def from_settings(cls, **overrides: Any) -> RetentionPolicy:
        """Build and validate the policy configured in ``settings.AGENT_SESSIONS["RETENTION"]``.

        Starts from the defaults, applies the ``RETENTION`` dict (a missing
        ``AGENT_SESSIONS`` or ``RETENTION`` means defaults), then ``overrides``.
        The result is validated, so a misconfiguration is reported here.

        Args:
            **overrides: Field values that replace the configured ones.

        Returns:
            The validated policy.

        Raises:
            ValidationError: a setting is not a dict, a key is unknown, or a
                value is invalid (``details["field"]`` names it).
        """
        from django.conf import settings  # the only Django import in the pure core

        config = getattr(settings, "AGENT_SESSIONS", None)
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ValidationError(
                "validation_error",
                f"AGENT_SESSIONS must be a dict, not {type(config).__name__}",
                field="AGENT_SESSIONS",
            )
        retention = config.get("RETENTION")
        if retention is None:
            retention = {}
        if not isinstance(retention, Mapping):
            raise ValidationError(
                "validation_error",
                f"AGENT_SESSIONS['RETENTION'] must be a dict, not {type(retention).__name__}",
                field="RETENTION",
            )
        policy = cls.from_dict({**retention, **overrides})
        policy.validate()
        return policy
