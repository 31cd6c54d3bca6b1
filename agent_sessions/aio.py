"""Async twins of the synchronous API, declared, and :meth:`stream_events`.

Every coroutine here runs the matching synchronous method — one short
transaction — in a worker thread (:func:`~agent_sessions.workers.run_in_worker`,
which says why a pool thread and how connections are handled) and awaits the
result. The event loop is never blocked.

The twins are declared, one per method, on mixin classes the concrete
classes inherit (``class DjangoSessionStore(SessionStoreAsyncMixin)``), the
way Django's ``SessionBase`` declares ``aload``/``asave``: the type checker
sees them. Each mixin derives from its :mod:`~agent_sessions.ports` Protocol,
so a concrete class that drifts from its contract fails ``mypy``, and a
method whose docstring is the contract's inherits it (``inspect.getdoc``,
``help()``) instead of repeating it::

    await store.aappend_event(event)
    async for event in store.stream_events(session_id):
        ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent_sessions import core, ports
from agent_sessions.locks import MaintenanceLock
from agent_sessions.results import (
    CostSummary,
    EventPage,
    MaintenanceReport,
    RestoreReport,
    RunPage,
    SessionPage,
    TextPage,
    UsageSummary,
)
from agent_sessions.retention import RetentionPolicy
from agent_sessions.workers import (
    run_in_worker,
    stream_events,
    with_async_twins,
    with_fresh_connections,
)

__all__ = [
    "ArtifactRegistryAsyncMixin",
    "MaintenanceAsyncMixin",
    "QueryAsyncMixin",
    "SessionStoreAsyncMixin",
    "run_in_worker",
    "stream_events",
    "with_async_twins",
]

# The name api.sse imports (now workers.with_fresh_connections).
_with_fresh_connections = with_fresh_connections


class SessionStoreAsyncMixin(ports.SessionStore):
    """Coroutine twins of the session store's methods (see :func:`run_in_worker`)."""

    async def aappend_event(self, event: core.Event) -> core.Event:
        """Async twin of :meth:`append_event`: same arguments, result and errors."""
        return await run_in_worker(self.append_event, event)

    async def aappend_event_with_sequence(self, event: core.Event) -> core.Event:
        """Async twin of :meth:`append_event_with_sequence`: same arguments, result and errors."""
        return await run_in_worker(self.append_event_with_sequence, event)

    async def aappend_events(self, events: Sequence[core.Event]) -> list[core.Event]:
        """Async twin of :meth:`append_events`: same arguments, result and errors."""
        return await run_in_worker(self.append_events, events)

    async def adelete_session(self, session_id: str) -> None:
        """Async twin of :meth:`delete_session`: same arguments, result and errors."""
        return await run_in_worker(self.delete_session, session_id)

    async def aflush(
        self,
        *,
        session: core.Session,
        run: core.Run,
        events: Sequence[core.Event],
        provider_metadata: dict[str, Any] | None = None,
    ) -> None:
        """Async twin of :meth:`flush`: same arguments, result and errors."""
        return await run_in_worker(
            self.flush, session=session, run=run, events=events, provider_metadata=provider_metadata
        )

    async def aget_active_run(self, session_id: str) -> core.Run | None:
        """Async twin of :meth:`get_active_run`: same arguments, result and errors."""
        return await run_in_worker(self.get_active_run, session_id)

    async def aget_latest_sequence(self, session_id: str) -> int:
        """Async twin of :meth:`get_latest_sequence`: same arguments, result and errors."""
        return await run_in_worker(self.get_latest_sequence, session_id)

    async def aget_run(self, run_id: str) -> core.Run:
        """Async twin of :meth:`get_run`: same arguments, result and errors."""
        return await run_in_worker(self.get_run, run_id)

    async def aget_session(self, session_id: str) -> core.Session:
        """Async twin of :meth:`get_session`: same arguments, result and errors."""
        return await run_in_worker(self.get_session, session_id)

    async def alist_runs(
        self, session_id: str, *, status: str | None = None, limit: int | None = None
    ) -> list[core.Run]:
        """Async twin of :meth:`list_runs`: same arguments, result and errors."""
        return await run_in_worker(self.list_runs, session_id, status=status, limit=limit)

    async def alist_sessions(
        self,
        *,
        status: str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[core.Session]:
        """Async twin of :meth:`list_sessions`: same arguments, result and errors."""
        return await run_in_worker(
            self.list_sessions, status=status, agent_id=agent_id, limit=limit, offset=offset
        )

    async def asave_run(self, run: core.Run) -> None:
        """Async twin of :meth:`save_run`: same arguments, result and errors."""
        return await run_in_worker(self.save_run, run)

    async def asave_session(self, session: core.Session) -> None:
        """Async twin of :meth:`save_session`: same arguments, result and errors."""
        return await run_in_worker(self.save_session, session)

    stream_events = stream_events


class ArtifactRegistryAsyncMixin(ports.ArtifactRegistry):
    """Coroutine twins of the artifact registry's methods (see :func:`run_in_worker`)."""

    async def adelete(self, key: str) -> None:
        """Async twin of :meth:`delete`: same arguments, result and errors."""
        return await run_in_worker(self.delete, key)

    async def aget_by_key(self, key: str) -> dict[str, Any] | None:
        """Async twin of :meth:`get_by_key`: same arguments, result and errors."""
        return await run_in_worker(self.get_by_key, key)

    async def alist_by_session(self, session_id: str) -> list[dict[str, Any]]:
        """Async twin of :meth:`list_by_session`: same arguments, result and errors."""
        return await run_in_worker(self.list_by_session, session_id)

    async def aregister(
        self,
        *,
        key: str,
        byte_size: int,
        checksum_sha256: str,
        storage_backend: str,
        storage_ref: str,
        session_id: str | None = None,
        run_id: str | None = None,
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> dict[str, Any]:
        """Async twin of :meth:`register`: same arguments, result and errors."""
        return await run_in_worker(
            self.register,
            key=key,
            byte_size=byte_size,
            checksum_sha256=checksum_sha256,
            storage_backend=storage_backend,
            storage_ref=storage_ref,
            session_id=session_id,
            run_id=run_id,
            content_type=content_type,
            metadata=metadata,
            id=id,
        )

    async def asession_stats(self, session_id: str) -> dict[str, int]:
        """Async twin of :meth:`session_stats`: same arguments, result and errors."""
        return await run_in_worker(self.session_stats, session_id)


class QueryAsyncMixin(ports.QueryAPI):
    """Coroutine twins of the query API's methods (see :func:`run_in_worker`)."""

    async def acount_events(
        self,
        *,
        session_ids: Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        providers: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        correlation_id: str | None = None,
    ) -> int:
        """Async twin of :meth:`count_events`: same arguments, result and errors."""
        return await run_in_worker(
            self.count_events,
            session_ids=session_ids,
            run_ids=run_ids,
            types=types,
            providers=providers,
            since=since,
            until=until,
            correlation_id=correlation_id,
        )

    async def aexport_session(
        self, session_id: str, *, include_artifacts: bool = False
    ) -> dict[str, Any]:
        """Async twin of :meth:`export_session`: same arguments, result and errors."""
        return await run_in_worker(
            self.export_session, session_id, include_artifacts=include_artifacts
        )

    async def aget_cost_summary(
        self,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        pricing_table: dict[str, Any] | None = None,
    ) -> CostSummary:
        """Async twin of :meth:`get_cost_summary`: same arguments, result and errors."""
        return await run_in_worker(
            self.get_cost_summary,
            session_id=session_id,
            agent_id=agent_id,
            provider=provider,
            since=since,
            until=until,
            pricing_table=pricing_table,
        )

    async def aget_session_stats(self, session_id: str) -> dict[str, Any]:
        """Async twin of :meth:`get_session_stats`: same arguments, result and errors."""
        return await run_in_worker(self.get_session_stats, session_id)

    async def aget_usage_summary(
        self,
        *,
        session_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> UsageSummary:
        """Async twin of :meth:`get_usage_summary`: same arguments, result and errors."""
        return await run_in_worker(
            self.get_usage_summary,
            session_id=session_id,
            provider=provider,
            since=since,
            until=until,
        )

    async def asearch_events(
        self,
        *,
        session_ids: Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        providers: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        correlation_id: str | None = None,
        order_by: str = "sequence_asc",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> EventPage:
        """Async twin of :meth:`search_events`: same arguments, result and errors."""
        return await run_in_worker(
            self.search_events,
            session_ids=session_ids,
            run_ids=run_ids,
            types=types,
            providers=providers,
            since=since,
            until=until,
            correlation_id=correlation_id,
            order_by=order_by,
            limit=limit,
            cursor=cursor,
        )

    async def asearch_runs(
        self,
        *,
        session_id: str | None = None,
        provider: str | None = None,
        status: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        min_tokens: int | None = None,
        order_by: str = "started_at_desc",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RunPage:
        """Async twin of :meth:`search_runs`: same arguments, result and errors."""
        return await run_in_worker(
            self.search_runs,
            session_id=session_id,
            provider=provider,
            status=status,
            started_after=started_after,
            started_before=started_before,
            min_tokens=min_tokens,
            order_by=order_by,
            limit=limit,
            cursor=cursor,
        )

    async def asearch_sessions(
        self,
        *,
        agent_id: str | None = None,
        status: str | Sequence[str] | None = None,
        provider: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        include_deleted: bool = False,
        order_by: str = "updated_at_desc",
        limit: int | None = None,
        cursor: str | None = None,
        with_total: bool = True,
    ) -> SessionPage:
        """Async twin of :meth:`search_sessions`: same arguments, result and errors."""
        return await run_in_worker(
            self.search_sessions,
            agent_id=agent_id,
            status=status,
            provider=provider,
            tags=tags,
            created_after=created_after,
            created_before=created_before,
            include_deleted=include_deleted,
            order_by=order_by,
            limit=limit,
            cursor=cursor,
            with_total=with_total,
        )

    async def asearch_text(
        self,
        q: str,
        *,
        agent_id: str | None = None,
        session_ids: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TextPage:
        """Async twin of :meth:`search_text`: same arguments, result and errors."""
        return await run_in_worker(
            self.search_text,
            q,
            agent_id=agent_id,
            session_ids=session_ids,
            types=types,
            since=since,
            until=until,
            include_deleted=include_deleted,
            limit=limit,
            cursor=cursor,
        )


class MaintenanceAsyncMixin(ports.Maintenance):
    """Coroutine twins of the maintenance service's methods (see :func:`run_in_worker`)."""

    async def aclean_orphaned_artifacts(
        self, *, dry_run: bool = False, batch_size: int = 100
    ) -> int:
        """Async twin of :meth:`clean_orphaned_artifacts`: same arguments, result and errors."""
        return await run_in_worker(
            self.clean_orphaned_artifacts, dry_run=dry_run, batch_size=batch_size
        )

    async def aclean_orphaned_sequences(
        self, *, dry_run: bool = False, batch_size: int = 100
    ) -> int:
        """Async twin of :meth:`clean_orphaned_sequences`: same arguments, result and errors."""
        return await run_in_worker(
            self.clean_orphaned_sequences, dry_run=dry_run, batch_size=batch_size
        )

    async def aexecute(
        self, policy: RetentionPolicy, *, dry_run: bool = False, lock: MaintenanceLock | None = None
    ) -> MaintenanceReport:
        """Async twin of :meth:`execute`: same arguments, result and errors."""
        return await run_in_worker(self.execute, policy, dry_run=dry_run, lock=lock)

    async def ahard_delete_expired_sessions(
        self, policy: RetentionPolicy, *, dry_run: bool = False
    ) -> int:
        """Async twin of :meth:`hard_delete_expired_sessions`: same arguments, result and errors."""
        return await run_in_worker(self.hard_delete_expired_sessions, policy, dry_run=dry_run)

    async def ahealth_check(self) -> list[str]:
        """Async twin of :meth:`health_check`: same arguments, result and errors."""
        return await run_in_worker(self.health_check)

    async def aprune_events(self, policy: RetentionPolicy, *, dry_run: bool = False) -> int:
        """Async twin of :meth:`prune_events`: same arguments, result and errors."""
        return await run_in_worker(self.prune_events, policy, dry_run=dry_run)

    async def aprune_session_events(
        self, session_id: str, policy: RetentionPolicy, *, dry_run: bool = False
    ) -> int:
        """Async twin of :meth:`prune_session_events`: same arguments, result and errors."""
        return await run_in_worker(self.prune_session_events, session_id, policy, dry_run=dry_run)

    async def arestore(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        dry_run: bool = False,
        batch_size: int = 1000,
    ) -> RestoreReport:
        """Async twin of :meth:`restore`: same arguments, result and errors."""
        return await run_in_worker(self.restore, paths, dry_run=dry_run, batch_size=batch_size)

    async def asoft_delete_expired_sessions(
        self, policy: RetentionPolicy, *, dry_run: bool = False
    ) -> int:
        """Async twin of :meth:`soft_delete_expired_sessions`: same arguments, result and errors."""
        return await run_in_worker(self.soft_delete_expired_sessions, policy, dry_run=dry_run)

    if TYPE_CHECKING:  # beyond the Protocol (or wider than it): declared for the twins above

        def clean_orphaned_artifacts(
            self, *, dry_run: bool = False, batch_size: int = 100
        ) -> int: ...

        def execute(
            self,
            policy: RetentionPolicy,
            *,
            dry_run: bool = False,
            lock: MaintenanceLock | None = None,
        ) -> MaintenanceReport: ...

        def clean_orphaned_sequences(
            self, *, dry_run: bool = False, batch_size: int = 100
        ) -> int: ...

        def prune_events(self, policy: RetentionPolicy, *, dry_run: bool = False) -> int: ...
