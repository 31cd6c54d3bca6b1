"""A read-only, big-table-safe Django admin for agent history.

Adding ``agent_sessions`` to ``INSTALLED_APPS`` registers admins for sessions,
runs, events and artifacts. They are built to stay fast at millions of events
(the habits of django-auditlog and django-pghistory):

* no full-table ``COUNT(*)``: :class:`~agent_sessions.admin.paginator.EstimatedCountPaginator`,
  ``show_full_result_count = False``, facets off;
* list filters take their choices from the vocabulary (no ``DISTINCT``);
* changelists load only their columns (large JSON columns are deferred);
* search is exact equality on indexed id columns, never ``icontains``;
* the session page shows bounded lists (latest runs, a 50-event timeline
  paged by sequence number), never an unbounded inline;
* sorting is offered only on indexed columns.

Nothing here can change the event log: events are read-only for everyone
(deletion only for superusers when ``AGENT_SESSIONS["ADMIN_ALLOW_EVENT_DELETE"]``
is True), and sessions, runs and artifacts are read-only unless
``AGENT_SESSIONS["ADMIN_ALLOW_EDIT"]`` is True (ids, sequence numbers and
timestamps stay read-only even then). Sessions are soft-deleted and restored
through actions, and exported as JSON in the shape of
:meth:`DjangoQueryAPI.export_session <agent_sessions.query.DjangoQueryAPI.export_session>`.

The package has one module per concern: :mod:`.options` (the bounded base
admin), :mod:`.paginator`, :mod:`.filters`, :mod:`.display` (rendering
helpers) and one module per model admin. Importing it registers the admins.
"""

from __future__ import annotations

from agent_sessions.admin.artifacts import ArtifactAdmin
from agent_sessions.admin.events import EventAdmin
from agent_sessions.admin.options import BigTableAdmin, BoundedChangeList
from agent_sessions.admin.runs import RunAdmin
from agent_sessions.admin.sessions import SessionAdmin

__all__ = [
    "ArtifactAdmin",
    "BigTableAdmin",
    "BoundedChangeList",
    "EventAdmin",
    "RunAdmin",
    "SessionAdmin",
]
