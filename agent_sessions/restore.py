"""Bring archived rows back: the inverse of maintenance with ``archive_before_prune``.

:meth:`DjangoMaintenance.restore <agent_sessions.maintenance.DjangoMaintenance.restore>`
(and ``manage.py asm_restore ARCHIVE...``) read archive files written by
:mod:`agent_sessions.archive` and insert their sessions, sequence counters,
runs, events and artifacts again, exactly as archived::

    report = DjangoMaintenance().restore(["/var/lib/asm-archive/asm-archive-….jsonl"])
    report.events_restored, report.already_present

How it goes:

1. **Check.** Every file is read once: its manifest must match (SHA-256 and
   counts of the durable part; ``ArchiveError`` otherwise) and every record
   must describe a valid row. Each record is looked up in the database: a
   row with its id (or, for an event, its session and sequence number) that
   differs from the record is a conflict. Any conflict raises
   :class:`~agent_sessions.errors.RestoreConflictError` and nothing is
   written: a live row is never overwritten. A dry run stops here and
   reports what would be restored.
2. **Write.** The files are read again, in batches of ``batch_size``
   records, one short transaction each: the records whose rows are absent
   are inserted; rows already present and identical are counted, not
   touched (so a restore can run twice, or resume after a failure, with the
   same result). Sequence numbers are kept; a session's counter is restored
   from the archive and raised, never lowered, so it stays at least the
   highest sequence number of its events.

Memory holds one batch, whatever the size of the archive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from agent_sessions import models as m
from agent_sessions.archive import (
    ArchiveEntry,
    ArchiveScan,
    build_record,
    manifest_path,
    read_archive_entries,
)
from agent_sessions.core import Event, Run, Session
from agent_sessions.db import translate_errors, write_block
from agent_sessions.errors import RestoreConflictError, ValidationError
from agent_sessions.results import RestoreReport
from agent_sessions.validation import parse_datetime

__all__ = ["RestoreReport", "restore_archives"]

#: Conflicts named in a report (the total is always counted).
MAX_CONFLICTS_LISTED = 100
_KINDS = ("session", "run", "event", "artifact")
_TABLES = {
    "session": "asm_sessions",
    "run": "asm_runs",
    "event": "asm_events",
    "artifact": "asm_artifacts",
}


def restore_archives(
    alias: str, paths: Sequence[str | os.PathLike[str]], *, dry_run: bool, batch_size: int
) -> RestoreReport:
    """Restore archive files into the database ``alias``; see the module docstring.

    Raises:
        ArchiveError: a file cannot be read or does not match its manifest.
        ValidationError: a record does not describe a valid row, or no file was given.
        RestoreConflictError: a live row differs from its archived record;
            nothing was written (``details["conflicts"]``, and the report
            in ``details["report"]``).
        StorageError: the database failed (batches written before stay).
    """
    if not paths:
        raise ValidationError("validation_error", "no archive file given", field="paths")
    started = time.monotonic()
    report = RestoreReport(files=[str(p) for p in paths], dry_run=dry_run)
    restorer = _Restorer(alias, report)
    # Pass 1: verify every file and look for conflicts, writing nothing.
    for batch in _batches(paths, batch_size, report, count=True):
        restorer.apply(batch, write=False)
    if report.conflict_count:
        report.duration_ms = _ms(started)
        raise RestoreConflictError(
            "restore_conflict",
            f"{report.conflict_count} live row(s) differ from their archived records; "
            f"nothing was restored (first: {report.conflicts[0]})",
            details={"conflicts": list(report.conflicts), "report": report.to_dict()},
        )
    if not dry_run:
        _reset_counts(report)
        # Pass 2: write, a batch per transaction, checking presence again.
        for batch in _batches(paths, batch_size, report, count=False):
            restorer.apply(batch, write=True)
    report.duration_ms = _ms(started)
    return report


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _reset_counts(report: RestoreReport) -> None:
    for kind in ("session", "run", "event", "artifact", "counter"):
        setattr(report, f"{kind}s_restored", 0)
    report.already_present = 0


def _batches(
    paths: Sequence[str | os.PathLike[str]], size: int, report: RestoreReport, *, count: bool
) -> Iterator[list[tuple[ArchiveEntry, bool]]]:
    """Entries, ``size`` at a time, file after file, each with whether its file is verified."""
    batch: list[tuple[ArchiveEntry, bool]] = []
    for path in paths:
        scan = ArchiveScan(Path(path))
        verified = manifest_path(path).exists()
        for entry in read_archive_entries(path, scan):
            if not entry.confirmed:
                # Its batch never finished: its rows were not deleted.
                continue
            batch.append((entry, verified))
            if len(batch) >= size:
                yield batch
                batch = []
        if count:
            report.records_read += scan.records
            report.skipped_lines += scan.skipped_lines
            report.unconfirmed_skipped += scan.unconfirmed
            if not scan.verified:
                report.unverified_files.append(os.fspath(path))
    if batch:
        yield batch


class _Restorer:
    """Applies batches of records: finds what is present, what conflicts, inserts the rest.

    Records are built (and so validated) once: while writing, or, for a
    file without a manifest, already while checking, so that an invalid
    record stops the restore before anything is written. A record whose
    row is present is built to be compared.
    """

    def __init__(self, alias: str, report: RestoreReport) -> None:
        self.alias = alias
        self.report = report

    def apply(self, batch: list[tuple[ArchiveEntry, bool]], *, write: bool) -> None:
        by_kind: dict[str, list[ArchiveEntry]] = {kind: [] for kind in _KINDS}
        for entry, verified in batch:
            if not write and not verified:
                build_record(entry)  # raises ValidationError for an invalid record
            by_kind[entry.kind].append(entry)
        if not write:
            with translate_errors("restore"):
                self._plan(by_kind)
            return
        with write_block(self.alias, "restore"):
            missing = self._plan(by_kind)
            self._insert(
                {kind: [build_record(e) for e in entries] for kind, entries in missing.items()}
            )
            self._counters(by_kind["session"], by_kind["event"])

    # ------------------------------------------------------------------ planning

    def _plan(self, by_kind: dict[str, list[ArchiveEntry]]) -> dict[str, list[ArchiveEntry]]:
        """Entries whose rows are absent, by kind; present ones counted, differing ones noted."""
        missing: dict[str, list[ArchiveEntry]] = {}
        for kind in _KINDS:
            given = by_kind[kind]
            entries = _unique(given)
            # A repeat within the batch (archives are at-least-once) is present once restored.
            self.report.already_present += len(given) - len(entries)
            if not entries:
                continue
            live = self._live(kind, [_key(entry) for entry in entries])
            absent = []
            for entry in entries:
                row = live.get(_key(entry))
                if row is None:
                    absent.append(entry)
                elif _same(kind, row, build_record(entry)):
                    self.report.already_present += 1
                else:
                    self._conflict(kind, _key(entry), "the live row differs from the archive")
            if kind == "event":
                absent = self._sequence_taken(absent)
            missing[kind] = absent
            self.report._count(kind, len(absent))
        return missing

    def _live(self, kind: str, ids: list[str]) -> dict[str, Any]:
        rows = self._model(kind).objects.using(self.alias).filter(id__in=ids)
        if kind == "artifact":
            return {row["id"]: row for row in rows.values(*m.ARTIFACT_COLUMNS)}
        return {row.id: row.to_domain() for row in rows}

    def _sequence_taken(self, events: list[ArchiveEntry]) -> list[ArchiveEntry]:
        """Events whose (session, sequence number) another live event already holds conflict."""
        if not events:
            return events
        # One indexed query over the batch's sessions and numbers (a superset).
        sessions = {entry.record["session_id"] for entry in events}
        numbers = {entry.record["sequence_number"] for entry in events}
        taken: dict[tuple[str, int], str] = {
            (session_id, number): event_id
            for session_id, number, event_id in m.Event.objects.using(self.alias)
            .filter(session_id__in=sessions, sequence_number__in=numbers)
            .values_list("session_id", "sequence_number", "id")
        }
        free = []
        for entry in events:
            session_id, number = entry.record["session_id"], entry.record["sequence_number"]
            holder = taken.get((session_id, number))
            if holder is None or holder == entry.record["id"]:
                free.append(entry)
            else:
                self._conflict(
                    "event",
                    _key(entry),
                    f"sequence number {number} of {session_id} is held by {holder}",
                )
        return free

    def _conflict(self, kind: str, key: str, why: str) -> None:
        self.report.conflict_count += 1
        if len(self.report.conflicts) < MAX_CONFLICTS_LISTED:
            self.report.conflicts.append(f"{_TABLES[kind]} {key}: {why}")

    # ------------------------------------------------------------------ writing

    def _insert(self, missing: dict[str, list[Any]]) -> None:
        builders: dict[str, Callable[[Any], Any]] = {
            "session": m.Session.from_domain,
            "run": m.Run.from_domain,
            "event": m.Event.from_domain,
            "artifact": lambda values: m.Artifact(**values),
        }
        for kind, records in missing.items():
            if records:
                rows = [builders[kind](record) for record in records]
                # A row inserted meanwhile by someone else is left as it is.
                self._model(kind).objects.using(self.alias).bulk_create(rows, ignore_conflicts=True)

    def _counters(self, sessions: list[ArchiveEntry], events: list[ArchiveEntry]) -> None:
        """Restore archived counters, and raise live ones below a restored sequence number."""
        wanted: dict[str, tuple[int, datetime | None]] = {}
        for entry in sessions:
            if entry.counter is not None:
                updated = parse_datetime(
                    entry.counter.get("updated_at"), "updated_at", required=False
                )
                wanted[entry.record["id"]] = (int(entry.counter["last_sequence"]), updated)
        highest: dict[str, int] = {}
        for entry in events:
            session_id, number = entry.record["session_id"], int(entry.record["sequence_number"])
            highest[session_id] = max(highest.get(session_id, 0), number)
        counters = m.SessionSequence.objects.using(self.alias)
        live = {
            row.session_id: row
            for row in counters.filter(session_id__in=[*wanted, *highest]).select_for_update()
        }
        created, raised = [], []
        for session_id, (last, updated) in wanted.items():
            if session_id not in live:
                new = m.SessionSequence(
                    session_id=session_id, last_sequence=last, updated_at=updated
                )
                live[session_id] = new
                created.append(new)
        for session_id, number in highest.items():
            row = live.get(session_id)
            if row is not None and row.last_sequence < number:
                row.last_sequence = number
                if row not in created:
                    raised.append(row)
        counters.bulk_create(created, ignore_conflicts=True)
        counters.bulk_update(raised, ["last_sequence"])
        self.report.counters_restored += len(created) + len(raised)

    @staticmethod
    def _model(kind: str) -> Any:
        return {"session": m.Session, "run": m.Run, "event": m.Event, "artifact": m.Artifact}[kind]


def _key(entry: ArchiveEntry) -> str:
    return str(entry.record["id"])


def _unique(entries: Iterable[ArchiveEntry]) -> list[ArchiveEntry]:
    """The entries without repeats of an id (archives are at-least-once)."""
    seen: set[str] = set()
    unique = []
    for entry in entries:
        key = _key(entry)
        if key not in seen:
            seen.add(key)
            unique.append(entry)
    return unique


def _same(kind: str, live: Any, record: Any) -> bool:
    if kind == "artifact":
        return _plain(live) == _plain(record)
    assert isinstance(record, Session | Run | Event)
    return bool(live.to_dict() == record.to_dict())


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value.isoformat(timespec="microseconds") if isinstance(value, datetime) else value
        for name, value in row.items()
    }
