"""Delete sessions together with everything they own, in the caller's transaction.

One implementation serves :meth:`DjangoSessionStore.delete_session
<agent_sessions.store.DjangoSessionStore.delete_session>`,
:func:`delete_sessions_cascade` and the hard delete of
:class:`~agent_sessions.maintenance.DjangoMaintenance`: the callers own the
transaction (and its batching); :func:`delete_sessions` only knows which rows
go, and in which order. :func:`delete_sessions_cascade` is the one caller
kept here: one write transaction per session through
:func:`agent_sessions.db.run_write` (also importable from
:mod:`agent_sessions.store`).

When the rows are archived first, the cascade deletes exactly what the
archive holds (:class:`ArchivedSessions`): the sessions, runs and artifacts
by id, and each session's events up to the highest sequence number
archived. A row that appeared or became deletable after the archive was
read survives, for the next run, instead of being deleted unarchived.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet

from agent_sessions import models as m
from agent_sessions.db import db_for_write, run_write
from agent_sessions.errors import StorageError
from agent_sessions.validation import check_id

__all__ = ["ArchivedSessions", "SessionSelection", "delete_sessions", "delete_sessions_cascade"]

#: Which sessions go: their ids, or a queryset of sessions selected again by
#: every statement (so no id list travels to the database).
SessionSelection = Sequence[str] | QuerySet[m.Session]

# Owned rows, by table, after the counter (which goes first, see below).
_OWNED_TABLES = ("asm_events", "asm_runs", "asm_artifacts")
# Ids per DELETE statement: well below SQLite's bound-parameter limit.
_IDS_PER_STATEMENT = 500


@dataclass(frozen=True, slots=True)
class ArchivedSessions:
    """What was archived of a batch of sessions: exactly what the cascade deletes.

    Attributes:
        session_ids: The sessions.
        run_ids: Their runs.
        artifact_ids: Their artifacts.
        last_sequence: Per session, the highest sequence number of its
            archived events (sessions without archived events are absent).
        event_count: How many events were archived.
    """

    session_ids: Sequence[str]
    run_ids: Sequence[str]
    artifact_ids: Sequence[str]
    last_sequence: Mapping[str, int]
    event_count: int


def delete_sessions(
    connection: BaseDatabaseWrapper,
    selection: SessionSelection,
    *,
    before_delete: Callable[[], ArchivedSessions | None] | None = None,
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
            before anything else is, e.g. to archive what goes. When it
            returns an :class:`ArchivedSessions`, exactly those rows are
            deleted and nothing else.

    Returns:
        How many session rows were deleted.

    Raises:
        StorageError: more events would go than were archived (a row was
            written meanwhile below the archived sequence numbers); the
            caller's transaction must roll back.
    """
    condition, params = _membership(connection, selection)
    if condition is None:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM asm_session_sequences WHERE session_id {condition}", params)
        archived = before_delete() if before_delete is not None else None
        if archived is not None:
            return _delete_archived(connection, archived)
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


def _delete_archived(connection: BaseDatabaseWrapper, archived: ArchivedSessions) -> int:
    """Delete exactly the archived rows; refuse (raise) if more events would go."""
    with connection.cursor() as cursor:
        events = 0
        bounds = sorted(archived.last_sequence.items())
        for chunk in _chunks(bounds, _IDS_PER_STATEMENT // 2):
            terms = " OR ".join(["(session_id = %s AND sequence_number <= %s)"] * len(chunk))
            cursor.execute(
                f"DELETE FROM asm_events WHERE {terms}", [v for pair in chunk for v in pair]
            )
            events += int(cursor.rowcount)
        if events > archived.event_count:
            raise StorageError(
                "storage_error",
                f"{events} events matched but {archived.event_count} were archived; "
                "nothing of this batch was deleted",
                details={"operation": "hard_delete", "archived": archived.event_count},
            )
        for table, column, ids in (
            ("asm_runs", "id", archived.run_ids),
            ("asm_artifacts", "id", archived.artifact_ids),
        ):
            for chunk in _chunks(list(ids), _IDS_PER_STATEMENT):
                cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({_marks(chunk)})", chunk)
        deleted = 0
        for chunk in _chunks(list(archived.session_ids), _IDS_PER_STATEMENT):
            cursor.execute(f"DELETE FROM asm_sessions WHERE id IN ({_marks(chunk)})", chunk)
            deleted += int(cursor.rowcount)
        return deleted


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(items: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(items))


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
    return f"IN ({_marks(selection)})", list(selection)


def delete_sessions_cascade(session_ids: Iterable[str], *, using: str | None = None) -> int:
    """Delete sessions with their runs, events, sequence counters and artifacts.

    Each session's cascade is one transaction of its own, so a failure leaves
    every session either wholly present or wholly gone, and no transaction
    grows with the number of sessions. Ids without a session row still have
    their runs, events, counter and artifacts deleted.

    Args:
        session_ids: The sessions to delete.
        using: Database alias; None follows the routers.

    Returns:
        How many session rows were deleted.

    Raises:
        ValidationError: an id is not a valid id.
        StorageError: the database failed (sessions handled before stay deleted).
        MigrationRequiredError: the tables are missing.
    """
    alias = db_for_write(using, m.Session)
    deleted = 0
    for session_id in session_ids:
        session_id = check_id(session_id, "session_id")

        def cascade(connection: BaseDatabaseWrapper, session_id: str = session_id) -> int:
            return delete_sessions(connection, [session_id])

        deleted += run_write(alias, "delete_session", cascade)
    return deleted
