"""Full-text search, DjangoQueryAPI.search_text (CONTRACT §14), on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from agent_sessions import search
from agent_sessions.core import Event
from agent_sessions.errors import SearchUnavailableError, StorageError, ValidationError
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.retention import RetentionPolicy
from tests.factories import EventFactory, SessionFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def said(text: str, *, minutes: int = 0, **fields: Any) -> Any:
    """An event whose data holds ``text`` as a message."""
    data = fields.pop("data", {"content": text, "role": "assistant"})
    return EventFactory(data=data, timestamp=at(minutes), **fields)


def ids(page: Any) -> list[str]:
    return [hit.event.id for hit in page.hits]


def walk(api: DjangoQueryAPI, q: str, **kwargs: Any) -> list[Any]:
    pages = [api.search_text(q, **kwargs)]
    while pages[-1].cursor is not None:
        pages.append(api.search_text(q, cursor=pages[-1].cursor, **kwargs))
    return pages


def raw_insert_event(event_id: str, session_id: str, data: dict[str, Any]) -> None:
    """An event written the way another application would: plain SQL, no Django."""
    with connection.cursor() as cursor:
        cursor.execute(
            'INSERT INTO asm_events (id, type, "timestamp", session_id, sequence_number, '
            "data, metadata, schema_version) VALUES (%s, 'message_sent', %s, %s, 1, %s, '{}', 1)",
            [event_id, "2025-03-01 12:00:00", session_id, json.dumps(data)],
        )


# --------------------------------------------------------------------------- matching


def test_finds_events_by_a_word_in_any_string_value(query_api: DjangoQueryAPI) -> None:
    top = said("", data={"content": "hello", "tool_input": {"args": ["compile the kernel"]}})
    said("nothing to see")
    page = query_api.search_text("kernel")
    assert ids(page) == [top.id]
    assert page.hits[0].event.data == top.data
    assert page.cursor is None


def test_keys_are_not_searched(query_api: DjangoQueryAPI) -> None:
    said("", data={"kernel": "value"})
    assert query_api.search_text("kernel").hits == []


def test_numbers_and_booleans_are_not_text(query_api: DjangoQueryAPI) -> None:
    said("", data={"count": 4711, "flag": True})
    assert query_api.search_text("4711").hits == []


def test_every_word_must_occur(query_api: DjangoQueryAPI) -> None:
    both = said("the red fox jumps")
    said("the red car")
    assert ids(query_api.search_text("red fox")) == [both.id]


def test_matching_ignores_case(query_api: DjangoQueryAPI) -> None:
    event = said("Deploy to PRODUCTION failed")
    assert ids(query_api.search_text("production")) == [event.id]


def test_a_quoted_phrase_matches_the_words_in_order(query_api: DjangoQueryAPI) -> None:
    phrase = said("please restart the database server now")
    said("the server restarted the database")
    assert ids(query_api.search_text('"database server"')) == [phrase.id]


def test_a_minus_excludes_a_word(query_api: DjangoQueryAPI) -> None:
    kept = said("timeout while calling the search tool")
    said("timeout while calling the billing tool")
    assert ids(query_api.search_text("timeout -billing")) == [kept.id]


def test_a_minus_excludes_a_phrase(query_api: DjangoQueryAPI) -> None:
    kept = said("tool failed: disk full")
    said("tool failed: network down")
    assert ids(query_api.search_text('failed -"network down"')) == [kept.id]


def test_or_matches_either_alternative(query_api: DjangoQueryAPI) -> None:
    cat = said("a cat", minutes=1)
    dog = said("a dog", minutes=2)
    said("a bird")
    assert set(ids(query_api.search_text("cat OR dog"))) == {cat.id, dog.id}


# --------------------------------------------------------------------------- ranking and snippets


def test_better_matches_rank_first(query_api: DjangoQueryAPI) -> None:
    once = said("error in step one, then some unrelated words about the weather", minutes=3)
    often = said("error error error everywhere", minutes=1)
    page = query_api.search_text("error")
    assert ids(page) == [often.id, once.id]
    assert page.hits[0].rank > page.hits[1].rank > 0


def test_equal_ranks_list_the_newest_first_then_by_id(query_api: DjangoQueryAPI) -> None:
    old = said("deploy finished", minutes=0, id="evt_a")
    new_b = said("deploy finished", minutes=5, id="evt_b")
    new_c = said("deploy finished", minutes=5, id="evt_c")
    assert ids(query_api.search_text("deploy")) == [new_c.id, new_b.id, old.id]


def test_snippet_marks_the_matched_terms(query_api: DjangoQueryAPI) -> None:
    said("The build failed because the linker ran out of memory.")
    snippet = query_api.search_text("linker memory").hits[0].snippet
    assert "[[linker]]" in snippet
    assert "[[memory]]" in snippet
    assert "build" in snippet


def test_snippet_shows_only_the_part_around_a_match_in_long_text(
    query_api: DjangoQueryAPI,
) -> None:
    words = [f"filler{n}" for n in range(400)]
    words[300] = "needle"
    said(" ".join(words))
    snippet = query_api.search_text("needle").hits[0].snippet
    assert "[[needle]]" in snippet
    assert "filler0 " not in snippet
    assert len(snippet) < 400


# --------------------------------------------------------------------------- filters


def test_filters_by_session_type_and_time(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory()
    wanted = said("quota exceeded", minutes=10, session_id=session.id, type="error_occurred")
    said("quota exceeded", minutes=10, type="error_occurred")
    said("quota exceeded", minutes=10, session_id=session.id, type="message_sent")
    said("quota exceeded", minutes=30, session_id=session.id, type="error_occurred")
    page = query_api.search_text(
        "quota",
        session_ids=[session.id],
        types=["error_occurred"],
        since=at(5),
        until=at(20),
    )
    assert ids(page) == [wanted.id]


def test_filters_by_agent(query_api: DjangoQueryAPI) -> None:
    mine = SessionFactory(agent_id="agent-x")
    wanted = said("invoice sent", session_id=mine.id)
    said("invoice sent", session_id=SessionFactory(agent_id="agent-y").id)
    assert ids(query_api.search_text("invoice", agent_id="agent-x")) == [wanted.id]


def test_soft_deleted_sessions_are_excluded_unless_asked(query_api: DjangoQueryAPI) -> None:
    live = said("refund issued", session_id=SessionFactory().id, minutes=1)
    gone = said("refund issued", session_id=SessionFactory(deleted_at=at(0)).id, minutes=2)
    assert ids(query_api.search_text("refund")) == [live.id]
    assert ids(query_api.search_text("refund", include_deleted=True)) == [gone.id, live.id]


def test_screened_out_candidates_are_replaced_by_the_next_ones(
    query_api: DjangoQueryAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without explicit filters, search ranks from the index and then drops the
    # events of deleted sessions; when a whole batch of candidates is dropped,
    # it reads the next batch in the same order.
    monkeypatch.setattr("agent_sessions.query._MIN_CANDIDATES", 2)
    deleted = SessionFactory(deleted_at=at(0)).id
    for n in range(9):
        said("word word word", session_id=deleted, minutes=n)
    live = [said("word", minutes=n) for n in range(3)]
    pages = walk(query_api, "word", limit=2)
    assert [ids(page) for page in pages] == [[live[2].id, live[1].id], [live[0].id]]
    assert len(ids(query_api.search_text("word", include_deleted=True, limit=100))) == 12


def test_events_without_a_session_row_are_found(query_api: DjangoQueryAPI) -> None:
    orphan = said("orphaned words", session_id="ses_missing")
    assert ids(query_api.search_text("orphaned")) == [orphan.id]


def test_an_unknown_event_type_filter_is_refused(query_api: DjangoQueryAPI) -> None:
    with pytest.raises(ValidationError) as info:
        query_api.search_text("x", types=["nope"])
    assert info.value.code == "invalid_event_type"


def test_an_empty_session_list_filters_nothing_out(query_api: DjangoQueryAPI) -> None:
    event = said("lonely")
    assert ids(query_api.search_text("lonely", session_ids=[])) == [event.id]


# --------------------------------------------------------------------------- paging


def test_pages_cover_every_match_once_in_order(query_api: DjangoQueryAPI) -> None:
    for n in range(7):
        said("alpha " * (1 + n % 3) + "beta", minutes=n % 2)
    everything = ids(query_api.search_text("alpha", limit=100))
    pages = walk(query_api, "alpha", limit=3)
    assert [len(page.hits) for page in pages] == [3, 3, 1]
    assert [hit for page in pages for hit in ids(page)] == everything
    assert len(set(everything)) == 7


def test_a_tampered_cursor_is_refused(query_api: DjangoQueryAPI) -> None:
    for n in range(3):
        said("gamma", minutes=n)
    cursor = query_api.search_text("gamma", limit=1).cursor
    assert cursor is not None
    with pytest.raises(ValidationError) as info:
        query_api.search_text("gamma", limit=1, cursor=cursor[:-2] + "xy")
    assert info.value.code == "invalid_cursor"


def test_a_cursor_reused_with_another_query_is_refused(query_api: DjangoQueryAPI) -> None:
    for n in range(3):
        said("gamma delta", minutes=n)
    cursor = query_api.search_text("gamma", limit=1).cursor
    with pytest.raises(ValidationError) as info:
        query_api.search_text("delta", limit=1, cursor=cursor)
    assert info.value.code == "invalid_cursor"


def test_a_cursor_of_another_search_is_refused(query_api: DjangoQueryAPI) -> None:
    for n in range(3):
        said("gamma", minutes=n)
    cursor = query_api.search_events(limit=1).cursor
    with pytest.raises(ValidationError) as info:
        query_api.search_text("gamma", cursor=cursor)
    assert info.value.code == "invalid_cursor"


# --------------------------------------------------------------------------- any writer, retention


def test_rows_inserted_with_raw_sql_are_found(query_api: DjangoQueryAPI) -> None:
    raw_insert_event("evt_raw", "ses_raw", {"content": "written by elixir", "n": 1})
    assert ids(query_api.search_text("elixir")) == ["evt_raw"]


def test_events_appended_through_the_store_are_found(store: Any, query_api: DjangoQueryAPI) -> None:
    event = store.append_event(Event.new("message_sent", "ses_store", data={"content": "stored"}))
    assert ids(query_api.search_text("stored")) == [event.id]


def test_deleted_events_leave_the_index(query_api: DjangoQueryAPI) -> None:
    event = said("ephemeral")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM asm_events WHERE id = %s", [event.id])
    assert query_api.search_text("ephemeral").hits == []
    assert _indexed_ids() == set()


def test_emptying_the_table_empties_the_index(query_api: DjangoQueryAPI) -> None:
    said("gone with the table")
    with connection.cursor() as cursor:
        # TRUNCATE (Django's flush on PostgreSQL) fires no row triggers.
        cursor.execute(
            "TRUNCATE asm_events" if connection.vendor == "postgresql" else "DELETE FROM asm_events"
        )
    assert _indexed_ids() == set()
    assert query_api.search_text("gone").hits == []


def test_updated_event_data_is_reindexed(query_api: DjangoQueryAPI) -> None:
    event = said("before")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE asm_events SET data = %s WHERE id = %s",
            [json.dumps({"content": "after"}), event.id],
        )
    assert query_api.search_text("before").hits == []
    assert ids(query_api.search_text("after")) == [event.id]


def test_pruned_events_leave_the_index(query_api: DjangoQueryAPI) -> None:
    session = SessionFactory(status="completed")
    for n in range(5):
        said(
            f"chunk {n} streamed",
            session_id=session.id,
            sequence_number=n + 1,
            minutes=n,
            type="message_streamed",
        )
    policy = RetentionPolicy(max_events_per_session=2, max_completed_session_age_days=None)
    pruned = DjangoMaintenance().prune_session_events(session.id, policy)
    assert pruned == 3
    found = ids(query_api.search_text("streamed", limit=10))
    assert len(found) == 2
    assert _indexed_ids() == set(found)


def test_hard_deleted_sessions_leave_the_index(store: Any, query_api: DjangoQueryAPI) -> None:
    session = SessionFactory()
    said("confidential", session_id=session.id)
    store.delete_session(session.id)
    assert query_api.search_text("confidential", include_deleted=True).hits == []
    assert _indexed_ids() == set()


def test_restored_events_come_back_to_the_index(query_api: DjangoQueryAPI, tmp_path: Path) -> None:
    from tests.maintenance_support import days_ago, policy

    session = SessionFactory(deleted_at=days_ago(40))
    event = said("restorable words", session_id=session.id)
    archiving = policy(
        hard_delete_after_days=30, archive_before_prune=True, archive_store=str(tmp_path)
    )
    assert DjangoMaintenance().hard_delete_expired_sessions(archiving) == 1
    assert query_api.search_text("restorable", include_deleted=True).hits == []
    DjangoMaintenance().restore([str(p) for p in sorted(tmp_path.glob("asm-archive-*.jsonl"))])
    page = query_api.search_text("restorable", include_deleted=True)
    assert ids(page) == [event.id]
    assert "[[restorable]]" in page.hits[0].snippet


def _indexed_ids() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM asm_events_search")
        return {row[0] for row in cursor.fetchall()}


def test_reinstalling_the_index_indexes_existing_rows(query_api: DjangoQueryAPI) -> None:
    event = said("survivor")
    search.remove_search_index(connection)
    search.install_search_index(connection, "simple")
    assert ids(query_api.search_text("survivor")) == [event.id]


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "q",
    ["", "   ", "x" * 1001, "nul\x00byte", 42, None, "-only -excluded", "\ud800"],
    ids=["empty", "blank", "too-long", "nul", "not-a-string", "none", "only-excluded", "surrogate"],
)
def test_bad_queries_are_validation_errors(query_api: DjangoQueryAPI, q: Any) -> None:
    with pytest.raises(ValidationError) as info:
        query_api.search_text(q)
    assert info.value.code == "validation_error"
    assert info.value.field == "q"


def test_ten_thousand_characters_are_refused_before_any_query(query_api: DjangoQueryAPI) -> None:
    with pytest.raises(ValidationError):
        query_api.search_text("word " * 2000)


@pytest.mark.parametrize(
    "q",
    [
        '"unbalanced',
        'a"b"c',
        "alpha OR",
        "OR alpha",
        "alpha NEAR/2 beta",
        "NEAR(alpha beta)",
        "alpha*",
        "body:alpha",
        "^alpha",
        "(alpha",
        "alpha)",
        "alpha & beta | !gamma <-> delta",
        "alpha AND NOT beta",
        "'alpha'",
        "alpha:*",
        "{alpha}",
        "alpha - beta",
        "--alpha",
        'alpha "" beta',
        "ä l p h a",
        "x" * 1000,
        "alpha " * 166,
    ],
)
def test_hostile_queries_never_reach_the_database_as_syntax(
    query_api: DjangoQueryAPI, q: str
) -> None:
    said("alpha beta gamma delta")
    outcome: Any
    try:
        outcome = query_api.search_text(q)
    except ValidationError as exc:  # a typed refusal is a fine answer too
        outcome = exc
    if isinstance(outcome, ValidationError):
        assert outcome.field == "q"
    else:
        assert all(isinstance(hit.rank, float) for hit in outcome.hits)


@pytest.mark.parametrize("q", ["...", "!!!", "()", "*", '""', "- -", "___", "OR"])
def test_punctuation_only_finds_nothing(query_api: DjangoQueryAPI, q: str) -> None:
    said("... !!! () * ___")
    page = query_api.search_text(q)
    assert (page.hits, page.cursor) == ([], None)


def test_operator_words_are_plain_words(query_api: DjangoQueryAPI) -> None:
    near = said("meet me NEAR the station")
    said("meet me at the station")
    assert ids(query_api.search_text("NEAR station")) == [near.id]


def test_a_bad_limit_is_refused(query_api: DjangoQueryAPI) -> None:
    with pytest.raises(ValidationError):
        query_api.search_text("x", limit=0)


# --------------------------------------------------------------------------- query parsing


def test_parser_reads_words_phrases_exclusions_and_alternatives() -> None:
    query = search.parse_text_query('a "b c" -d -"e f" OR g')
    assert query.alternatives == (
        (
            search.Term("a"),
            search.Term("b c"),
            search.Term("d", excluded=True),
            search.Term("e f", excluded=True),
        ),
        (search.Term("g"),),
    )


def test_fts5_expression_quotes_every_term() -> None:
    query = search.parse_text_query('a* NEAR -"b c" OR d:e')
    assert search.fts5_match_expression(query) == '(("a*" AND "NEAR") NOT ("b c")) OR (("d:e"))'


# --------------------------------------------------------------------------- availability


@pytest.mark.sqlite_only
def test_sqlite_without_fts5_raises_a_typed_error(
    query_api: DjangoQueryAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    said("anything")
    search.remove_search_index(connection)
    monkeypatch.setattr(search, "fts5_available", lambda: False)
    monkeypatch.setattr("agent_sessions.query.fts5_available", lambda: False)
    assert search.install_search_index(connection, "simple") is False
    with pytest.raises(SearchUnavailableError) as info:
        query_api.search_text("anything")
    assert info.value.code == "search_unavailable"
    assert isinstance(info.value, StorageError)


def test_a_dropped_index_turns_search_off_until_rebuilt(
    query_api: DjangoQueryAPI, store: Any
) -> None:
    from io import StringIO

    from django.core.management import call_command

    before = said("indexed before it was dropped", minutes=-1)
    out = StringIO()
    call_command("asm_search_index", "--drop", stdout=out)
    assert "Dropped the full-text search index on 'default'" in out.getvalue()
    assert not search.search_index_exists(connection)
    # Appends go on without the index's triggers.
    during = store.append_event(
        Event.new("message_sent", before.session_id, data={"content": "appended while dropped"})
    )
    # Inside the test's transaction: the failed search leaves it usable.
    with pytest.raises(SearchUnavailableError) as info:
        query_api.search_text("dropped")
    assert info.value.code == "search_unavailable"
    assert "asm_search_index" in info.value.message
    assert "FTS5" not in info.value.message
    call_command("asm_search_index", verbosity=0)
    assert ids(query_api.search_text("dropped")) == [during.id, before.id]


def test_missing_tables_still_ask_for_the_migration(query_api: DjangoQueryAPI) -> None:
    from agent_sessions.errors import MigrationRequiredError

    said("anything")
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TABLE asm_events CASCADE"
            if connection.vendor == "postgresql"
            else "DROP TABLE asm_events"
        )
    with pytest.raises(MigrationRequiredError):
        query_api.search_text("anything")


@pytest.mark.postgres_only
def test_postgres_queries_use_the_index() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT event_id FROM asm_events_search "
            "WHERE document @@ phraseto_tsquery(asm_events_search_config(), 'x')"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "asm_events_search_document_index" in plan


@pytest.mark.postgres_only
def test_postgres_index_uses_the_configured_text_search_config() -> None:
    assert search.indexed_config(connection) == "simple"


# --------------------------------------------------------------------------- checks, command


def test_an_invalid_text_search_config_is_a_check_error(settings: Any) -> None:
    from agent_sessions.checks import check_settings

    settings.AGENT_SESSIONS = {"TEXT_SEARCH_CONFIG": "english; DROP TABLE x"}
    assert [m.id for m in check_settings()] == ["agent_sessions.E040"]


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_a_missing_fts5_is_a_check_warning(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    from agent_sessions.checks import check_full_text_search

    settings.DATABASES = {**settings.DATABASES, "extra": {"ENGINE": "django.db.backends.sqlite3"}}
    monkeypatch.setattr(search, "fts5_available", lambda: False)
    assert [m.id for m in check_full_text_search()] == ["agent_sessions.W040"]


def test_fts5_is_available_in_the_test_python() -> None:
    from agent_sessions.checks import check_full_text_search

    assert search.fts5_available() is True
    assert check_full_text_search() == []


@pytest.mark.postgres_only
def test_a_changed_config_is_reported_and_the_command_rebuilds(
    settings: Any, query_api: DjangoQueryAPI
) -> None:
    from django.core.management import call_command

    from agent_sessions.checks import check_database_vendor

    event = said("the runners were running")
    settings.AGENT_SESSIONS = {"TEXT_SEARCH_CONFIG": "english"}
    assert [m.id for m in check_database_vendor(databases=["default"])] == ["agent_sessions.W041"]
    assert query_api.search_text("run").hits == []  # 'simple' does not stem
    call_command("asm_search_index", verbosity=0)
    assert check_database_vendor(databases=["default"]) == []
    assert search.indexed_config(connection) == "english"
    assert ids(query_api.search_text("run")) == [event.id]


def test_the_command_rebuilds_the_index(query_api: DjangoQueryAPI) -> None:
    from django.core.management import call_command

    event = said("rebuilt words")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM asm_events_search")
    assert query_api.search_text("rebuilt").hits == []
    call_command("asm_search_index", verbosity=0)
    assert ids(query_api.search_text("rebuilt")) == [event.id]


def test_the_documented_agent_tool_runs(query_api: DjangoQueryAPI) -> None:
    import re

    docs = (Path(__file__).resolve().parent.parent / "docs" / "search.md").read_text()
    [block] = [
        b for b in re.findall(r"```python\n(.*?)```", docs, re.S) if "def search_history" in b
    ]
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/search.md", "exec"), namespace)
    session = SessionFactory(agent_id="support-bot")
    said("we decided to retry the billing call twice", session_id=session.id)
    said("we decided to retry the billing call twice", session_id=SessionFactory().id)
    answer = namespace["search_history"]("billing retry", agent_id="support-bot")
    assert answer.count("\n") == 0
    assert session.id in answer
    assert "[[billing]]" in answer
    assert namespace["search_history"]("-only", agent_id="support-bot").startswith("Search refused")


@pytest.mark.django_db(transaction=True)
def test_the_async_twin_searches_too(query_api: DjangoQueryAPI) -> None:
    from asgiref.sync import async_to_sync

    event = said("asynchronous words")
    page = async_to_sync(query_api.asearch_text)("asynchronous")  # type: ignore[attr-defined]
    assert ids(page) == [event.id]
