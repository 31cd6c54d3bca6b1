"""Delete sessions together with everything they own, in the caller's transaction.

One implementation serves :meth:`DjangoSessionStore.delete_session
<agent_sessions.store.DjangoSessionStore.delete_session>`,
:func:`~agent_sessions.store.delete_sessions_cascade` and the hard delete of
:class:`~agent_sessions.maintenance.DjangoMaintenance`: the callers own the
transaction (and its batching); this module only knows which rows go, and in
which order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet

from agent_sessions import models as m

__all__ = ["SessionSelection", "delete_sessions"]

#: Which sessions go: their ids, or a queryset of sessions selected again by
#: every statement (so no id list travels to the database).
SessionSelection = Sequence[str] | QuerySet[m.Session]

# Owned rows, by table, after the counter (which goes first, see below).
_OWNED_TABLES = ("asm_events", "asm_runs", "asm_artifacts")


def delete_sessions(
    connection: BaseDatabaseWrapper,
    selection: SessionSelection,
    *,
    before_delete: Callable[[], None] | None = None,
) -> int:
    """Delete the selected sessions with their counters, events, runs and artifacts.

    Runs inside the caller's transaction, which decides how many sessions
    one transaction holds. The sequence counters are deleted first: that
    locks them, so appends to these sessions wait for the commit instead of
    adding an event the cascade would miss. Ids without a session row still
    lose their counter, events, runs and artifacts.

    Args:
        connection: The connection whose transaction the deletes join.
        selection: The sessions' ids, or a queryset of the sessions (on this
            connection's database).
        before_delete: Called after the counters are deleted (and locked) and
            before anything else is, e.g. to archive exactly what goes.

    Returns:
        How many session rows were deleted.
    """
    condition, params = _membership(connection, selection)
    if condition is None:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM asm_session_sequences WHERE session_id {condition}", params)
        if before_delete is not None:
            before_delete()
        if connection.vendor == "postgresql":
            # A separate statement from the counters' delete, so its snapshot
            # includes the events of appends that committed while it waited.
            cursor.execute(
                _postgres_owned_and_sessions(condition), params * (len(_OWNED_TABLES) + 1)
            )
            return int(cursor.rowcount)
        for table in _OWNED_TABLES:
            cursor.execute(f"DELETE FROM {table} WHERE session_id {condition}", params)
        cursor.execute(f"DELETE FROM asm_sessions WHERE id {condition}", params)
        return int(cursor.rowcount)


def _postgres_owned_and_sessions(condition: str) -> str:
    """The owned rows' and the sessions' deletes as one statement (PostgreSQL).

    Data-modifying CTEs: one round trip and one plan instead of four, all
    or nothing like the transaction around it; every part sees the same
    snapshot, so each selects the same sessions. The row count is the
    sessions'.
    """
    owned = ",\n".join(
        f"gone_{table} AS (DELETE FROM {table} WHERE session_id {condition})"
        for table in _OWNED_TABLES
    )
    return f"WITH {owned}\nDELETE FROM asm_sessions WHERE id {condition}"


def _membership(
    connection: BaseDatabaseWrapper, selection: SessionSelection
) -> tuple[str | None, list[Any]]:
    """``IN (…)`` over the selection with its parameters; None when nothing is selected."""
    if isinstance(selection, QuerySet):
        ids = selection.order_by().values("id")
        sql, params = ids.query.get_compiler(connection=connection).as_sql()
        return f"IN ({sql})", list(params)
    if not selection:
        return None, []
    if len(selection) == 1:
        return "= %s", list(selection)
    return f"IN ({', '.join(['%s'] * len(selection))})", list(selection)
