"""Rows written by a newer writer: unknown vocabulary is read, never written (CONTRACT §11).

The rows are inserted with raw SQL, as a newer ASM (Elixir) would write them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from agent_sessions import models as m
from agent_sessions.archive import read_archive
from agent_sessions.core import Event, Run, Session
from agent_sessions.errors import ValidationError
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.store import DjangoSessionStore
from tests.maintenance_support import days_ago, policy

pytestmark = pytest.mark.django_db

SID = "ses_newer"


def raw_insert(table: str, **values: Any) -> None:
    columns = ", ".join(f'"{name}"' for name in values)
    marks = ", ".join(["%s"] * len(values))
    params = [
        json.dumps(v) if isinstance(v, dict) else _when(v) if hasattr(v, "tzinfo") else v
        for v in values.values()
    ]
    with connection.cursor() as cursor:
        cursor.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', params)


def _when(value: Any) -> Any:
    naive = value.replace(tzinfo=None)
    return naive if connection.vendor == "postgresql" else naive.isoformat(sep=" ")


def newer_rows(*, session_status: str = "hibernating", updated_days_ago: float = 1) -> None:
    """A session, run and events whose status and type this version does not know."""
    stamp = days_ago(updated_days_ago)
    tags = "{}" if connection.vendor == "postgresql" else "[]"
    raw_insert(
        "asm_sessions",
        id=SID,
        agent_id="agent",
        status=session_status,
        metadata={},
        context={},
        tags=tags,
        created_at=stamp,
        updated_at=stamp,
    )
    raw_insert(
        "asm_runs",
        id="run_newer",
        session_id=SID,
        status="suspended",
        input={"prompt": "hi"},
        metadata={},
        turn_count=0,
        token_usage={},
        started_at=stamp,
        provider_metadata={},
    )
    for number, event_type in enumerate(["session_created", "agent_thought", "message_sent"], 1):
        raw_insert(
            "asm_events",
            id=f"evt_newer_{number}",
            type=event_type,
            timestamp=stamp,
            session_id=SID,
            sequence_number=number,
            data={"n": number},
            metadata={},
            schema_version=1,
        )
    raw_insert("asm_session_sequences", session_id=SID, last_sequence=3, updated_at=stamp)


def test_the_store_reads_unknown_statuses_and_types_as_plain_strings() -> None:
    newer_rows()
    store = DjangoSessionStore()

    session = store.get_session(SID)
    [run] = store.list_runs(SID)
    events = store.get_events(SID)

    assert session.status == "hibernating"
    assert type(session.status) is str
    assert [s.id for s in store.list_sessions()] == [SID]
    assert (run.status, store.get_run("run_newer").status) == ("suspended", "suspended")
    assert [e.type for e in events] == ["session_created", "agent_thought", "message_sent"]
    assert type(events[1].type) is str


def test_query_and_export_read_them() -> None:
    newer_rows()
    query = DjangoQueryAPI()

    page = query.search_events(session_ids=[SID])
    export = query.export_session(SID)
    sessions = query.search_sessions()
    runs = query.search_runs(session_id=SID)

    assert [e.type for e in page.events] == ["session_created", "agent_thought", "message_sent"]
    assert export["session"].status == "hibernating"
    assert [e.type for e in export["events"]][1] == "agent_thought"
    assert [s.id for s in sessions.sessions] == [SID]
    assert [r.status for r in runs.runs] == ["suspended"]
    assert query.get_session_stats(SID)["status_counts"] == {"suspended": 1}


def test_writes_still_refuse_them() -> None:
    newer_rows()
    store = DjangoSessionStore()
    session = store.get_session(SID)
    event = store.get_events(SID)[1]

    with pytest.raises(ValidationError) as info:
        store.save_session(session)
    assert info.value.code == "invalid_status"
    with pytest.raises(ValidationError) as info:
        store.append_event(Event.new(event.type, SID))
    assert info.value.code == "invalid_event_type"
    with pytest.raises(ValidationError):
        Session.from_dict(session.to_dict())
    assert Session.from_stored_dict(session.to_dict()).status == "hibernating"
    assert Run.from_stored_dict(store.get_run("run_newer").to_dict()).status == "suspended"


def test_the_admin_lists_and_shows_them(admin_client: Client) -> None:
    newer_rows()

    pages = [
        "/admin/agent_sessions/session/",
        f"/admin/agent_sessions/session/{SID}/change/",
        "/admin/agent_sessions/event/",
        "/admin/agent_sessions/event/evt_newer_2/change/",
        "/admin/agent_sessions/run/",
        "/admin/agent_sessions/run/run_newer/change/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
    assert b"agent_thought" in admin_client.get("/admin/agent_sessions/event/").content


def test_retention_archives_deletes_and_restores_such_a_session(tmp_path: Path) -> None:
    newer_rows(updated_days_ago=200)
    maintenance = DjangoMaintenance()
    retention = policy(
        max_completed_session_age_days=90,
        archive_before_prune=True,
        archive_store=str(tmp_path),
    )

    assert maintenance.execute(retention).sessions_soft_deleted == 1
    m.Session.objects.filter(id=SID).update(deleted_at=days_ago(60))
    report = maintenance.execute(policy(hard_delete_after_days=30, **_archive(tmp_path)))

    assert report.errors == []
    assert report.sessions_hard_deleted == 1
    [path] = sorted(tmp_path.glob("asm-archive-*.jsonl"))
    records = {kind: record for kind, record in read_archive(path) if kind != "event"}
    assert records["session"].status == "hibernating"  # type: ignore[union-attr]
    assert records["run"].status == "suspended"  # type: ignore[union-attr]

    maintenance.restore([path])

    assert DjangoSessionStore().get_session(SID).status == "hibernating"
    assert [e.type for e in DjangoSessionStore().get_events(SID)][1] == "agent_thought"


def _archive(directory: Path) -> dict[str, Any]:
    return {"archive_before_prune": True, "archive_store": str(directory)}
