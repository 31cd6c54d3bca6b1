"""Admin list filters whose choices come from the vocabulary, never from the table.

Django's ``AllValuesFieldListFilter`` runs ``SELECT DISTINCT`` over the column
on every changelist view, which reads all of ``asm_events``. These filters
offer the statuses, event types and providers the library knows about, match
nothing for a value outside them (so a hand-edited URL cannot reach the
database with arbitrary input), and filter through the FilterSets of
:mod:`agent_sessions.filters`, as the QueryAPI does.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from agent_sessions.core import EventType, RunStatus, SessionStatus
from agent_sessions.filters import EventFilterSet, RunFilterSet, SessionFilterSet
from agent_sessions.pricing import active_pricing_table


class VocabularyListFilter(admin.SimpleListFilter):
    """Filter by one value of a fixed vocabulary, through the app's FilterSet.

    Subclasses set ``title``, ``parameter_name``, ``filterset_class`` with the
    FilterSet parameter (``filterset_param``) to pass the value to, and either
    ``vocabulary`` (a StrEnum) or override :meth:`values`. Filtering goes
    through :mod:`agent_sessions.filters`, the one place that turns query
    options into querysets (the QueryAPI uses the same FilterSets).
    """

    vocabulary: type[enum.StrEnum] | None = None
    filterset_class: type[Any] | None = None
    filterset_param: str = ""
    #: Extra FilterSet data, e.g. to keep SessionFilterSet from hiding
    #: soft-deleted sessions (the admin has its own filter for that).
    filterset_data: dict[str, Any] = {}

    def values(self) -> list[str]:
        """The values offered, in display order."""
        return [member.value for member in self.vocabulary or ()]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, value) for value in self.values()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value not in self.values() or self.filterset_class is None:
            # An unknown value matches nothing, as the vocabulary says it cannot exist.
            return queryset.none()
        data = {**self.filterset_data, self.filterset_param: [value]}
        filterset = self.filterset_class(data=data, queryset=queryset)
        if not filterset.is_valid():
            return queryset.none()
        return filterset.qs  # type: ignore[no-any-return]


class SessionStatusFilter(VocabularyListFilter):
    title = "status"
    parameter_name = "status"
    vocabulary = SessionStatus
    filterset_class = SessionFilterSet
    filterset_param = "status"
    filterset_data = {"include_deleted": True}


class RunStatusFilter(VocabularyListFilter):
    title = "status"
    parameter_name = "status"
    vocabulary = RunStatus
    filterset_class = RunFilterSet
    filterset_param = "status"


class EventTypeFilter(VocabularyListFilter):
    title = "type"
    parameter_name = "type"
    vocabulary = EventType
    filterset_class = EventFilterSet
    filterset_param = "types"


def known_providers() -> list[str]:
    """Provider names of the pricing table in use (the setting, else ASM's default)."""
    return sorted(str(name) for name in active_pricing_table())


class ProviderFilter(VocabularyListFilter):
    """Run provider, with the pricing table's providers as choices."""

    title = "provider"
    parameter_name = "provider"
    filterset_class = RunFilterSet
    filterset_param = "provider"

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
