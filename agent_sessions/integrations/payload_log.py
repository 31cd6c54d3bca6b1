"""A framework's records (items, messages) kept as events of one asm session.

What the message-list adapters (OpenAI Agents SDK, LangChain) share: the
"create the asm session on first use" write and :class:`PayloadLog`. Events
are appended through :class:`~agent_sessions.store.DjangoSessionStore` (its
codec, validation and numbering); reads of the records take the PostgreSQL
fast path of :mod:`agent_sessions.integrations.pgsql` where there is one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import IntegrityError, connections
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from agent_sessions import core
from agent_sessions import models as m
from agent_sessions.aio import run_in_worker
from agent_sessions.db import db_for_read, db_for_write, run_write, translate_errors
from agent_sessions.integrations.pgsql import aappend_one, is_postgres, read_payloads
from agent_sessions.store import DjangoSessionStore
from agent_sessions.validation import check_id, utcnow

__all__ = [
    "PayloadLog",
    "create_or_touch_session",
    "ensure_session",
    "touch_session",
    "write_transaction",
]

_T = TypeVar("_T")

#: Keep ``asm_sessions.updated_at`` (what retention ages by) at most this stale, in seconds.
TOUCH_INTERVAL_SECONDS = 60.0


def ensure_session(session: core.Session, *, using: str | None = None) -> None:
    """Insert ``session`` unless a session with its id is already stored.

    Runs as one ``INSERT … ON CONFLICT DO NOTHING``, so concurrent first uses
    of the same id from several processes are safe and the stored row (if any)
    is never changed.

    Args:
        session: The session to create (validated before writing).
        using: Database alias; None follows the routers.

    Raises:
        ValidationError: the session holds an invalid value.
        StorageError: the database failed.
    """
    session.validate()
    alias = db_for_write(using, m.Session)
    run_write(
        alias,
        "ensure_session",
        lambda _c: m.Session.objects.using(alias).bulk_create(
            [m.Session.from_domain(session)], ignore_conflicts=True
        ),
        single_statement=True,
    )


def create_or_touch_session(session: core.Session, *, using: str | None = None) -> None:
    """Insert ``session``, or set the stored row's ``updated_at`` to the new one's: one statement.

    What :func:`touch_session`, then :func:`ensure_session` when the touch
    found no row, do in up to four round trips (the insert in its own
    transaction), as one ``INSERT … ON CONFLICT (id) DO UPDATE SET
    updated_at``, alone in autocommit: safe under concurrent first uses, and
    every other column of a stored row is left as it is.

    Args:
        session: The session to create (validated before writing); its
            ``updated_at`` (now, for a new one) is what a stored row gets.
        using: Database alias; None follows the routers.

    Raises:
        ValidationError: the session holds an invalid value.
        StorageError: the database failed.
    """
    session.validate()
    alias = db_for_write(using, m.Session)
    row = m.Session.from_domain(session)
    meta = m.Session._meta
    # bulk_create(update_conflicts=True) runs the same INSERT, inside a transaction of its own.
    query = InsertQuery(
        m.Session,
        on_conflict=OnConflict.UPDATE,
        update_fields=[meta.get_field("updated_at")],
        unique_fields=[meta.pk],
    )
    query.insert_values(list(meta.concrete_fields), [row])
    run_write(
        alias,
        "create_or_touch_session",
        lambda _c: query.get_compiler(using=alias).execute_sql(),
        single_statement=True,
    )


def touch_session(session_id: str, *, using: str | None = None, **changes: Any) -> int:
    """Set ``updated_at`` to now (and any other given columns) on one session row.

    Args:
        session_id: The session to update.
        using: Database alias; None follows the routers.
        **changes: Further column values to set.

    Returns:
        How many rows were updated (0 when the session has no row).
    """
    alias = db_for_write(using, m.Session)
    return run_write(
        alias,
        "touch_session",
        lambda _c: (
            m.Session.objects.using(alias)
            .filter(id=session_id)
            .update(updated_at=utcnow(), **changes)
        ),
        single_statement=True,
    )


def write_transaction(alias: str, operation: str, work: Callable[[], _T]) -> _T:
    """Run ``work()`` in one transaction that writes, through :func:`~agent_sessions.db.run_write`.

    On SQLite the write lock is taken by the first statement, so a
    read-then-delete never fails half-way with "database is locked" but waits
    on the busy timeout like any other writer. Not repeated after a lost
    connection (a read-then-delete run twice would delete twice).
    """
    return run_write(alias, operation, lambda _c: work(), retry_safe=False)


class PayloadLog:
    """A framework's records (items, messages) kept as events of one asm session.

    Each record is one event whose ``data[key]`` holds it; other events of the
    session (written by ASM or the store) are left alone by every method. The
    asm session is created on first append, and its ``updated_at`` kept at
    most :data:`TOUCH_INTERVAL_SECONDS` stale so that retention ages it right.

    Args:
        session_id: The asm session id.
        key: The key of ``data`` that holds a record (and marks the event as one).
        source: Written to each event's ``metadata["source"]`` and the new
            session's ``metadata["framework"]``.
        agent_id: ``agent_id`` of the asm session when it is created here.
        using: Database alias; None follows the routers.
        status: Status of the asm session when it is created here.
        metadata: More metadata of the asm session when it is created here.
        fast_path: Let :meth:`aappend` use a private async connection on
            PostgreSQL (see :mod:`agent_sessions.integrations.pgasync`).

    Raises:
        ValidationError: an invalid id or status.
    """

    def __init__(
        self,
        session_id: str,
        *,
        key: str,
        source: str,
        agent_id: str,
        using: str | None = None,
        status: core.SessionStatus | str = core.SessionStatus.PENDING,
        metadata: dict[str, Any] | None = None,
        fast_path: bool = True,
    ) -> None:
        self.session_id = check_id(session_id, "session_id")
        self.key = key
        self.source = source
        self.using = using
        self.new_session = core.Session.new(
            check_id(agent_id, "agent_id"),
            id=self.session_id,
            status=status,
            metadata={"framework": source, **(metadata or {})},
        )
        self.store = DjangoSessionStore(using=using)
        self.fast_path = fast_path
        self._touched_at: float | None = None

    def _records(self, alias: str) -> Any:
        return m.Event.objects.using(alias).filter(
            session_id=self.session_id, data__has_key=self.key
        )

    def read(self, limit: int | None = None) -> list[Any]:
        """Return the records oldest first; with ``limit``, only the latest ``limit`` (≥ 0).

        On PostgreSQL the server builds the whole answer as one JSON array
        (:func:`~agent_sessions.integrations.pgsql.read_payloads`); other
        databases read the events through the ORM.
        """
        if limit == 0:
            return []
        if limit is not None and limit < 0:
            limit = None
        # The write database: each turn reads what the previous turn just wrote,
        # which a lagging replica may not have yet (a short or empty history).
        alias = db_for_read(self.using, m.Event, consistent=True)
        with translate_errors("read"):
            if is_postgres(alias):
                with connections[alias].cursor() as cursor:
                    return read_payloads(cursor, self.session_id, self.key, limit=limit)
            if limit is None:
                rows = list(self._records(alias).order_by("sequence_number").values_list("data"))
            else:
                newest_first = self._records(alias).order_by("-sequence_number")
                rows = list(newest_first.values_list("data")[:limit])
                rows.reverse()
        return [data[self.key] for (data,) in rows]

    def append(
        self, records: Sequence[Any], types: Sequence[core.EventType | str]
    ) -> list[core.Event]:
        """Append the records in order, each as an event of the given type (one transaction).

        Raises:
            ValidationError: a record holds a value the database cannot store;
                nothing is written.
        """
        events = self._new_events(records, types)
        if not events:
            return []
        self.keep_session_fresh()
        if len(events) == 1:
            # The store's single append is one statement on PostgreSQL (no
            # BEGIN/COMMIT round trips), the common case of one item per call.
            return [self.store.append_event(events[0])]
        return self.store.append_events(events)

    async def aappend(self, records: Sequence[Any], types: Sequence[core.EventType | str]) -> None:
        """:meth:`append`, awaited; one record on PostgreSQL needs no worker thread.

        That case (one item per call, the frameworks' usual one) runs the
        store's one-statement append on a private async connection
        (:mod:`agent_sessions.integrations.pgasync`) once the asm session is
        known to exist and fresh; everything else runs :meth:`append` in a
        worker thread.

        Raises:
            ValidationError: a record holds a value the database cannot store;
                nothing is written.
            StorageError: the database failed; nothing is written.
        """
        alias = db_for_write(self.using, m.Event)
        if not (self.fast_path and len(records) == 1 and self._fresh() and is_postgres(alias)):
            await run_in_worker(self.append, records, types)
            return
        # Validated (and normalised) by its constructor: what the store's
        # append would check, so the statement can run as is.
        event = self._new_events(records, types)[0]
        with translate_errors("append_event"):
            try:
                number = await aappend_one(alias, event)
            except IntegrityError:
                # A concurrent append of the same id, or a session deleted
                # meanwhile: the store's path sorts it out (retry, or error).
                number = None
        if number is None:
            await run_in_worker(self.store.append_event, event)

    def _new_events(
        self, records: Sequence[Any], types: Sequence[core.EventType | str]
    ) -> list[core.Event]:
        return [
            core.Event.new(
                event_type,
                self.session_id,
                data={self.key: record},
                metadata={"source": self.source},
            )
            for record, event_type in zip(records, types, strict=True)
        ]

    def pop(self) -> Any | None:
        """Remove and return the latest record, or None; atomic across processes."""
        alias = db_for_write(self.using, m.Event)

        def work() -> Any | None:
            # Locking the counter row queues pops (and appends, which bump it)
            # of this session behind each other; the delete count below still
            # guards events written without a counter.
            list(
                m.SessionSequence.objects.using(alias)
                .select_for_update()
                .filter(session_id=self.session_id)
                .values_list("session_id")
            )
            while True:
                newest_first = self._records(alias).order_by("-sequence_number")
                latest = newest_first.values_list("id", "data").first()
                if latest is None:
                    return None
                event_id, data = latest
                if m.Event.objects.using(alias).filter(id=event_id).delete()[0]:
                    return data[self.key]

        return write_transaction(alias, "pop", work)

    def clear(self) -> None:
        """Delete every record; the session row and its counter stay (numbers keep rising)."""
        alias = db_for_write(self.using, m.Event)
        write_transaction(alias, "clear", lambda: self._records(alias).delete())

    def keep_session_fresh(self) -> None:
        """Create the asm session if needed, and refresh its ``updated_at`` now and then."""
        # Creating the row once per instance, then touching updated_at at
        # most once a minute, keeps retention's clock right without paying an
        # extra statement on every append.
        if self._fresh():
            return
        now = time.monotonic()
        if self._touched_at is None:
            ensure_session(self.new_session, using=self.using)
        touch_session(self.session_id, using=self.using)
        self._touched_at = now

    def _fresh(self) -> bool:
        """Whether the session row is known to exist and was touched less than a minute ago."""
        return (
            self._touched_at is not None
            and time.monotonic() - self._touched_at < TOUCH_INTERVAL_SECONDS
        )
