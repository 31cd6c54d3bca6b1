"""The event log: how events get into ``asm_events`` and come back out.

Everything about the append-only log of :class:`~agent_sessions.core.Event`
rows lives in this package, one module per mechanism:

- :mod:`~agent_sessions.eventlog.codec` — an event ⇄ its row: validated once,
  run through the event pipeline, encoded; rows decoded without re-validation;
- :mod:`~agent_sessions.eventlog.append` — the append algorithm: gap-free
  per-session numbers, idempotent by event id, batches as one ``COPY``;
- :mod:`~agent_sessions.eventlog.read` — a session's filtered, ordered events
  and the long-poll step;
- :mod:`~agent_sessions.eventlog.sql` — the vendor SQL under all three
  (counter upsert, ``asm_append_event``, ``COPY``, ``NOTIFY``).

:class:`~agent_sessions.store.DjangoSessionStore` is the public face; the
framework adapters write through the same codec and SQL.
"""
