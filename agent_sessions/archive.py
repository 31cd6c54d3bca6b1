"""JSON Lines archives of what maintenance deletes.

With ``RetentionPolicy.archive_before_prune``, every event about to be pruned
and every session about to be hard-deleted (with its runs and events) is first
written to a file under ``archive_store``; the rows are deleted only after the
file has been flushed and fsynced (and, once, its directory), so a crash
between the two steps loses nothing.

One maintenance run writes one file, ``asm-archive-<UTC time>-<pid>.jsonl``.
Each line is one record::

    {"kind": "session", "record": {...Session.to_dict()...}}
    {"kind": "run", "record": {...Run.to_dict()...}}
    {"kind": "event", "record": {...Event.to_dict()...}}

:func:`read_archive` turns a file back into :class:`~agent_sessions.core.Session`,
:class:`~agent_sessions.core.Run` and :class:`~agent_sessions.core.Event`
objects. Archives are at-least-once: when a deletion fails after its records
were written (and is retried, or runs again next time), the same record can
appear more than once; ids tell duplicates apart.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from agent_sessions.core import Event, Run, Session
from agent_sessions.errors import StorageError, ValidationError

__all__ = ["ArchiveRecord", "ArchiveWriter", "archive_file_name", "read_archive"]

RecordKind = Literal["session", "run", "event"]
ArchiveRecord = Session | Run | Event

_KINDS: dict[str, type[Session] | type[Run] | type[Event]] = {
    "session": Session,
    "run": Run,
    "event": Event,
}
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def archive_file_name(started_at: datetime, pid: int) -> str:
    """The archive file name of a run started at ``started_at`` by process ``pid``."""
    stamp = started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"asm-archive-{stamp}-{pid}.jsonl"


class ArchiveWriter:
    """Appends records to one JSON Lines file, created on the first write.

    Args:
        directory: Where the file goes; created (with parents) when missing.
        started_at: The run's start time, used in the file name.

    Nothing is written until :meth:`write` is called, so a run that deletes
    nothing leaves no empty file behind. Call :meth:`sync` before deleting
    what was written; :meth:`close` when the run ends.
    """

    def __init__(self, directory: str | os.PathLike[str], *, started_at: datetime) -> None:
        self.directory = Path(directory)
        self.path = self.directory / archive_file_name(started_at, os.getpid())
        self._file: IO[str] | None = None
        self._pending = False

    def write(self, kind: RecordKind, records: Iterable[ArchiveRecord]) -> int:
        """Append records of one kind; return how many were written.

        Raises:
            StorageError: the directory or file cannot be created or written.
        """
        count = 0
        try:
            handle = self._open()
            for record in records:
                handle.write(_dumps({"kind": kind, "record": record.to_dict()}))
                handle.write("\n")
                count += 1
        except OSError as exc:
            raise self._error("write", exc) from exc
        self._pending = self._pending or count > 0
        return count

    def sync(self) -> None:
        """Make everything written so far durable: flush, then fsync the file.

        Raises:
            StorageError: flushing or fsyncing failed.
        """
        if self._file is None or not self._pending:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise self._error("sync", exc) from exc
        self._pending = False

    def close(self) -> None:
        """Sync and close the file (a no-op when nothing was written)."""
        if self._file is None:
            return
        try:
            self.sync()
        finally:
            self._file.close()
            self._file = None

    def _open(self) -> IO[str]:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            # The new directory entry must be durable too, not just the data.
            _fsync_directory(self.directory)
        return self._file

    def _error(self, action: str, exc: OSError) -> StorageError:
        return StorageError(
            "storage_error",
            f"cannot {action} the archive {self.path}: {exc}; nothing was deleted",
            details={"operation": "archive", "path": str(self.path), "cause": str(exc)},
        )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_archive(path: str | os.PathLike[str]) -> Iterator[tuple[RecordKind, ArchiveRecord]]:
    """Read an archive file back, one ``(kind, record)`` pair per line, in file order.

    Records are rebuilt with ``Session.from_dict``, ``Run.from_dict`` and
    ``Event.from_dict``, which validate them.

    Raises:
        ValidationError: a line is not valid JSON or not an archive record.
    """
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                kind = entry["kind"]
                cls = _KINDS[kind]
                record = entry["record"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValidationError(
                    "validation_error",
                    f"{path}:{number} is not an archive record: {exc}",
                    field="archive",
                ) from exc
            yield kind, cls.from_dict(record)
