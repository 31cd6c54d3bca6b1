"""A changelist paginator whose cost does not grow with the table.

Django's admin counts every changelist with ``SELECT COUNT(*)``, which reads
the whole ``asm_events`` table on each page view. :class:`EstimatedCountPaginator`
never does:

* an unfiltered changelist on PostgreSQL uses the planner's row estimate
  (``pg_class.reltuples``, kept fresh by autovacuum) once the table is big;
* everything else is counted up to a cap (``COUNT(*)`` over a ``LIMIT cap + 1``
  subquery), so a filter that matches millions of rows costs as much as one
  that matches a thousand.

Paging stops after :attr:`EstimatedCountPaginator.max_pages`, because an
``OFFSET`` deep into a big table is as slow as a count; narrow the list with a
filter or search instead.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

from django.core.paginator import EmptyPage, Paginator
from django.db import DatabaseError, connections, transaction
from django.db.models import QuerySet

#: SQLSTATE of ``statement_timeout`` cancelling a query (PostgreSQL).
QUERY_CANCELED = "57014"


def postgres_row_estimate(using: str, table: str) -> int | None:
    """The planner's row estimate for ``table``, or None when it has none yet.

    Args:
        using: The database alias (must be PostgreSQL).
        table: The table name, e.g. ``"asm_events"``.

    Returns:
        ``pg_class.reltuples`` rounded, or None when the table was never
        analysed (PostgreSQL 14+ reports -1) or is not found.
    """
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [table],
        )
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


def postgres_count_with_timeout(queryset: QuerySet[Any], timeout_ms: int) -> int | None:
    """Run ``queryset.count()`` with a PostgreSQL ``statement_timeout``.

    Returns:
        The count, or None when the database cancelled the query for taking
        longer than ``timeout_ms``.
    """
    using = queryset.db
    try:
        with transaction.atomic(using=using):
            with connections[using].cursor() as cursor:
                # SET LOCAL ends with this transaction, so no other query is capped.
                cursor.execute("SET LOCAL statement_timeout = %s", [int(timeout_ms)])
            return queryset.count()
    except DatabaseError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == QUERY_CANCELED:
            return None
        raise


class EstimatedCountPaginator(Paginator):  # type: ignore[type-arg]
    """A :class:`~django.core.paginator.Paginator` with a bounded-cost ``count``.

    Attributes:
        count_cap: Count exactly up to this many rows; above it, ``count`` is
            ``count_cap + 1`` and :attr:`is_capped` is True.
        count_timeout_ms: On PostgreSQL, a capped count taking longer than
            this (a rare filter on an unindexed column) gives up, and the list
            is treated as "more than ``count_cap``".
        max_pages: The deepest page offered (bounds the ``OFFSET``).
    """

    count_cap = 1000
    count_timeout_ms = 500
    max_pages = 100

    def __init__(
        self,
        object_list: Any,
        per_page: int | str,
        *args: Any,
        wanted_page: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(object_list, per_page, *args, **kwargs)
        self.is_estimate = False
        self.is_capped = False
        #: The page the request asks for: the count reaches at least to it, so
        #: page 22 of a filtered list exists when the rows do (bounded by max_pages).
        self.wanted_page = max(1, min(int(wanted_page), self.max_pages))

    @property
    def effective_cap(self) -> int:
        """The count is exact up to this many rows: the cap, or deeper for a deep page."""
        if self.wanted_page == 1:
            return self.count_cap
        return max(self.count_cap, self.wanted_page * int(self.per_page))

    @cached_property
    def count(self) -> int:
        """The number of rows: exact up to the cap, estimated or capped above it."""
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        vendor = connections[queryset.db].vendor
        if vendor == "postgresql" and not queryset.query.where:
            estimate = postgres_row_estimate(queryset.db, queryset.model._meta.db_table)
            if estimate is not None and estimate > self.effective_cap:
                self.is_estimate = True
                return estimate
        cap = self.effective_cap
        capped = queryset.order_by().values("pk")[: cap + 1]
        if vendor == "postgresql":
            counted = postgres_count_with_timeout(capped, self.count_timeout_ms)
        else:
            counted = capped.count()
        if counted is None or counted > cap:
            self.is_capped = True
            return cap + 1
        return counted

    @cached_property
    def num_pages(self) -> int:
        """The number of pages offered, at most :attr:`max_pages`."""
        if self.count == 0 and not self.allow_empty_first_page:
            return 0
        hits = max(1, self.count - self.orphans)
        return min(math.ceil(hits / self.per_page), self.max_pages)

    def validate_number(self, number: Any) -> int:
        """The page number, a page past the last one becoming the last page.

        Django's changelist answers an invalid page by redirecting to the
        unfiltered list (``?e=1``), which loses the user's filters.
        """
        try:
            return super().validate_number(number)
        except EmptyPage:
            if isinstance(number, int) and number > 1:
                return max(1, self.num_pages)
            raise

    @property
    def is_exact(self) -> bool:
        """True when :attr:`count` is the exact number of rows."""
        return not (self.is_estimate or self.is_capped)
