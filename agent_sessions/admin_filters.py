"""Admin list filters whose choices come from the vocabulary, never from the table.

Django's ``AllValuesFieldListFilter`` runs ``SELECT DISTINCT`` over the column
on every changelist view, which reads all of ``asm_events``. These filters
offer the statuses, event types and providers the library knows about, and
ignore any value outside them (so a hand-edited URL cannot reach the
database with arbitrary input).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from agent_sessions.core import EventType, RunStatus, SessionStatus


class VocabularyListFilter(admin.SimpleListFilter):
    """Filter a column by one value of a fixed vocabulary (exact match).

    Subclasses set ``title``, ``parameter_name``, ``field_name`` and either
    ``vocabulary`` (a StrEnum) or override :meth:`values`.
    """

    field_name: str = ""
    vocabulary: type[enum.StrEnum] | None = None

    def values(self) -> list[str]:
        """The values offered, in display order."""
        return [member.value for member in self.vocabulary or ()]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, value) for value in self.values()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value not in self.values():
            # An unknown value matches nothing, as the vocabulary says it cannot exist.
            return queryset.none()
        return queryset.filter(**{self.field_name: value})


class SessionStatusFilter(VocabularyListFilter):
    title = "status"
    parameter_name = "status"
    field_name = "status"
    vocabulary = SessionStatus


class RunStatusFilter(VocabularyListFilter):
    title = "status"
    parameter_name = "status"
    field_name = "status"
    vocabulary = RunStatus


class EventTypeFilter(VocabularyListFilter):
    title = "type"
    parameter_name = "type"
    field_name = "type"
    vocabulary = EventType


def known_providers() -> list[str]:
    """Provider names of the pricing table in use (the setting, else ASM's default)."""
    try:
        from agent_sessions.pricing import active_pricing_table
    except ImportError:
        return ["amp", "claude", "codex"]
    return sorted(str(name) for name in active_pricing_table())


class ProviderFilter(VocabularyListFilter):
    """Provider, with the pricing table's providers as choices."""

    title = "provider"
    parameter_name = "provider"
    field_name = "provider"

    def values(self) -> list[str]:
        return known_providers()


class SoftDeletedListFilter(admin.SimpleListFilter):
    """Soft-deleted state; live rows only unless the filter asks for others.

    Choices: live (the default, shown without a parameter), deleted, all.
    """

    title = "deleted"
    parameter_name = "deleted"
    default_label = "No"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("all", "All")]

    def choices(self, changelist: Any) -> Iterator[Any]:
        value = self.value()
        yield {
            "selected": value not in {lookup for lookup, _ in self.lookup_choices},
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": self.default_label,
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "all":
            return queryset
        if value == "yes":
            return queryset.filter(deleted_at__isnull=False)
        return queryset.filter(deleted_at__isnull=True)


class ArtifactDeletedListFilter(SoftDeletedListFilter):
    """Soft-deleted state of artifacts; all are shown by default.

    The registry hides soft-deleted artifacts; the admin shows them, marked.
    """

    default_label = "All"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "No"), ("yes", "Yes")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if value == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset
