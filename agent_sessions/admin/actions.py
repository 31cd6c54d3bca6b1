"""What the session actions write: soft-delete and restore, on the write database, logged.

The admin reads through the routers' read database (possibly a replica), but
an action decides *which* rows to change and changes them on
``router.db_for_write`` — picking ids from a lagging replica could restore a
session that was just deleted again — through the one write path,
:func:`agent_sessions.db.run_write` (typed errors, reconnection). Each batch of at most
:data:`ACTION_BATCH_SIZE` sessions is one short transaction that locks its
rows, changes only those still in the expected state, and records one
:class:`~django.contrib.admin.models.LogEntry` per changed session (the
object's History page).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from agent_sessions import models
from agent_sessions.db import db_for_write, run_write, translate_errors
from agent_sessions.validation import utcnow

#: Rows changed per transaction by the soft-delete and restore actions.
ACTION_BATCH_SIZE = 500

__all__ = ["ACTION_BATCH_SIZE", "restore_sessions", "soft_delete_sessions"]


def _set_deleted_at(
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    state: Q,
    value: Any,
    message: str,
    operation: str,
) -> int:
    # QuerySet._db: the alias of an explicit using() (kept), None when routed.
    alias = db_for_write(getattr(queryset, "_db", None), models.Session)
    # The selection (ids and filters) is re-evaluated on the write database.
    candidates = queryset.using(alias).filter(state).order_by("pk").values_list("pk", flat=True)
    changed = 0
    last: str | None = None
    user_id = request.user.pk

    def change(batch: list[str]) -> Callable[[BaseDatabaseWrapper], int]:
        return lambda _connection: change_batch(batch)

    def change_batch(batch: list[str]) -> int:
        rows = models.Session.objects.using(alias).filter(state, pk__in=batch)
        locked = list(rows.select_for_update().values_list("pk", flat=True))
        count = models.Session.objects.using(alias).filter(pk__in=locked).update(deleted_at=value)
        if locked and user_id is not None:
            LogEntry.objects.log_actions(
                user_id, [models.Session(id=pk) for pk in locked], CHANGE, change_message=message
            )
        return count

    while True:
        page = candidates.filter(pk__gt=last) if last is not None else candidates
        with translate_errors(operation):
            batch = list(page[:ACTION_BATCH_SIZE])
        if not batch:
            return changed
        # Retry-safe: a batch run twice changes (and logs) only rows still in ``state``.
        changed += run_write(alias, operation, change(batch))
        last = batch[-1]


def soft_delete_sessions(request: HttpRequest, queryset: QuerySet[Any]) -> int:
    """Set ``deleted_at`` on the live sessions of ``queryset``; returns how many changed."""
    return _set_deleted_at(
        request,
        queryset,
        state=Q(deleted_at__isnull=True),
        value=utcnow(),
        message="Soft-deleted (deleted_at set).",
        operation="admin soft_delete_sessions",
    )


def restore_sessions(request: HttpRequest, queryset: QuerySet[Any]) -> int:
    """Clear ``deleted_at`` on the soft-deleted sessions of ``queryset``; returns the count."""
    return _set_deleted_at(
        request,
        queryset,
        state=Q(deleted_at__isnull=False),
        value=None,
        message="Restored (deleted_at cleared).",
        operation="admin restore_sessions",
    )
