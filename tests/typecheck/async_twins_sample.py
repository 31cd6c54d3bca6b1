"""Checked by ``mypy`` in tests/test_async_twins_typing.py, never imported by pytest.

Every line must type-check: the twins are declared, so awaiting one gives the
sync method's result type, and the concrete classes satisfy their Protocols.
"""

from __future__ import annotations

from agent_sessions import core, ports
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.results import SessionPage
from agent_sessions.store import DjangoArtifactRegistry, DjangoSessionStore

store: ports.SessionStore = DjangoSessionStore()
registry: ports.ArtifactRegistry = DjangoArtifactRegistry()
query: ports.QueryAPI = DjangoQueryAPI()
maintenance: ports.Maintenance = DjangoMaintenance()


async def use_twins(concrete: DjangoSessionStore, event: core.Event) -> int:
    stored: core.Event = await concrete.aappend_event(event)
    page: SessionPage = await DjangoQueryAPI().asearch_sessions(limit=1)
    async for streamed in concrete.stream_events(stored.session_id):
        return len(streamed.type) + len(page.sessions)
    return await DjangoMaintenance().aclean_orphaned_sequences(dry_run=True)
