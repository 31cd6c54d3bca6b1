"""Django signals of the event pipeline and maintenance (CONTRACT §12; ASM's telemetry events).

Connect receivers as to any Django signal::

    from django.dispatch import receiver
    from agent_sessions.signals import event_persisted

    @receiver(event_persisted)
    def on_event(sender, event, **kwargs):
        ...

The signals and their arguments (besides ``sender`` and ``signal``):

- ``event_persisted(event)``: once per newly stored event, with the stored
  :class:`~agent_sessions.core.Event` (its sequence number, its redacted
  data). A repeated id that was already stored sends nothing.
- ``event_rejected(error, session_id)``: a write was refused; ``error`` is
  the :class:`~agent_sessions.errors.AgentSessionsError` raised to the
  caller, ``session_id`` the session written to (None when not known).
- ``event_redacted(event, redaction_count, fields_redacted)``: a stored
  event had secrets replaced; ``fields_redacted`` lists the changed
  top-level fields (``"data.content"``, ``"metadata.note"``).
- ``event_validation_warning(event, warnings)``: a stored event got shape
  warnings (the list also kept in ``metadata["_validation_warnings"]``).
- ``maintenance_completed(report, duration_ms)``: a
  :meth:`~agent_sessions.maintenance.DjangoMaintenance.execute` run ended
  (its :class:`~agent_sessions.results.MaintenanceReport`).

The event signals' sender is :class:`~agent_sessions.store.DjangoSessionStore`
(also for events written by the framework adapters, which use the same
table); ``maintenance_completed``'s is
:class:`~agent_sessions.maintenance.DjangoMaintenance`. This module sits
below the store, so it does not import it: the app's ``ready()`` names the
sender (:func:`set_event_sender`).

Guarantees:

- Sent after the transaction that wrote commits (``transaction.on_commit``
  on the write database), never for work that was rolled back. Inside the
  caller's ``atomic()`` block that is when the outermost block commits.
  ``event_rejected`` is sent when the error is raised (there is no commit).
- A receiver that raises is logged (Django's ``django.dispatch`` logger,
  with the traceback) and never breaks the write or the other receivers.
- Nothing is built or scheduled while no receiver is connected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.dispatch import Signal

if TYPE_CHECKING:
    from agent_sessions import core
    from agent_sessions.pipeline import PipelineOutcome

__all__ = [
    "event_persisted",
    "event_redacted",
    "event_rejected",
    "event_validation_warning",
    "maintenance_completed",
]

#: A new event was stored (after commit). Arguments: ``event``.
event_persisted = Signal()
#: A write was refused. Arguments: ``error``, ``session_id``.
event_rejected = Signal()
#: A stored event had secrets replaced (after commit). Arguments: ``event``,
#: ``redaction_count``, ``fields_redacted``.
event_redacted = Signal()
#: A stored event got shape warnings (after commit). Arguments: ``event``, ``warnings``.
event_validation_warning = Signal()
#: A maintenance run ended. Arguments: ``report``, ``duration_ms``.
maintenance_completed = Signal()

_EVENT_SIGNALS = (event_persisted, event_redacted, event_validation_warning)

StoredEvents = Iterable[tuple["core.Event", "PipelineOutcome | None"]]


def wanted() -> bool:
    """Whether any receiver listens to the stored-event signals (cheap; check first)."""
    return bool(
        event_persisted.receivers or event_redacted.receivers or event_validation_warning.receivers
    )


#: The event signals' sender; the app's ``ready()`` sets DjangoSessionStore.
_event_sender: type | None = None


def set_event_sender(sender: type) -> None:
    """Name the class the event signals are sent from (``AgentSessionsConfig.ready``)."""
    global _event_sender
    _event_sender = sender


def events_stored(alias: str, stored: StoredEvents) -> None:
    """Send the stored-event signals once the current transaction on ``alias`` commits.

    Called by a writer inside its transaction (or right after its
    autocommit statement, when ``on_commit`` runs the callback at once),
    for the events it newly stored. A no-op while no receiver is connected.

    Args:
        alias: The database alias the events were written to.
        stored: ``(stored event, pipeline outcome)`` pairs.
    """
    if not wanted():
        return
    items = list(stored)
    if items:
        transaction.on_commit(lambda: _send_stored(items), using=alias)


async def aevents_stored(stored: StoredEvents) -> None:
    """:func:`events_stored` for a statement already committed on a private async connection.

    Async receivers are awaited on the running loop, sync ones run in a
    worker thread (Django's ``asend_robust``).
    """
    if not wanted():
        return
    sender = _event_sender
    for event, outcome in stored:
        for signal, arguments in _stored_signals(event, outcome):
            await signal.asend_robust(sender, **arguments)


def _send_stored(items: list[tuple[core.Event, PipelineOutcome | None]]) -> None:
    sender = _event_sender
    for event, outcome in items:
        for signal, arguments in _stored_signals(event, outcome):
            signal.send_robust(sender, **arguments)


def _stored_signals(
    event: core.Event, outcome: PipelineOutcome | None
) -> list[tuple[Signal, dict[str, Any]]]:
    signals: list[tuple[Signal, dict[str, Any]]] = []
    if outcome is not None and outcome.redaction_count and event_redacted.receivers:
        signals.append(
            (
                event_redacted,
                {
                    "event": event,
                    "redaction_count": outcome.redaction_count,
                    "fields_redacted": list(outcome.fields_redacted),
                },
            )
        )
    if outcome is not None and outcome.warnings and event_validation_warning.receivers:
        signals.append(
            (event_validation_warning, {"event": event, "warnings": list(outcome.warnings)})
        )
    if event_persisted.receivers:
        signals.append((event_persisted, {"event": event}))
    return signals


def write_rejected(error: BaseException, session_id: str | None) -> None:
    """Send ``event_rejected`` for an error about to be raised to the writer's caller."""
    if event_rejected.receivers:
        event_rejected.send_robust(
            _event_sender,
            error=error,
            session_id=session_id if isinstance(session_id, str) else None,
        )


def maintenance_done(sender: type, alias: str, report: Any) -> None:
    """Send ``maintenance_completed`` once the current transaction on ``alias`` (if any) commits."""
    if not maintenance_completed.receivers:
        return
    transaction.on_commit(
        lambda: maintenance_completed.send_robust(
            sender, report=report, duration_ms=report.duration_ms
        ),
        using=alias,
    )
