"""JSON Lines archives of what maintenance deletes, crash-consistent and verifiable.

With ``RetentionPolicy.archive_before_prune``, every row maintenance is about
to delete is first written to a file under ``archive_store``: pruned events,
and hard-deleted sessions with their sequence counter, runs, events and
artifacts (orphaned artifacts too). A batch's rows are deleted only after
:meth:`ArchiveWriter.sync` returned, inside the batch's transaction, so a
crash or a failing disk never deletes a row that is not durably archived.

One maintenance run writes one file, ``asm-archive-<UTC time>-<pid>.jsonl``
(a *segment*; see below for when a run starts another). Each line is one
record::

    {"kind": "session", "record": {...Session.to_dict()...}, "counter": {...}}
    {"kind": "run", "record": {...Run.to_dict()...}}
    {"kind": "event", "record": {...Event.to_dict()...}}
    {"kind": "artifact", "record": {...the asm_artifacts columns...}}

``counter`` (sessions only, when the session had one) holds its sequence
counter row: ``{"last_sequence": n, "updated_at": iso}``.

Crash consistency:

- The file only ever grows by whole batches. A write or fsync that fails
  truncates the file back to the end of the last durable batch; when even
  that fails, the segment is abandoned and the next batch starts a new one,
  ``…-<pid>-<n>.jsonl``. So a disk that fills up and frees again within one
  run never leaves a torn line in the middle of a file.
- After each durable batch, a manifest ``<segment>.manifest.json`` is
  replaced atomically: the durable byte length, the number of records by
  kind and the SHA-256 of those bytes. :func:`read_archive_entries` verifies
  it (:class:`~agent_sessions.errors.ArchiveError` on a mismatch) and reads
  every complete line, before and after it; a torn last line (a crash in the
  middle of a write, in a file written by an older version) is skipped and
  counted, never a reason to stop. Files without a manifest (older versions)
  are read the same way, unverified.
- Every failure (open, write, fsync, manifest, close) raises
  :class:`~agent_sessions.errors.ArchiveError`, a ``StorageError``.

Archives are at-least-once: a batch whose transaction failed after its
records were synced leaves them in the file, and a later run writes them
again. Ids tell duplicates apart, and :mod:`agent_sessions.restore` treats
an identical live row as already restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from agent_sessions.core import Event, Run, Session
from agent_sessions.errors import ArchiveError

__all__ = [
    "ArchiveEntry",
    "ArchiveFile",
    "ArchiveRecord",
    "ArchiveScan",
    "ArchiveWriter",
    "archive_file_name",
    "manifest_path",
    "open_archive_file",
    "read_archive",
    "read_archive_entries",
]

RecordKind = Literal["session", "run", "event", "artifact"]
#: A record read back: a Session, Run or Event, or an artifact's columns as a dict.
ArchiveRecord = Session | Run | Event | dict[str, Any]

#: The manifest's format version.
MANIFEST_FORMAT = 1

_KINDS: dict[str, type[Session] | type[Run] | type[Event]] = {
    "session": Session,
    "run": Run,
    "event": Event,
}
_ARTIFACT_DATETIMES = ("created_at", "deleted_at")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
# How a record line starts: where a record glued to a torn line is found again.
_RECORD_START = '{"kind":'


def archive_file_name(started_at: datetime, pid: int, segment: int = 0) -> str:
    """The file name of a run's archive segment (the first segment has no number)."""
    stamp = started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    suffix = "" if segment == 0 else f"-{segment}"
    return f"asm-archive-{stamp}-{pid}{suffix}.jsonl"


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """Where the manifest of the archive segment ``path`` lives."""
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


class ArchiveFile(Protocol):
    """What :class:`ArchiveWriter` needs of an open archive file (tests inject failing ones)."""

    def write(self, data: bytes) -> int:
        """Write some of ``data`` at the end of the file; return how many bytes."""

    def sync(self) -> None:
        """Make everything written durable (fsync)."""

    def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes."""

    def close(self) -> None:
        """Close the file."""


class _PosixFile:
    """An append-only file descriptor: unbuffered, so a failure is seen where it happens."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, data: bytes) -> int:
        return os.write(self._fd, data)

    def sync(self) -> None:
        os.fsync(self._fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def close(self) -> None:
        os.close(self._fd)


def open_archive_file(path: Path) -> ArchiveFile:
    """Open (create) an archive segment for appending; the writer's default opener."""
    return _PosixFile(path)


class ArchiveWriter:
    """Appends records to a run's archive, created on the first write.

    Args:
        directory: Where the files go; created (with parents) when missing.
        started_at: The run's start time, used in the file names.
        opener: Opens a segment for appending; :func:`open_archive_file`
            when None (read at open time, so tests can replace it).

    Call :meth:`write` for the records of a batch, :meth:`sync` before
    deleting them, :meth:`close` when the run ends. Nothing is written
    until :meth:`write` is called, so a run that deletes nothing leaves no file.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        started_at: datetime,
        opener: Any = None,
    ) -> None:
        self.directory = Path(directory)
        self.started_at = started_at
        self._opener = opener
        self._segment = 0
        self.path = self.directory / archive_file_name(started_at, os.getpid())
        #: Every segment this writer created, in order.
        self.paths: list[Path] = []
        self._file: ArchiveFile | None = None
        # The durable prefix of the current segment, and what was written after it.
        self._durable_bytes = 0
        self._durable_hash = hashlib.sha256()
        self._durable_counts: Counter[str] = Counter()
        self._written_bytes = 0
        self._written_hash = hashlib.sha256()
        self._written_counts: Counter[str] = Counter()

    def write(
        self,
        kind: RecordKind,
        records: Iterable[Session | Run | Event | Mapping[str, Any]],
        *,
        counters: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> int:
        """Append records of one kind; return how many were written.

        Args:
            kind: What the records are.
            records: Domain objects, or (artifacts) dicts of columns.
            counters: For sessions: the counter row by session id, stored
                with the session's record.

        Raises:
            ArchiveError: the file could not be created or written; it is cut
                back to its last durable batch (or abandoned).
        """
        count = 0
        handle = self._open()
        try:
            for record in records:
                line = _encode(kind, record, counters)
                self._write_all(handle, line)
                self._written_hash.update(line)
                self._written_bytes += len(line)
                self._written_counts[kind] += 1
                count += 1
        except OSError as exc:
            self._roll_back()
            raise self._error("write", exc) from exc
        finally:
            # A generator over a server-side cursor must close it now, inside
            # the caller's transaction, not whenever the traceback is freed.
            close = getattr(records, "close", None)
            if close is not None:
                close()
        return count

    def sync(self) -> None:
        """Make everything written so far durable, then record it in the manifest.

        Raises:
            ArchiveError: fsync or the manifest failed; the batch's records
                are cut off again (or the segment abandoned), so the caller
                must not delete them.
        """
        if self._file is None or self._written_bytes == self._durable_bytes:
            return
        try:
            self._file.sync()
        except OSError as exc:
            # After a failed fsync the page cache may no longer say what is
            # on disk: the segment is not trusted with another batch.
            self._roll_back(abandon=True)
            raise self._error("fsync", exc) from exc
        previous = (self._durable_bytes, self._durable_hash, self._durable_counts)
        self._durable_bytes = self._written_bytes
        self._durable_hash = self._written_hash.copy()
        self._durable_counts = self._written_counts.copy()
        try:
            self._write_manifest()
        except OSError as exc:
            self._durable_bytes, self._durable_hash, self._durable_counts = previous
            self._roll_back()
            raise self._error("write the manifest of", exc) from exc

    def close(self) -> None:
        """Sync and close the current segment (a no-op when nothing was written).

        Raises:
            ArchiveError: syncing or closing failed (what was synced before stays).
        """
        if self._file is None:
            return
        try:
            self.sync()
        finally:
            handle, self._file = self._file, None
            try:
                handle.close()
            except OSError as exc:
                raise self._error("close", exc) from exc

    # ------------------------------------------------------------------ internals

    def _open(self) -> ArchiveFile:
        if self._file is not None:
            return self._file
        self.path = self.directory / archive_file_name(self.started_at, os.getpid(), self._segment)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            opener = self._opener or open_archive_file
            self._file = opener(self.path)
            # The new directory entry must be durable too, not just the data.
            _fsync_directory(self.directory)
        except OSError as exc:
            if self._file is not None:
                self._roll_back(abandon=True)
            raise self._error("open", exc) from exc
        self.paths.append(self.path)
        self._durable_bytes = self._written_bytes = 0
        self._durable_hash, self._written_hash = hashlib.sha256(), hashlib.sha256()
        self._durable_counts, self._written_counts = Counter(), Counter()
        return self._file

    @staticmethod
    def _write_all(handle: ArchiveFile, line: bytes) -> None:
        view = memoryview(line)
        while view:
            written = handle.write(bytes(view))
            if written <= 0:
                raise OSError("the archive file accepted no bytes")
            view = view[written:]

    def _roll_back(self, *, abandon: bool = False) -> None:
        """Forget what was written after the last durable batch.

        Cuts the segment back to its durable length; when that fails (or
        ``abandon``), closes it, and the next write starts a new segment.
        """
        handle = self._file
        self._written_bytes = self._durable_bytes
        self._written_hash = self._durable_hash.copy()
        self._written_counts = self._durable_counts.copy()
        if handle is None:
            return
        try:
            handle.truncate(self._durable_bytes)
        except OSError:
            abandon = True
        if abandon:
            self._file = None
            self._segment += 1
            # The segment is abandoned; its manifest says what is durable.
            with contextlib.suppress(OSError):
                handle.close()

    def _write_manifest(self) -> None:
        manifest = {
            "format": MANIFEST_FORMAT,
            "archive": self.path.name,
            "bytes": self._durable_bytes,
            "records": sum(self._durable_counts.values()),
            "counts": dict(sorted(self._durable_counts.items())),
            "sha256": self._durable_hash.hexdigest(),
        }
        target = manifest_path(self.path)
        temporary = target.with_name(target.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            data = (json.dumps(manifest, sort_keys=True) + "\n").encode()
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
        _fsync_directory(self.directory)

    def _error(self, action: str, exc: OSError) -> ArchiveError:
        return ArchiveError(
            "archive_error",
            f"cannot {action} the archive {self.path}: {exc}; "
            "nothing that was not durably archived was deleted",
            details={"operation": "archive", "path": str(self.path), "cause": str(exc)},
        )


def _encode(
    kind: RecordKind,
    record: Session | Run | Event | Mapping[str, Any],
    counters: Mapping[str, Mapping[str, Any]] | None,
) -> bytes:
    if isinstance(record, Mapping):
        entry: dict[str, Any] = {"kind": kind, "record": _plain(record)}
    else:
        entry = {"kind": kind, "record": record.to_dict()}
        if counters is not None and isinstance(record, Session) and record.id in counters:
            entry["counter"] = _plain(counters[record.id])
    return (_dumps(entry) + "\n").encode("utf-8")


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's columns as JSON values (datetimes as ISO-8601 strings)."""
    return {
        name: value.isoformat(timespec="microseconds") if isinstance(value, datetime) else value
        for name, value in row.items()
    }


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One record of an archive file.

    Attributes:
        kind: ``session``, ``run``, ``event`` or ``artifact``.
        record: The raw record (``to_dict()`` form; artifacts: columns).
        counter: A session's sequence counter row, when archived with it.
        line: The line number in its file.
        confirmed: False for a record after the durable part its file's
            manifest names: its batch never finished, so its rows were not
            deleted by it.
    """

    kind: RecordKind
    record: dict[str, Any]
    counter: dict[str, Any] | None
    line: int
    confirmed: bool = True


@dataclass(slots=True)
class ArchiveScan:
    """What reading a file found besides its records.

    Attributes:
        path: The file.
        verified: A manifest was present and matched the durable prefix.
        records: Complete records read.
        skipped_lines: Torn lines skipped (a write cut short by a crash).
        unconfirmed: Records after the manifest's durable prefix (their
            batch did not finish; their rows were most likely not deleted).
    """

    path: Path
    verified: bool = False
    records: int = 0
    skipped_lines: int = 0
    unconfirmed: int = 0
    counts: Counter[str] = field(default_factory=Counter)


def read_archive_entries(
    path: str | os.PathLike[str], scan: ArchiveScan | None = None
) -> Iterator[ArchiveEntry]:
    """Read an archive file's records, in file order, verifying its manifest.

    Every complete line is read, wherever a torn one sits; a torn line is
    skipped and counted in ``scan.skipped_lines`` (a record glued to it is
    recovered). When the file has a manifest, the bytes it covers must have
    its SHA-256 and record counts.

    Args:
        path: The archive file.
        scan: Filled in with what the reading found, when given.

    Raises:
        ArchiveError: the file cannot be read, or it does not match its manifest.
    """
    path = Path(path)
    scan = scan if scan is not None else ArchiveScan(path)
    manifest = _read_manifest(path)
    covered = int(manifest["bytes"]) if manifest else -1
    digest = hashlib.sha256()
    offset = 0
    in_prefix: Counter[str] = Counter()
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, also when the caller stops early
    except OSError as exc:
        raise _read_error(path, f"cannot open it: {exc}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            if offset < covered:
                digest.update(raw[: covered - offset])
            start, offset = offset, offset + len(raw)
            entry = _parse_line(raw, number)
            if entry is None:
                if raw.strip():
                    scan.skipped_lines += 1
            else:
                scan.records += 1
                scan.counts[entry.kind] += 1
                if start < covered:
                    in_prefix[entry.kind] += 1
                elif manifest:
                    scan.unconfirmed += 1
            if offset == covered:
                _verify(path, manifest, digest, in_prefix)
                scan.verified = True
            elif start < covered < offset:
                raise _read_error(path, "its durable part does not end where its manifest says")
            if entry is not None:
                if manifest and start >= covered:
                    entry = dataclasses.replace(entry, confirmed=False)
                yield entry
    if manifest and offset < covered:
        raise _read_error(path, f"it has {offset} bytes, its manifest says {covered} are durable")
    if manifest and covered == 0:
        scan.verified = True


def read_archive(path: str | os.PathLike[str]) -> Iterator[tuple[RecordKind, ArchiveRecord]]:
    """Read an archive file back, one ``(kind, record)`` pair per record, in file order.

    Sessions, runs and events are rebuilt with ``from_dict`` (a status or
    event type this version does not know is kept as its string); artifacts
    are dicts of their columns with datetimes parsed.

    Raises:
        ArchiveError: the file cannot be read or does not match its manifest.
        ValidationError: a record does not describe a valid row.
    """
    for entry in read_archive_entries(path):
        yield entry.kind, build_record(entry)


def build_record(entry: ArchiveEntry) -> ArchiveRecord:
    """The domain object (or artifact dict) of an archive entry.

    Raises:
        ValidationError: the record does not describe a valid row.
    """
    if entry.kind == "artifact":
        return _artifact(entry.record)
    return _KINDS[entry.kind].from_stored_dict(entry.record)


def _artifact(record: dict[str, Any]) -> dict[str, Any]:
    from agent_sessions.validation import parse_datetime

    values = dict(record)
    for name in _ARTIFACT_DATETIMES:
        values[name] = parse_datetime(values.get(name), name, required=False)
    return values


def _parse_line(raw: bytes, number: int) -> ArchiveEntry | None:
    """The entry on a line, or None for a blank or torn one (a glued record is recovered)."""
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        return None
    entry = _entry(text, number)
    if entry is None:
        # A torn line followed, on the same line, by a whole record written
        # after it (an older writer appended after a failed write).
        glued = text.rfind(_RECORD_START, 1)
        if glued > 0:
            entry = _entry(text[glued:], number)
    return entry


def _entry(text: str, number: int) -> ArchiveEntry | None:
    if not text.endswith("\n"):
        return None  # the last line, cut short
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if (
        not isinstance(value, dict)
        or value.get("kind") not in ("session", "run", "event", "artifact")
        or not isinstance(value.get("record"), dict)
    ):
        return None
    counter = value.get("counter")
    return ArchiveEntry(
        value["kind"], value["record"], counter if isinstance(counter, dict) else None, number
    )


def _read_manifest(path: Path) -> dict[str, Any] | None:
    target = manifest_path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _read_error(path, f"cannot read its manifest: {exc}") from exc
    try:
        manifest = json.loads(text)
        int(manifest["bytes"]), str(manifest["sha256"]), dict(manifest["counts"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _read_error(path, f"its manifest {target.name} is unreadable: {exc}") from exc
    return dict(manifest)


def _verify(path: Path, manifest: dict[str, Any] | None, digest: Any, counts: Counter[str]) -> None:
    assert manifest is not None
    if digest.hexdigest() != manifest["sha256"]:
        raise _read_error(path, "its durable part does not match the manifest's SHA-256")
    expected = {kind: int(n) for kind, n in manifest["counts"].items() if int(n)}
    if dict(counts) != expected:
        raise _read_error(path, f"it holds {dict(counts)} records, its manifest says {expected}")


def _read_error(path: Path, reason: str) -> ArchiveError:
    return ArchiveError(
        "archive_error",
        f"the archive {path} is damaged: {reason}",
        details={"operation": "read_archive", "path": str(path)},
    )
