"""Full-text search over event ``data``: the query syntax and the vendor SQL of the index.

The one module that knows how events are made searchable (CONTRACT §14).
:meth:`agent_sessions.query.DjangoQueryAPI.search_text` calls it; the
migration ``0004_event_text_search`` and ``manage.py asm_search_index`` build
the index with :func:`install_search_index`.

**What is indexed.** Every string value inside an event's ``data``, at any
depth (object keys are not). The database itself keeps the index in step with
``asm_events`` through triggers, so rows written by any writer (the store, an
Elixir application, raw SQL, a restore) are searchable with no application
path, and deleted rows (pruning, hard deletes) leave it. ASM's five tables are
untouched; the index lives beside them:

- PostgreSQL: ``asm_events_search(event_id, event_timestamp, document
  tsvector)`` with a GIN
  index, filled by statement-level triggers on ``asm_events``. The tsvector is
  stored rather than computed by an expression index because ranking needs it
  for every match: recomputing ``jsonb_to_tsvector`` per matching row measured
  about 100 times slower than reading the stored one (docs/search.md). The
  text-search configuration (``TEXT_SEARCH_CONFIG``, default ``simple``) is
  compiled into the function ``asm_events_search_config()``, which both the
  triggers and the queries call, so documents and queries always agree.
- SQLite: ``asm_events_search(doc, event_id, ts, body)`` holds the text (string
  values joined by newlines) and is the external content of the FTS5 table
  ``asm_events_search_fts``; triggers keep both in step. (``asm_events`` has
  no stable integer key to use as the FTS rowid: its rowid may change on
  ``VACUUM``.)

Both keep each event's timestamp beside its document, so a search without
filters ranks and orders matches (rank, then timestamp, then id) from the
index alone (:func:`ranked_matches`).

**Query syntax** (:func:`parse_text_query`): words (all must occur),
``"exact phrases"``, ``-excluded`` words or phrases, and ``OR`` between
alternatives. Every term reaches the database as a bound parameter and is
tokenized by the database's own tokenizer (``phraseto_tsquery``, an FTS5
string), never as query syntax, so no user text can form an operator.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from agent_sessions.errors import ValidationError
from agent_sessions.validation import check_text

__all__ = [
    "MAX_QUERY_LENGTH",
    "SEARCH_INDEX_DROPPED",
    "SEARCH_TABLES",
    "SNIPPET_START",
    "SNIPPET_STOP",
    "Term",
    "TextQuery",
    "fts5_available",
    "indexed_config",
    "install_search_index",
    "parse_text_query",
    "ranked_matches",
    "remove_search_index",
    "search_index_exists",
    "snippets",
]

#: Longest accepted query, in characters.
MAX_QUERY_LENGTH = 1000
#: Markers around matched terms in snippets.
SNIPPET_START = "[["
SNIPPET_STOP = "]]"
#: Between the fragments of one snippet.
SNIPPET_ELLIPSIS = " … "
#: Tables the search index adds, per vendor (FTS5 adds its shadow tables ``…_fts_*``).
SEARCH_TABLES = {
    "postgresql": ("asm_events_search",),
    "sqlite": ("asm_events_search", "asm_events_search_fts"),
}

#: What ``search_text`` says (``search_unavailable``) when the index was dropped.
SEARCH_INDEX_DROPPED = (
    "Full-text search is turned off on this database: its search index does not exist "
    "(dropped with `manage.py asm_search_index --drop`). Run `python manage.py "
    "asm_search_index` to build it again."
)

_CONFIG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')
# Letters or digits: a term without any is dropped (the tokenizers see no word in it).
_WORD_CHARACTER = re.compile(r"[^\W_]")


# --------------------------------------------------------------------------- query syntax


@dataclass(frozen=True, slots=True)
class Term:
    """One word or phrase of a query.

    Attributes:
        text: The words, as typed (the database tokenizes them).
        excluded: True for ``-word``: matching events are left out.
    """

    text: str
    excluded: bool = False


@dataclass(frozen=True, slots=True)
class TextQuery:
    """A parsed query: alternatives (``OR``), each a conjunction of terms.

    Attributes:
        text: The query as given.
        alternatives: Each holds at least one term that is not excluded.
    """

    text: str
    alternatives: tuple[tuple[Term, ...], ...]

    @property
    def is_empty(self) -> bool:
        """True when no term holds a word (the query can match nothing)."""
        return not self.alternatives


def parse_text_query(q: object) -> TextQuery:
    """Validate and parse a user's query.

    Syntax: ``word`` (every word must occur), ``"exact phrase"``, ``-word``
    or ``-"phrase"`` (must not occur), ``OR`` (upper case) between
    alternatives. Anything else is text: quotes are closed at the end,
    operators of the underlying engines (``NEAR``, ``*``, ``:``, ``^``,
    ``&``, ``|``, parentheses) are ordinary characters.

    Args:
        q: The query text.

    Returns:
        The parsed query; :attr:`TextQuery.is_empty` when it holds no word
        at all (only punctuation), which matches nothing.

    Raises:
        ValidationError: ``validation_error`` when ``q`` is not a string, is
            empty or blank, longer than :data:`MAX_QUERY_LENGTH`, contains a
            NUL character, or has an alternative made only of excluded terms
            (there is nothing to look for).
    """
    text = check_text(q, "q", max_length=MAX_QUERY_LENGTH)
    if not text.strip():
        raise ValidationError("validation_error", "q must not be blank", field="q")
    alternatives: list[tuple[Term, ...]] = []
    current: list[Term] = []
    for match in _TOKEN.finditer(text):
        minus_phrase, phrase, minus_word, word = match.groups()
        if phrase is None and word == "OR":
            alternatives.append(tuple(current))
            current = []
            continue
        value = phrase if phrase is not None else word
        if _WORD_CHARACTER.search(value):
            current.append(Term(value, excluded=bool(minus_phrase or minus_word)))
    alternatives.append(tuple(current))
    kept = tuple(terms for terms in alternatives if terms)
    for terms in kept:
        if all(term.excluded for term in terms):
            raise ValidationError(
                "validation_error",
                "q needs a word or phrase to look for besides the excluded ones",
                field="q",
            )
    return TextQuery(text, kept)


def _fts5_string(text: str) -> str:
    # An FTS5 string: the tokenizer splits it into a phrase, nothing in it is syntax.
    return '"' + text.replace('"', '""') + '"'


def fts5_match_expression(query: TextQuery) -> str:
    """The FTS5 ``MATCH`` expression for ``query`` (every term a quoted string)."""
    alternatives = []
    for terms in query.alternatives:
        wanted = " AND ".join(_fts5_string(t.text) for t in terms if not t.excluded)
        unwanted = " OR ".join(_fts5_string(t.text) for t in terms if t.excluded)
        alternatives.append(f"({wanted})" + (f" NOT ({unwanted})" if unwanted else ""))
    return " OR ".join(f"({a})" for a in alternatives)


def _tsquery_sql(query: TextQuery) -> tuple[str, list[str]]:
    """A tsquery expression for ``query``: one ``phraseto_tsquery`` per term, as parameters."""
    alternatives = []
    params: list[str] = []
    for terms in query.alternatives:
        parts = []
        for term in terms:
            tsquery = "phraseto_tsquery(asm_events_search_config(), %s)"
            parts.append(f"(!! {tsquery})" if term.excluded else tsquery)
            params.append(term.text)
        alternatives.append("(" + " && ".join(parts) + ")")
    return "(" + " || ".join(alternatives) + ")", params


# --------------------------------------------------------------------------- the index


def check_config_name(name: object) -> str:
    """Return ``name`` when it can be a text-search configuration name, else raise ValueError."""
    if not isinstance(name, str) or not _CONFIG_NAME.match(name):
        raise ValueError(
            f"TEXT_SEARCH_CONFIG must name a PostgreSQL text search configuration "
            f"(such as 'simple' or 'english'), got {name!r}"
        )
    return name


_POSTGRES_REMOVE = [
    "DROP TRIGGER IF EXISTS asm_events_search_insert ON asm_events",
    "DROP TRIGGER IF EXISTS asm_events_search_update ON asm_events",
    "DROP TRIGGER IF EXISTS asm_events_search_delete ON asm_events",
    "DROP TRIGGER IF EXISTS asm_events_search_truncate ON asm_events",
    "DROP FUNCTION IF EXISTS asm_events_search_sync()",
    "DROP TABLE IF EXISTS asm_events_search",
    "DROP FUNCTION IF EXISTS asm_events_search_document(jsonb)",
    "DROP FUNCTION IF EXISTS asm_events_search_config()",
]

# %(config)s is a validated configuration name (check_config_name). The
# functions are IMMUTABLE so that queries fold them into constants at plan time.
_POSTGRES_INSTALL = [
    """CREATE FUNCTION asm_events_search_config() RETURNS regconfig
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT '%(config)s'::regconfig $$""",
    """CREATE FUNCTION asm_events_search_document(data jsonb) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT jsonb_to_tsvector(asm_events_search_config(), data, '["string"]') $$""",
    """CREATE TABLE asm_events_search (
    event_id varchar(255) PRIMARY KEY,
    event_timestamp timestamp NOT NULL,
    document tsvector NOT NULL
)""",
    """COMMENT ON TABLE asm_events_search IS
    'agent_sessions full-text index of asm_events.data, kept by triggers (docs/search.md)'""",
    """CREATE FUNCTION asm_events_search_sync() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    -- Statement-level with transition tables: one index write per statement,
    -- however many rows a batch append or a pruning DELETE touches.
    IF TG_OP = 'TRUNCATE' THEN
        -- Django's flush and hand-run TRUNCATEs fire no row triggers.
        TRUNCATE asm_events_search;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM asm_events_search s USING old_rows o WHERE s.event_id = o.id;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO asm_events_search (event_id, event_timestamp, document)
        SELECT n.id, n."timestamp", d.document
        FROM new_rows n, asm_events_search_document(n.data) AS d(document)
        WHERE d.document <> ''::tsvector
        ON CONFLICT (event_id) DO UPDATE
            SET event_timestamp = EXCLUDED.event_timestamp, document = EXCLUDED.document;
    END IF;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER asm_events_search_insert AFTER INSERT ON asm_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asm_events_search_sync()""",
    """CREATE TRIGGER asm_events_search_update AFTER UPDATE ON asm_events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asm_events_search_sync()""",
    """CREATE TRIGGER asm_events_search_delete AFTER DELETE ON asm_events
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asm_events_search_sync()""",
    """CREATE TRIGGER asm_events_search_truncate AFTER TRUNCATE ON asm_events
    FOR EACH STATEMENT EXECUTE FUNCTION asm_events_search_sync()""",
    # The backfill runs after the triggers exist: a concurrent writer's rows
    # wait for this transaction instead of slipping between backfill and trigger.
    """INSERT INTO asm_events_search (event_id, event_timestamp, document)
SELECT e.id, e."timestamp", d.document
FROM asm_events e, asm_events_search_document(e.data) AS d(document)
WHERE d.document <> ''::tsvector""",
    "CREATE INDEX asm_events_search_document_index ON asm_events_search USING gin (document)",
    "ANALYZE asm_events_search",
]

_SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS asm_events_search_insert",
    "DROP TRIGGER IF EXISTS asm_events_search_update",
    "DROP TRIGGER IF EXISTS asm_events_search_delete",
    "DROP TABLE IF EXISTS asm_events_search_fts",
    "DROP TABLE IF EXISTS asm_events_search",
]

# The text of one event: its string values in document order, one per line.
_SQLITE_BODY = """(
    SELECT group_concat(value, char(10)) FROM json_tree(
        CASE WHEN json_valid(%(data)s) THEN %(data)s END
    ) WHERE type = 'text')"""

_SQLITE_ADD_DOCUMENT = (
    "INSERT INTO asm_events_search (event_id, ts, body) "
    "SELECT NEW.id, NEW.timestamp, body FROM (SELECT "
    + _SQLITE_BODY
    % {"data": "NEW.data"}
    + " AS body) "
    "WHERE body IS NOT NULL;\n"
    "    INSERT INTO asm_events_search_fts (rowid, body) "
    "SELECT doc, body FROM asm_events_search WHERE event_id = NEW.id;"
)
_SQLITE_DROP_DOCUMENT = (
    "INSERT INTO asm_events_search_fts (asm_events_search_fts, rowid, body) "
    "SELECT 'delete', doc, body FROM asm_events_search WHERE event_id = OLD.id;\n"
    "    DELETE FROM asm_events_search WHERE event_id = OLD.id;"
)

_SQLITE_INSTALL = [
    """CREATE TABLE asm_events_search (
    doc INTEGER PRIMARY KEY,
    event_id varchar(255) NOT NULL UNIQUE,
    ts text NOT NULL,
    body text NOT NULL
)""",
    """CREATE VIRTUAL TABLE asm_events_search_fts USING fts5(
    body, content='asm_events_search', content_rowid='doc'
)""",
    f"""CREATE TRIGGER asm_events_search_insert AFTER INSERT ON asm_events BEGIN
    {_SQLITE_ADD_DOCUMENT}
END""",
    f"""CREATE TRIGGER asm_events_search_delete AFTER DELETE ON asm_events BEGIN
    {_SQLITE_DROP_DOCUMENT}
END""",
    f"""CREATE TRIGGER asm_events_search_update
AFTER UPDATE OF id, "timestamp", data ON asm_events BEGIN
    {_SQLITE_DROP_DOCUMENT}
    {_SQLITE_ADD_DOCUMENT}
END""",
    f"""INSERT INTO asm_events_search (event_id, ts, body)
SELECT id, ts, body FROM (
    SELECT e.id, e.timestamp AS ts, {_SQLITE_BODY % {"data": "e.data"}} AS body FROM asm_events e
) WHERE body IS NOT NULL""",
    "INSERT INTO asm_events_search_fts (asm_events_search_fts) VALUES ('rebuild')",
]


@cache
def fts5_available() -> bool:
    """True when Python's SQLite library (the one Django's SQLite backend uses) has FTS5."""
    import sqlite3

    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("CREATE VIRTUAL TABLE probe USING fts5(body)")
    except sqlite3.Error:
        return False
    finally:
        probe.close()
    return True


def install_search_index(connection: BaseDatabaseWrapper, config: str) -> bool:
    """(Re)build the search index of ``asm_events`` on ``connection``, from scratch.

    Drops what an earlier build left, creates the index tables and triggers,
    and indexes every existing event. Run inside a transaction (the migration
    does): the triggers exist before the backfill reads the table, so rows
    written meanwhile wait for the commit instead of being missed.

    Args:
        connection: A PostgreSQL or SQLite connection.
        config: The PostgreSQL text-search configuration (ignored on SQLite).

    Returns:
        True when the index was built; False on SQLite without FTS5 (a system
        check reports it) and on other databases.

    Raises:
        ValueError: ``config`` is not a configuration name.
        django.db.DatabaseError: the configuration does not exist, or the
            database refused the DDL.
    """
    if connection.vendor == "postgresql":
        name = check_config_name(config)
        statements = _POSTGRES_REMOVE + [sql % {"config": name} for sql in _POSTGRES_INSTALL]
    elif connection.vendor == "sqlite" and fts5_available():
        statements = _SQLITE_REMOVE + _SQLITE_INSTALL
    else:
        return False
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    return True


def remove_search_index(connection: BaseDatabaseWrapper) -> None:
    """Drop the search index tables, functions and triggers.

    Used by ``migrate`` backwards and ``manage.py asm_search_index --drop``:
    appends stop paying for the index, and ``search_text`` raises
    ``SearchUnavailableError`` until :func:`install_search_index` runs again.
    """
    statements = {"postgresql": _POSTGRES_REMOVE, "sqlite": _SQLITE_REMOVE}
    with connection.cursor() as cursor:
        for statement in statements.get(connection.vendor, []):
            cursor.execute(statement)


def indexed_config(connection: BaseDatabaseWrapper) -> str | None:
    """The text-search configuration the PostgreSQL index was built with; None without one."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regprocedure('asm_events_search_config()') IS NOT NULL "
            "AND to_regclass('asm_events_search') IS NOT NULL"
        )
        row = cursor.fetchone()
        if not row or not row[0]:
            return None
        cursor.execute("SELECT asm_events_search_config()::text")
        row = cursor.fetchone()
    return None if row is None else str(row[0])


def search_index_exists(connection: BaseDatabaseWrapper) -> bool:
    """True when the search tables exist on ``connection``."""
    names = SEARCH_TABLES.get(connection.vendor)
    if not names:
        return False
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    return set(names) <= existing


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True)
class RankedId:
    """A match as the ranking query returns it: its place in the order, nothing more.

    Attributes:
        event_id: The event's id.
        rank: Higher is better.
        position: ``(rank, timestamp, id)`` as stored, JSON-ready (the
            timestamp as text), for a cursor or the next candidate query.
    """

    event_id: str
    rank: float
    position: tuple[float, str, str]


def ranked_matches(
    alias: str,
    query: TextQuery,
    *,
    after: Sequence[Any] | None,
    count: int,
    where: tuple[str, Sequence[Any]] | None = None,
) -> list[RankedId]:
    """The ``count`` best matches after ``after``, by rank, newest, id (all descending).

    Without ``where`` only the index is read (ids, timestamps and the ranking
    data are all in it); with ``where`` each match is joined to its
    ``asm_events`` row and must satisfy the condition.

    Args:
        alias: The database alias.
        query: A parsed, non-empty query.
        after: A :attr:`RankedId.position` (from a cursor or the previous
            call): only matches strictly after it; None for the best ones.
        count: How many to return at most.
        where: A SQL condition on ``"asm_events"`` (the compiled FilterSet)
            with its parameters.

    Returns:
        The matches, best first.

    Raises:
        ValueError: ``after`` holds a timestamp this database cannot read.
    """
    connection = connections[alias]
    postgres = connection.vendor == "postgresql"
    if postgres:
        match_sql, params = _tsquery_sql(query)
        select = (
            "SELECT s.event_id AS id, s.event_timestamp AS ts, "
            "ts_rank_cd(s.document, q.query)::float8 AS rank "
            f"FROM asm_events_search s CROSS JOIN (SELECT {match_sql} AS query) q "
        )
        condition = "s.document @@ q.query"
        select_params: list[Any] = list(params)
    else:
        # bm25() is lower for better matches; its negation ranks like ts_rank.
        select = (
            "SELECT s.event_id AS id, s.ts AS ts, -bm25(asm_events_search_fts) AS rank "
            "FROM asm_events_search_fts "
            "JOIN asm_events_search s ON s.doc = asm_events_search_fts.rowid "
        )
        condition = "asm_events_search_fts MATCH %s"
        select_params = [fts5_match_expression(query)]
    if where is not None:
        select += 'JOIN "asm_events" ON "asm_events"."id" = s.event_id '
        condition += f" AND ({where[0]})"
        select_params.extend(where[1])
    sql = f"SELECT id, rank, ts FROM ({select} WHERE {condition}) hits"
    if after is not None:
        rank, stamp, event_id = after
        sql += " WHERE (rank, ts, id) < (%s, %s, %s)"
        select_params.extend(
            [rank, dt.datetime.fromisoformat(stamp) if postgres else stamp, event_id]
        )
    sql += " ORDER BY rank DESC, ts DESC, id DESC LIMIT %s"
    select_params.append(count)
    with connection.cursor() as cursor:
        cursor.execute(sql, select_params)
        rows = cursor.fetchall()
    return [
        RankedId(
            str(event_id),
            float(rank),
            (float(rank), stamp.isoformat() if postgres else str(stamp), str(event_id)),
        )
        for event_id, rank, stamp in rows
    ]


# One passage around the best match (ts_headline's fragment mode trims the
# context of short texts to almost nothing).
_HEADLINE_OPTIONS = f"StartSel={SNIPPET_START}, StopSel={SNIPPET_STOP}, MaxWords=35, MinWords=15"


def snippets(alias: str, query: TextQuery, event_ids: Sequence[str]) -> dict[str, str]:
    """Highlighted extracts of the given events' text, matched terms between ``[[`` and ``]]``.

    Args:
        alias: The database alias.
        query: The query the events matched.
        event_ids: The events of one page.

    Returns:
        Event id → snippet (events without text are missing).
    """
    if not event_ids:
        return {}
    connection = connections[alias]
    placeholders = ", ".join(["%s"] * len(event_ids))
    if connection.vendor == "postgresql":
        match_sql, params = _tsquery_sql(query)
        sql = (
            "SELECT e.id, ts_headline(asm_events_search_config(), ("
            "  SELECT string_agg(v #>> '{}', E'\\n') "
            "  FROM jsonb_path_query(e.data, 'strict $.**') AS v "
            "  WHERE jsonb_typeof(v) = 'string'"
            f"), {match_sql}, %s) "
            f"FROM asm_events e WHERE e.id IN ({placeholders})"
        )
        sql_params: list[Any] = [*params, _HEADLINE_OPTIONS, *event_ids]
    else:
        sql = (
            "SELECT s.event_id, snippet(asm_events_search_fts, 0, %s, %s, %s, 24) "
            "FROM asm_events_search_fts "
            "JOIN asm_events_search s ON s.doc = asm_events_search_fts.rowid "
            f"WHERE asm_events_search_fts MATCH %s AND s.event_id IN ({placeholders})"
        )
        sql_params = [
            SNIPPET_START,
            SNIPPET_STOP,
            SNIPPET_ELLIPSIS,
            fts5_match_expression(query),
            *event_ids,
        ]
    with connection.cursor() as cursor:
        cursor.execute(sql, sql_params)
        return {str(row[0]): _one_line(row[1]) for row in cursor.fetchall() if row[1]}


def _one_line(text: str) -> str:
    # String values are joined by newlines in the index; a snippet reads as one line.
    return " ".join(text.split())
