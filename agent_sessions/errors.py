"""Errors raised by ``agent_sessions``, each carrying a stable machine-readable code.

Every error is an :class:`AgentSessionsError` with three attributes:

- ``code``: a short lowercase string (``"session_not_found"``, ``"invalid_status"``…)
  that callers can branch on and that stays stable across releases;
- ``message``: a sentence for humans;
- ``details``: a dict of extra facts (for :class:`ValidationError`,
  ``details["field"]`` names the offending field when it is known).

The first positional argument is the code, so the common cases read naturally::

    raise NotFoundError("session_not_found", details={"session_id": session_id})
    raise ValidationError("invalid_status", f"Unknown status {value!r}", field="status")

Each subclass accepts only its own codes (see :attr:`AgentSessionsError.codes`);
passing a code that belongs elsewhere is a programming error and raises
:class:`ValueError`.

This module has no Django dependency.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "DEFAULT_MESSAGES",
    "AgentSessionsError",
    "ArchiveError",
    "MaintenanceLockLost",
    "MigrationRequiredError",
    "NotFoundError",
    "RestoreConflictError",
    "SearchUnavailableError",
    "StorageError",
    "ValidationError",
]

#: The message used when none is given, by code.
DEFAULT_MESSAGES: dict[str, str] = {
    "agent_sessions_error": "An agent_sessions operation failed.",
    "session_not_found": "Session not found.",
    "run_not_found": "Run not found.",
    "validation_error": "Invalid input.",
    "invalid_status": "Unknown status.",
    "invalid_event_type": "Unknown event type.",
    "invalid_cursor": "The cursor is malformed, was tampered with, or belongs to another query.",
    "storage_error": "The database refused or failed the operation.",
    "archive_error": "The maintenance archive could not be written or read.",
    "lock_lost": "The maintenance run lost its lock; it stopped.",
    "restore_conflict": "A live row differs from its archived record; it was not overwritten.",
    "search_unavailable": (
        "Full-text search is not available on this database: SQLite was built "
        "without FTS5 (see `python manage.py check`)."
    ),
    "migration_required": (
        "The agent_sessions tables or columns are missing: "
        "run `python manage.py migrate agent_sessions`."
    ),
}


class AgentSessionsError(Exception):
    """Base class of every error raised by ``agent_sessions``.

    Attributes:
        code: Stable machine-readable error code.
        message: Human-readable description.
        details: Extra, JSON-friendly facts about the failure.

    Subclasses declare the codes they accept in :attr:`codes` and the code used
    when none is given in :attr:`default_code`. The base class accepts any
    non-empty code.
    """

    #: The code used when the constructor receives none.
    default_code: ClassVar[str] = "agent_sessions_error"
    #: The codes this class accepts; empty means "any code".
    codes: ClassVar[frozenset[str]] = frozenset()

    code: str
    message: str
    details: dict[str, Any]

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Create the error.

        Args:
            code: The error code; defaults to the class's :attr:`default_code`.
            message: Human-readable text; defaults to a sentence for the code.
            details: Extra facts; copied, so later changes to the argument do
                not affect the error.

        Raises:
            ValueError: ``code`` is not one this class accepts.
            TypeError: ``code`` or ``message`` is not a string, or ``details``
                is not a dict.
        """
        if code is None:
            code = self.default_code
        if not isinstance(code, str):
            raise TypeError(f"error code must be a str, not {type(code).__name__}")
        if not code or (self.codes and code not in self.codes):
            allowed = ", ".join(sorted(self.codes)) or "any non-empty string"
            raise ValueError(
                f"{type(self).__name__} does not accept code {code!r} (allowed: {allowed})"
            )
        if message is None:
            message = DEFAULT_MESSAGES.get(code, code.replace("_", " ").capitalize() + ".")
        elif not isinstance(message, str):
            raise TypeError(f"error message must be a str, not {type(message).__name__}")
        if details is None:
            details = {}
        elif not isinstance(details, dict):
            raise TypeError(f"error details must be a dict, not {type(details).__name__}")
        else:
            details = dict(details)
        self.code = code
        self.message = message
        self.details = details
        # ``args`` mirrors the constructor so that pickling (e.g. across
        # processes) rebuilds an equal error.
        super().__init__(code, message, details)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"details={self.details!r})"
        )


class NotFoundError(AgentSessionsError):
    """A session or run that was asked for does not exist.

    Codes: ``session_not_found`` (the default), ``run_not_found``.
    """

    default_code = "session_not_found"
    codes = frozenset({"session_not_found", "run_not_found"})


class ValidationError(AgentSessionsError):
    """Input was refused before anything was written.

    Codes: ``validation_error`` (the default), ``invalid_status``,
    ``invalid_event_type``, ``invalid_cursor``.

    ``details["field"]`` names the offending field when it is known; pass it
    with the ``field`` keyword or inside ``details``.
    """

    default_code = "validation_error"
    codes = frozenset(
        {"validation_error", "invalid_status", "invalid_event_type", "invalid_cursor"}
    )

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        *,
        field: str | None = None,
    ) -> None:
        """Create the error.

        Args:
            code: The error code; defaults to ``"validation_error"``.
            message: Human-readable text; defaults to a sentence for the code.
            details: Extra facts; copied.
            field: The offending field, stored as ``details["field"]``.

        Raises:
            ValueError: ``code`` is not a validation code.
        """
        if field is not None:
            details = {**(details or {}), "field": field}
        super().__init__(code, message, details)

    @property
    def field(self) -> str | None:
        """The offending field's name, when known."""
        value = self.details.get("field")
        return value if isinstance(value, str) else None


class StorageError(AgentSessionsError):
    """The database refused or failed an operation.

    Code: ``storage_error``. ``details`` describes the underlying driver error;
    build one with :meth:`from_exception`.
    """

    default_code = "storage_error"
    codes = frozenset({"storage_error"})

    @classmethod
    def from_exception(cls, exc: BaseException, message: str | None = None) -> StorageError:
        """Wrap a database driver exception.

        Args:
            exc: The exception raised by the database layer. It is kept as the
                new error's ``__cause__``; ``details`` records its class and text.
            message: Human-readable text; defaults to the generic storage message.

        Returns:
            A :class:`StorageError` to raise (``raise StorageError.from_exception(e) from e``).
        """
        error = cls(
            "storage_error",
            message,
            details={
                "exception": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "error": str(exc),
            },
        )
        error.__cause__ = exc
        return error


class ArchiveError(StorageError):
    """An archive file could not be opened, written, synced, closed or read back.

    Code: ``archive_error``. ``details`` holds ``path`` and the OS error's text
    (``cause``). Maintenance deletes nothing that was not durably archived
    when it raises this.
    """

    default_code = "archive_error"
    codes = frozenset({"archive_error"})


class MaintenanceLockLost(StorageError):
    """A maintenance run found that it no longer holds the maintenance lock.

    Code: ``lock_lost``. The run stops before its next destructive batch;
    what earlier batches committed stays committed.
    """

    default_code = "lock_lost"
    codes = frozenset({"lock_lost"})


class RestoreConflictError(AgentSessionsError):
    """Restoring an archive would overwrite a live row that differs from the archived one.

    Code: ``restore_conflict``. ``details["conflicts"]`` lists ``(table, id)``
    pairs; nothing of the restore was written.
    """

    default_code = "restore_conflict"
    codes = frozenset({"restore_conflict"})


class SearchUnavailableError(StorageError):
    """The database cannot run a full-text search (SQLite without the FTS5 extension).

    Code: ``search_unavailable``. A :class:`StorageError`, so code that
    handles database failures handles it too.
    """

    default_code = "search_unavailable"
    codes = frozenset({"search_unavailable"})


class MigrationRequiredError(AgentSessionsError):
    """The ``asm_*`` tables or required columns are missing.

    Code: ``migration_required``. The default message tells to run
    ``manage.py migrate``.
    """

    default_code = "migration_required"
    codes = frozenset({"migration_required"})
