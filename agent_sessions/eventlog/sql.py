"""Vendor-specific SQL of the event log: sequence reservation, inserts, notifications.

The append algorithm (:mod:`agent_sessions.eventlog.append`) decides *what*
to write; this module is the one place that knows *how* PostgreSQL and SQLite spell it:

- the per-session counter is one atomic upsert on ``asm_session_sequences``
  (``INSERT … ON CONFLICT (session_id) DO UPDATE SET last_sequence =
  last_sequence + n RETURNING last_sequence``), run in the same transaction as
  the event insert, so a rolled-back append never consumes a number;
- on PostgreSQL a single append is *one* statement (lookup, counter upsert,
  insert and ``pg_notify`` in a CTE) and a batch is loaded with ``COPY``;
- ``pg_notify`` is sent inside the appending transaction and delivered on
  commit, which is what the process-wide listener of waiting readers
  (:mod:`agent_sessions.listener`) waits for;
- SQLite takes its write lock up front (:func:`take_sqlite_write_lock`) so
  concurrent writers queue on the busy timeout instead of failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from agent_sessions.eventlog import routed
from agent_sessions.eventlog.codec import EVENT_COLUMNS, QUOTED_EVENT_COLUMNS
from agent_sessions.eventlog.routed import AppendFunctionMissing

__all__ = [
    "APPEND_EVENT_FUNCTION",
    "APPEND_ONE_POSTGRES",
    "CALL_APPEND_EVENT",
    "INSERT_EVENT_FROM_COUNTER",
    "NOTIFY_CHANNEL",
    "NOTIFY_IF_WATCHED",
    "STORED_EVENTS_POSTGRES",
    "WATCH_KEYS_PER_BATCH",
    "WATCH_LOCK_CLASS",
    "AppendFunctionMissing",
    "append_one_postgres",
    "append_one_sqlite",
    "catch_up_counters",
    "copy_events_postgres",
    "insert_events_sqlite",
    "notify_sessions",
    "reserve_blocks",
    "take_sqlite_write_lock",
]


#: The body of an ``inserted`` CTE: stores the event given as named
#: parameters (:func:`event_params`) under the number that a preceding
#: ``counter`` CTE returned.
INSERT_EVENT_FROM_COUNTER = f"""INSERT INTO asm_events ({QUOTED_EVENT_COLUMNS})
    SELECT %(id)s, %(type)s, %(timestamp)s, %(session_id)s, %(run_id)s, counter.last_sequence,
           %(data)s::jsonb, %(metadata)s::jsonb, %(schema_version)s, %(provider)s,
           %(correlation_id)s
    FROM counter"""


#: The LISTEN/NOTIFY channel; the payload is the session id of the appended events.
NOTIFY_CHANNEL = "agent_sessions_events"


#: First half of the two-part advisory lock key by which a waiting reader
#: says "I am watching session S"; the second half is ``hashtext(S)``. Other
#: writers to asm_events (the framework adapters) follow the same protocol.
#: The two-integer key space is separate from the bigint one other advisory
#: locks use.
WATCH_LOCK_CLASS = 0x61736D77  # "asmw"


#: A writer holds the watch keys it takes until it commits. Above this many
#: sessions in one batch it notifies them all instead of taking a key per
#: session, so that a huge batch cannot exhaust PostgreSQL's lock table
#: (sized by max_locks_per_transaction, 64 by default).
WATCH_KEYS_PER_BATCH = 32


_WATCH_KEY = f"{WATCH_LOCK_CLASS}, hashtext({{sid}})"


# Why the watch lock: a transaction that ran NOTIFY takes a cluster-wide lock
# for its commit, so commits of notifying transactions are serialised (no
# group commit). Appends therefore notify only when a reader is watching
# their session. The process's listener (agent_sessions.listener) holds a
# shared lock on the key of every session somebody waits for, on its direct
# connection; a writer's exclusive try-lock fails exactly then, and it
# notifies. If the writer's try-lock wins instead, it holds the key until its
# commit; the listener retries the shared lock and checks the session once
# it holds it, so that commit is seen too. Writers take the key with a
# transaction-scoped try-lock, which is safe behind a transaction pooler.
# Hash collisions only cause needless notifications.
NOTIFY_IF_WATCHED = (
    f"pg_notify('{NOTIFY_CHANNEL}', {{sid}}) "
    f"FROM {{source}} WHERE NOT pg_try_advisory_xact_lock({_WATCH_KEY})"
)


# One statement for a single append on PostgreSQL. ``counter`` bumps the
# session's counter only when no event is stored under this id yet
# (idempotent append: a duplicate consumes no number and the statement returns
# no row), ``inserted`` stores the event with the number it returned, and the
# final SELECT notifies watchers (CASE fixes the evaluation order: try the
# lock first). Should a concurrent transaction insert the same new id first,
# the insert fails with a unique violation and the whole statement, counter
# bump included, is rolled back; the caller retries and then finds the stored
# event. Kept small on purpose: without prepared statements, planning is a
# good part of its cost.
APPEND_ONE_POSTGRES = f"""
WITH counter AS (
    INSERT INTO asm_session_sequences AS seq (session_id, last_sequence, updated_at)
    SELECT %(session_id)s, 1, %(now)s
    WHERE NOT EXISTS (SELECT FROM asm_events WHERE id = %(id)s)
    ON CONFLICT (session_id) DO UPDATE
        SET last_sequence = seq.last_sequence + EXCLUDED.last_sequence,
            updated_at = EXCLUDED.updated_at
    RETURNING last_sequence
), inserted AS (
    {INSERT_EVENT_FROM_COUNTER}
    RETURNING sequence_number
)
SELECT sequence_number,
       CASE WHEN pg_try_advisory_xact_lock({_WATCH_KEY.format(sid="%(session_id)s")})
            THEN false
            ELSE pg_notify('{NOTIFY_CHANNEL}', %(session_id)s) IS NULL
       END
FROM inserted
"""


#: Stored events among a batch's ids, PostgreSQL. The LATERAL ``LIMIT 1``
#: keeps the planner from folding the probe into a join, so each id is one
#: primary-key lookup whatever the table's size or statistics (a plain
#: ``id = ANY(...)`` turns into a sequential scan on mid-sized tables).
STORED_EVENTS_POSTGRES = f"""
SELECT {", ".join(f'e."{name}"' for name in EVENT_COLUMNS)}
FROM unnest(%s::varchar[]) AS wanted(id)
CROSS JOIN LATERAL (
    SELECT {QUOTED_EVENT_COLUMNS} FROM asm_events WHERE id = wanted.id LIMIT 1
) AS e
"""


_RESERVE_POSTGRES = """
INSERT INTO asm_session_sequences AS seq (session_id, last_sequence, updated_at)
SELECT session_id, count, %s FROM unnest(%s::varchar[], %s::integer[]) AS t(session_id, count)
ON CONFLICT (session_id) DO UPDATE
    SET last_sequence = seq.last_sequence + EXCLUDED.last_sequence,
        updated_at = EXCLUDED.updated_at
RETURNING session_id, last_sequence
"""


# One event on SQLite: bump the counter only when no event is stored under this
# id yet (no row back: a duplicate, nothing consumed). The SELECT needs its WHERE
# for SQLite to parse the ON CONFLICT clause after it.
#: The single append's counter upsert on SQLite, with its idempotency check:
#: one statement, no row when the id is stored (driver ``?`` placeholders).
_RESERVE_ONE_SQLITE = """
INSERT INTO asm_session_sequences AS seq (session_id, last_sequence, updated_at)
SELECT ?, 1, ? WHERE NOT EXISTS (SELECT 1 FROM asm_events WHERE id = ?)
ON CONFLICT (session_id) DO UPDATE
    SET last_sequence = seq.last_sequence + 1, updated_at = excluded.updated_at
RETURNING last_sequence
"""

_RESERVE_SQLITE = """
INSERT INTO asm_session_sequences AS seq (session_id, last_sequence, updated_at)
VALUES {values}
ON CONFLICT (session_id) DO UPDATE
    SET last_sequence = seq.last_sequence + excluded.last_sequence,
        updated_at = excluded.updated_at
RETURNING session_id, last_sequence
"""


_PLACEHOLDERS = ", ".join(["%s"] * len(EVENT_COLUMNS))
_INSERT_SQLITE = f"INSERT INTO asm_events ({QUOTED_EVENT_COLUMNS}) VALUES ({_PLACEHOLDERS})"


#: The PL/pgSQL twin of :data:`APPEND_ONE_POSTGRES`, created by migration 0006.
APPEND_EVENT_FUNCTION = "asm_append_event"


_APPEND_EVENT_SIGNATURE = (
    f"{APPEND_EVENT_FUNCTION}(varchar, varchar, timestamp, varchar, varchar, jsonb, jsonb,"
    " integer, varchar, varchar, timestamp)"
)


CALL_APPEND_EVENT = f"""SELECT {APPEND_EVENT_FUNCTION}(
    %(id)s, %(type)s, %(timestamp)s, %(session_id)s, %(run_id)s, %(data)s::jsonb,
    %(metadata)s::jsonb, %(schema_version)s, %(provider)s, %(correlation_id)s, %(now)s)"""


def append_one_postgres(connection: BaseDatabaseWrapper, params: dict[str, Any]) -> int | None:
    """Append one event on PostgreSQL in a single statement.

    Django's default connection settings send every statement unprepared
    (``prepare_threshold`` off, as transaction-pooling proxies need), and the
    append's CTE costs as much to plan as to run. So the statement is a call
    of ``asm_append_event(...)`` (migration 0006), a PL/pgSQL function whose
    inner statements are planned once per server connection — which survives
    PgBouncer's transaction pooling, unlike a client-side prepared statement.
    On a direct connection to the server (not through a pooler, see
    :mod:`agent_sessions.eventlog.routed`) the call itself is prepared too, so
    it is not even parsed again. Where the function is missing (migration
    0006 not applied) the CTE runs instead. Either way the statement bypasses
    Django's cursor wrapper, so it does not appear in ``connection.queries``.

    Args:
        connection: The Django connection (in autocommit, or inside the
            append's transaction).
        params: The event's column values by name, ready for the database
            (JSON as text, naive UTC timestamp; no ``sequence_number``), and
            ``now``, the counter's ``updated_at``.

    Returns:
        The new event's sequence number, or None when an event with this id
        is already stored (nothing was written).

    Raises:
        AppendFunctionMissing: the function was dropped since it was looked
            up, or its prepared statement vanished; the caller runs the
            append again (then with the CTE, or unprepared).
    """
    rows = routed.execute(
        connection,
        _APPEND_EVENT_SIGNATURE,
        CALL_APPEND_EVENT,
        params,
        without_function=APPEND_ONE_POSTGRES,
    )
    if not rows or rows[0][0] is None:
        return None
    return int(rows[0][0])


def reserve_blocks(
    connection: BaseDatabaseWrapper,
    cursor: CursorWrapper,
    counts: dict[str, int],
    now: Any,
) -> dict[str, int]:
    """Bump several sessions' counters in one statement and return each new last number.

    The block of session ``s`` is ``last - counts[s] + 1 .. last``. Sessions
    are locked in sorted order so that concurrent batches never deadlock.

    Args:
        connection: The Django connection (for its vendor).
        cursor: A cursor inside the append's transaction.
        counts: Session id → how many numbers to reserve (each ≥ 1).
        now: The counters' ``updated_at``, already prepared for the database.

    Returns:
        Session id → the last number of its reserved block.
    """
    session_ids = sorted(counts)
    if connection.vendor == "postgresql":
        cursor.execute(_RESERVE_POSTGRES, [now, session_ids, [counts[sid] for sid in session_ids]])
    else:
        values = ", ".join(["(%s, %s, %s)"] * len(session_ids))
        params: list[Any] = []
        for sid in session_ids:
            params += [sid, counts[sid], now]
        cursor.execute(_RESERVE_SQLITE.format(values=values), params)
    return {sid: last for sid, last in cursor.fetchall()}


_INSERT_SQLITE_DRIVER = _INSERT_SQLITE.replace("%s", "?")
_SEQUENCE_INDEX = EVENT_COLUMNS.index("sequence_number")


def append_one_sqlite(
    connection: BaseDatabaseWrapper, row: list[Any], event_id: str, session_id: str, now: Any
) -> int | None:
    """Append one event on SQLite: the counter (with the duplicate check), then the insert.

    In autocommit outside any atomic block, the two statements run in a
    transaction of their own on the driver connection, ``BEGIN IMMEDIATE`` …
    ``COMMIT`` (the write lock taken up front, as every writer here takes
    it): Django's transaction and cursor machinery cost about as much as
    the two statements. Inside a transaction they join it. A failure rolls
    back everything this call wrote.

    Args:
        connection: The Django connection.
        row: The event's values in :data:`EVENT_COLUMNS` order; its
            ``sequence_number`` is filled in here.
        event_id: The event's id (the duplicate check).
        session_id: The event's session (its counter).
        now: The counter's ``updated_at``, already prepared for the database.

    Returns:
        The new event's sequence number, or None when an event with this id
        is already stored (nothing was written).
    """
    connection.ensure_connection()
    driver_connection = connection.connection
    own = connection.get_autocommit() and not connection.in_atomic_block
    cursor = driver_connection.cursor()
    with connection.wrap_database_errors:
        if own:
            cursor.execute("BEGIN IMMEDIATE")
        try:
            cursor.execute(_RESERVE_ONE_SQLITE, (session_id, now, event_id))
            reserved = cursor.fetchone()
            if reserved is not None:
                row[_SEQUENCE_INDEX] = number = int(reserved[0])
                cursor.execute(_INSERT_SQLITE_DRIVER, row)
            if own:
                cursor.execute("COMMIT")
        except BaseException:
            if own and driver_connection.in_transaction:
                driver_connection.rollback()
            raise
    return None if reserved is None else number


def copy_events_postgres(
    connection: BaseDatabaseWrapper, cursor: CursorWrapper, rows: Iterable[Sequence[Any]]
) -> None:
    """Load event rows (in :data:`EVENT_COLUMNS` order) with ``COPY … FROM STDIN``."""
    # ``copy()`` is psycopg's own method: wrap its errors as Django does for execute().
    with (
        connection.wrap_database_errors,
        cursor.copy(f"COPY asm_events ({QUOTED_EVENT_COLUMNS}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


#: Rows per multi-row INSERT on SQLite: within the 999 bound parameters of
#: SQLite builds before 3.32.
SQLITE_ROWS_PER_INSERT = 999 // len(EVENT_COLUMNS)


def insert_events_sqlite(cursor: CursorWrapper, rows: Sequence[Sequence[Any]]) -> None:
    """Insert event rows (in :data:`EVENT_COLUMNS` order) on SQLite.

    One ``INSERT … VALUES (…), (…)`` per :data:`SQLITE_ROWS_PER_INSERT` rows,
    not ``executemany``: each statement costs a statement journal and, with
    the full-text index's FTS5 triggers, a new index segment, so a batch pays
    for a handful of statements instead of one per event.
    """
    for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
        chunk = rows[start : start + SQLITE_ROWS_PER_INSERT]
        if len(chunk) == 1:
            cursor.execute(_INSERT_SQLITE, chunk[0])
            continue
        values = ", ".join([f"({_PLACEHOLDERS})"] * len(chunk))
        cursor.execute(
            f"INSERT INTO asm_events ({QUOTED_EVENT_COLUMNS}) VALUES {values}",
            [value for row in chunk for value in row],
        )


def notify_sessions(
    connection: BaseDatabaseWrapper, cursor: CursorWrapper, session_ids: Iterable[str]
) -> None:
    """Tell long-polling readers that these sessions have new events (PostgreSQL only).

    Sent inside the appending transaction: PostgreSQL delivers it on commit
    and drops it on rollback. Only sessions that a reader is watching are
    notified (see :data:`WATCH_LOCK_CLASS`), unless the batch spans more than
    :data:`WATCH_KEYS_PER_BATCH` sessions. A no-op on other databases, whose
    readers poll.
    """
    if connection.vendor != "postgresql":
        return
    unique = sorted(set(session_ids))
    source = "unnest(%s::text[]) AS t(sid)"
    if len(unique) > WATCH_KEYS_PER_BATCH:
        sql = f"SELECT pg_notify('{NOTIFY_CHANNEL}', sid) FROM {source}"
    else:
        sql = f"SELECT {NOTIFY_IF_WATCHED.format(sid='sid', source=source)}"
    cursor.execute(sql, [unique])


_CATCH_UP = """
INSERT INTO asm_session_sequences AS seq (session_id, last_sequence, updated_at)
SELECT session_id, MAX(sequence_number), NULL FROM asm_events
WHERE session_id IN ({ids}) GROUP BY session_id
ON CONFLICT (session_id) DO UPDATE
    SET last_sequence = {greatest}(seq.last_sequence, excluded.last_sequence)
"""


def catch_up_counters(
    connection: BaseDatabaseWrapper, cursor: CursorWrapper, session_ids: Sequence[str]
) -> None:
    """Raise (or create) these sessions' counters to their highest stored sequence number.

    For a counter that is missing while events exist (ASM's orphan clean-up
    deletes such counters) or below them: the next append then continues at
    ``max(sequence_number) + 1`` instead of failing on the unique index.
    A counter never goes down.
    """
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    ids = ", ".join(["%s"] * len(session_ids))
    cursor.execute(_CATCH_UP.format(ids=ids, greatest=greatest), list(session_ids))


def take_sqlite_write_lock(cursor: CursorWrapper) -> None:
    """Take SQLite's write lock now, at the start of the transaction.

    A transaction that reads first and writes later cannot wait for the lock
    (SQLite fails it at once with "database is locked"); one that writes first
    waits on the busy timeout like everybody else. The statement changes
    nothing but still starts the write. Harmless when the transaction was
    opened with ``BEGIN IMMEDIATE`` (Django's ``transaction_mode``).
    """
    cursor.execute("UPDATE asm_session_sequences SET last_sequence = last_sequence WHERE 1 = 0")
