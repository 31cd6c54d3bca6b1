"""The base of the agent_sessions admins: bounded changelists over big tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest

from agent_sessions.admin.paginator import EstimatedCountPaginator
from agent_sessions.conf import app_settings
from agent_sessions.errors import ValidationError
from agent_sessions.validation import check_id, check_varchar


class BoundedChangeList(ChangeList):
    """A changelist that loads only the columns its model admin lists."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        columns = getattr(self.model_admin, "list_columns", ())
        return queryset.only(*columns) if columns else queryset

    def get_ordering_field(self, field_name: Any) -> Any:
        # Django honours ?o=N for any listed column; sorting 10^6 events by an
        # unindexed one takes seconds, so only sortable_by columns may sort.
        sortable = self.sortable_by
        if sortable is not None and field_name not in sortable:
            return None
        return super().get_ordering_field(field_name)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # A page past the last one was shown as the last (the paginator clamps it).
        self.page_num = min(self.page_num, max(1, self.paginator.num_pages))
        if not getattr(self.paginator, "is_exact", True):
            # An estimate is not a result count: the search bar would print it
            # as "1001 results"; the pagination line says "about"/"more than".
            self.full_result_count = self.result_count


class BigTableAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Changelist and detail behaviour shared by the four agent_sessions admins.

    Attributes:
        list_columns: The columns a changelist loads (``QuerySet.only``);
            everything else, notably large JSON, stays in the database.
        exact_search_fields: Indexed columns that a search term must equal.
        url_lookups: Query-string lookups accepted besides the list filters
            (links such as ``?session_id=...``).
        json_fields: JSON columns shown pretty-printed on the detail page.
        editable_fields: Columns editable when ``ADMIN_ALLOW_EDIT`` is True.
        extra_detail_fields: Read-only extras after the columns (links, checks).
        linked_fields: Id columns shown on the detail page as links, by the
            name of the display method that renders the link.
    """

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    list_max_show_all = 200
    list_columns: Sequence[str] = ()
    exact_search_fields: Sequence[str] = ()
    url_lookups: Sequence[str] = ()
    json_fields: Sequence[str] = ()
    editable_fields: Sequence[str] = ()
    extra_detail_fields: Sequence[str] = ()
    linked_fields: dict[str, str] = {}
    search_help_text = "Exact id."

    class Media:
        css = {"all": ("agent_sessions/admin.css",)}
        js = ("agent_sessions/admin.js",)

    # ----- permissions

    def can_view(self, request: HttpRequest, model: type[Model]) -> bool:
        """True when the user may view ``model``'s rows (its admin's view permission).

        The session page, the conversation view and the export show runs and
        events only to users who may open those rows' own pages.
        """
        model_admin = self.admin_site._registry.get(model)
        if model_admin is not None:
            return bool(model_admin.has_view_permission(request))
        opts = model._meta
        user = request.user
        return user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or user.has_perm(
            f"{opts.app_label}.change_{opts.model_name}"
        )

    def allows_edit(self) -> bool:
        """True when the settings allow editing rows of this model."""
        return app_settings.ADMIN_ALLOW_EDIT and bool(self.editable_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Rows are written by agents through the store, which assigns ids and
        # sequence numbers; the admin never creates them.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.allows_edit() and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # ----- changelist

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Any:
        raw = request.GET.get("p", "1")
        wanted = int(raw) if raw.isdigit() and len(raw) < 6 else 1
        return self.paginator(
            queryset, per_page, orphans, allow_empty_first_page, wanted_page=wanted
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return BoundedChangeList

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        for key, values in request.GET.lists():
            # PostgreSQL refuses NUL in text; reject it here instead of as a 500.
            if "\x00" in key or any("\x00" in value for value in values):
                raise IncorrectLookupParameters(f"invalid value for {key!r}")
        return super().get_changelist_instance(request)

    def lookup_allowed(self, lookup: str, value: Any, request: HttpRequest | None = None) -> bool:
        # Only cheap, indexed lookups; anything else is refused with a 400.
        specs = self.get_list_filter(request) if request is not None else self.list_filter
        filter_params = {getattr(spec, "parameter_name", None) for spec in specs}
        return lookup in self.url_lookups or lookup in filter_params

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            term = check_varchar(term, "search", required=True)
        except ValidationError:
            return queryset.none(), False
        return self.search_queryset(queryset, term), False

    def search_queryset(self, queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
        """The rows of ``queryset`` a validated, non-empty search term finds."""
        return queryset.filter(self.search_condition(term))

    def search_condition(self, term: str) -> Any:
        """The ``Q`` a search term must satisfy: equality on an indexed column."""
        condition = Q()
        for name in self.exact_search_fields:
            condition |= Q(**{name: term})
        return condition

    # ----- detail page

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        try:
            check_id(object_id, "id")
        except ValidationError:
            # Not an id the table can hold: the admin reports "does not exist".
            return None
        return super().get_object(request, object_id, from_field)

    def detail_fields(self) -> list[str]:
        """The model's columns in table order."""
        return [field.name for field in self.model._meta.concrete_fields]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        editable = self.allows_edit()
        fields = []
        for name in self.detail_fields():
            if name in self.json_fields and not (editable and name in self.editable_fields):
                fields.append(f"{name}_json")
            elif name in self.linked_fields and not (editable and name in self.editable_fields):
                fields.append(self.linked_fields[name])
            else:
                fields.append(name)
        return fields + list(self.extra_detail_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = self.get_fields(request, obj)
        if not self.allows_edit():
            return fields
        return [name for name in fields if name not in self.editable_fields]
