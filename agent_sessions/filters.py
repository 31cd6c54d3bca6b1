"""django-filter FilterSets for sessions, runs and events: the one filtering implementation.

:class:`~agent_sessions.query.DjangoQueryAPI` validates its typed arguments and
then filters through these FilterSets; the admin and your own views can use
them directly with a request's ``QueryDict``::

    from agent_sessions.filters import EventFilterSet
    from agent_sessions.models import Event

    filterset = EventFilterSet(request.GET, queryset=Event.objects.all())
    if filterset.is_valid():
        events = filterset.qs.order_by("sequence_number", "session_id", "id")

Every filter declares its ``field_name`` and ``lookup_expr``. List-valued
filters ("any of") read repeated query parameters (``?status=active&status=paused``)
or a Python list; an empty list filters nothing out. Datetimes given without a
zone are read in the current time zone.

Soft-deleted sessions are excluded by :class:`SessionFilterSet` unless
``include_deleted`` is true, as in the QueryAPI.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, QuerySet
from django.db.models.lookups import GreaterThanOrEqual
from django.utils import timezone

from agent_sessions import core, models
from agent_sessions.errors import ValidationError
from agent_sessions.jsonsql import json_number
from agent_sessions.validation import check_varchar

__all__ = [
    "AnyOfFilter",
    "EventFilterSet",
    "RunFilterSet",
    "SessionFilterSet",
    "TagsFilter",
    "UTCDateTimeFilter",
    "total_tokens",
]


def total_tokens() -> Any:
    """The run's ``token_usage["total_tokens"]`` as a number in SQL (missing → 0)."""
    return json_number("token_usage", "total_tokens", default=0)


# --------------------------------------------------------------------------- form fields


def _choices(enum_class: type[enum.Enum]) -> list[tuple[str, str]]:
    return [(member.value, member.value) for member in enum_class]


class StringListField(forms.Field):
    """A list of strings from repeated query parameters, one string, or a Python list.

    With ``choices``, every item must be one of them. Items must be storable
    varchar values (at most 255 characters, no NUL), so that a hostile value
    is a form error rather than a database error.
    """

    widget = forms.MultipleHiddenInput

    def __init__(self, *, choices: Iterable[tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowed = None if choices is None else {value for value, _ in choices}

    def to_python(self, value: Any) -> list[str]:
        if value in (None, ""):
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise forms.ValidationError("Enter a list of values.", code="invalid_list")
        try:
            return [check_varchar(item, "value", required=True) for item in items]
        except ValidationError as exc:
            raise forms.ValidationError(exc.message, code="invalid") from None

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        if self.allowed is not None:
            unknown = [item for item in value if item not in self.allowed]
            if unknown:
                raise forms.ValidationError(
                    "Unknown value(s): %(values)s.",
                    code="invalid_choice",
                    params={"values": ", ".join(unknown)},
                )


class AwareDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO-8601 datetime; one without a zone is taken in the current time zone."""

    def to_python(self, value: Any) -> Any:
        result = super().to_python(value)
        if result is not None and timezone.is_naive(result):
            result = timezone.make_aware(result, timezone.get_current_timezone())
        return result


# --------------------------------------------------------------------------- filters


class AnyOfFilter(django_filters.Filter):
    """Rows whose field equals any of the given values (declare ``lookup_expr="in"``)."""

    field_class = StringListField


class TagsFilter(django_filters.Filter):
    """Rows that carry every given tag (declare ``lookup_expr="has_all"``), evaluated in SQL."""

    field_class = StringListField


class UTCDateTimeFilter(django_filters.Filter):
    """A datetime bound on a UTC timestamp column (declare ``lookup_expr="gte"``/``"lte"``)."""

    field_class = AwareDateTimeField


class MinimumFilter(django_filters.Filter):
    """A non-negative integer lower bound."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        super().__init__(*args, **kwargs)


# --------------------------------------------------------------------------- filtersets


class SessionFilterSet(django_filters.FilterSet):
    """Filters for :class:`agent_sessions.models.Session`.

    Parameters: ``agent_id``; ``status`` and ``provider`` (any of; a session
    matches ``provider`` when any of its runs has it); ``tags`` (every one);
    ``created_after``/``created_before`` (inclusive); ``include_deleted``
    (soft-deleted sessions are excluded unless it is true).
    """

    agent_id = django_filters.CharFilter(field_name="agent_id", lookup_expr="exact", strip=False)
    status = AnyOfFilter(
        field_name="status", lookup_expr="in", choices=_choices(core.SessionStatus)
    )
    provider = AnyOfFilter(field_name="provider", lookup_expr="in", method="filter_provider")
    tags = TagsFilter(field_name="tags", lookup_expr="has_all")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lte")
    include_deleted = django_filters.BooleanFilter(
        field_name="deleted_at", method="filter_include_deleted"
    )

    class Meta:
        model = models.Session
        fields: list[str] = []

    def filter_provider(
        self, queryset: QuerySet[models.Session], name: str, value: list[str]
    ) -> QuerySet[models.Session]:
        """Sessions with at least one run whose provider is one of ``value``."""
        # EXISTS rather than a join: no duplicate rows, no DISTINCT over the table.
        runs = models.Run.objects.filter(session_id=OuterRef("id"), **{f"{name}__in": value})
        return queryset.filter(Exists(runs))

    def filter_include_deleted(
        self, queryset: QuerySet[models.Session], name: str, value: bool
    ) -> QuerySet[models.Session]:
        """All sessions when ``value`` is true; otherwise only those not soft-deleted."""
        return queryset if value else queryset.filter(**{f"{name}__isnull": True})

    def filter_queryset(self, queryset: QuerySet[models.Session]) -> QuerySet[models.Session]:
        # Framework state rows (ADK app:/user: state) are never listed as sessions.
        queryset = models.conversations(super().filter_queryset(queryset))
        if self.form.cleaned_data.get("include_deleted") is None:
            # Absent means the QueryAPI's default: live sessions only.
            queryset = self.filter_include_deleted(queryset, "deleted_at", False)
        return queryset


class RunFilterSet(django_filters.FilterSet):
    """Filters for :class:`agent_sessions.models.Run`.

    Parameters: ``session_id``; ``agent_id`` (runs of that agent's
    sessions); ``provider`` and ``status`` (any of);
    ``started_after``/``started_before`` (inclusive); ``min_tokens``
    (``token_usage["total_tokens"]`` at least this, missing counting as 0).
    """

    session_id = django_filters.CharFilter(
        field_name="session_id", lookup_expr="exact", strip=False
    )
    agent_id = django_filters.CharFilter(
        field_name="session_id", lookup_expr="in", strip=False, method="filter_agent_id"
    )
    provider = AnyOfFilter(field_name="provider", lookup_expr="in")
    status = AnyOfFilter(field_name="status", lookup_expr="in", choices=_choices(core.RunStatus))
    started_after = UTCDateTimeFilter(field_name="started_at", lookup_expr="gte")
    started_before = UTCDateTimeFilter(field_name="started_at", lookup_expr="lte")
    min_tokens = MinimumFilter(
        field_name="token_usage", lookup_expr="gte", method="filter_min_tokens"
    )

    class Meta:
        model = models.Run
        fields: list[str] = []

    def filter_agent_id(
        self, queryset: QuerySet[models.Run], name: str, value: str
    ) -> QuerySet[models.Run]:
        """Runs of the sessions that belong to agent ``value``."""
        sessions = models.Session.objects.filter(agent_id=value).values("id")
        return queryset.filter(**{f"{name}__in": sessions})

    def filter_min_tokens(
        self, queryset: QuerySet[models.Run], name: str, value: int
    ) -> QuerySet[models.Run]:
        """Runs whose ``total_tokens`` is at least ``value``."""
        return queryset.filter(GreaterThanOrEqual(total_tokens(), value))


class EventFilterSet(django_filters.FilterSet):
    """Filters for :class:`agent_sessions.models.Event`.

    Parameters: ``session_ids``, ``run_ids``, ``types``, ``providers`` (any
    of); ``since``/``until`` (inclusive, on ``timestamp``); ``correlation_id``.
    """

    session_ids = AnyOfFilter(field_name="session_id", lookup_expr="in")
    run_ids = AnyOfFilter(field_name="run_id", lookup_expr="in")
    types = AnyOfFilter(field_name="type", lookup_expr="in", choices=_choices(core.EventType))
    providers = AnyOfFilter(field_name="provider", lookup_expr="in")
    since = UTCDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = UTCDateTimeFilter(field_name="timestamp", lookup_expr="lte")
    correlation_id = django_filters.CharFilter(
        field_name="correlation_id", lookup_expr="exact", strip=False
    )

    class Meta:
        model = models.Event
        fields: list[str] = []
