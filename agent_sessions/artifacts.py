"""The ArtifactRegistry on the Django ORM's database connections.

:class:`DjangoArtifactRegistry` indexes artifacts kept elsewhere (S3, a local
directory…) in ``asm_artifacts``; it follows the database routers unless given
a ``using`` alias. Writes go through :func:`agent_sessions.db.run_write`, reads
through :func:`agent_sessions.db.run_read`, like the store's.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, Sum

from agent_sessions import models as m
from agent_sessions.aio import ArtifactRegistryAsyncMixin
from agent_sessions.db import check_alias, db_for_read, db_for_write, run_read, run_write
from agent_sessions.errors import ValidationError
from agent_sessions.validation import (
    BIGINT_MAX,
    check_id,
    check_int,
    check_json,
    check_varchar,
    new_artifact_id,
    utcnow,
)

__all__ = ["DjangoArtifactRegistry"]


_ARTIFACT_FIELDS = (
    "id",
    "session_id",
    "run_id",
    "key",
    "content_type",
    "byte_size",
    "checksum_sha256",
    "storage_backend",
    "storage_ref",
    "metadata",
    "created_at",
    "deleted_at",
)


class DjangoArtifactRegistry(ArtifactRegistryAsyncMixin):
    """The :class:`~agent_sessions.ports.ArtifactRegistry` on a Django database.

    Artifacts are returned as dicts of their ``asm_artifacts`` columns. A
    method without a docstring here is documented once, on the Protocol
    (``inspect.getdoc`` and ``help()`` find it there).
    Soft-deleted artifacts are invisible to every read, but their key stays
    taken (registering it again is a ValidationError), as in ASM.

    Args:
        using: Database alias to use; None follows the database routers.
        consistent: With the routers, read from the write database too (see
            :class:`~agent_sessions.store.DjangoSessionStore`).
    """

    def __init__(self, using: str | None = None, *, consistent: bool = False) -> None:
        self.using = check_alias(using)
        self.consistent = consistent

    def register(
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
        """Record an artifact and return it as a dict.

        Args:
            key: Unique key (e.g. a storage path).
            byte_size: Size in bytes (≥ 0).
            checksum_sha256: The content's SHA-256 (hex).
            storage_backend: Where the content lives (``s3``, ``local``…).
            storage_ref: The backend's reference to it.
            session_id: The session it belongs to, if any.
            run_id: The run it belongs to, if any.
            content_type: MIME type.
            metadata: JSON object.
            id: The artifact id; generated (``art_…``) when None.

        Returns:
            The stored artifact's columns.

        Raises:
            ValidationError: the key (or id) is already registered, or a value is invalid.
        """
        row = m.Artifact(
            id=check_id(id, "id") if id is not None else new_artifact_id(),
            session_id=check_id(session_id, "session_id", required=False),
            run_id=check_id(run_id, "run_id", required=False),
            key=check_id(key, "key"),
            content_type=check_varchar(content_type, "content_type"),
            byte_size=check_int(byte_size, "byte_size", minimum=0, maximum=BIGINT_MAX),
            checksum_sha256=check_varchar(checksum_sha256, "checksum_sha256", required=True),
            storage_backend=check_varchar(storage_backend, "storage_backend", required=True),
            storage_ref=check_varchar(storage_ref, "storage_ref", required=True),
            metadata=check_json(
                {} if metadata is None else metadata, "metadata", require_object=True
            ),
            created_at=utcnow(),
            deleted_at=None,
        )
        alias = db_for_write(self.using, m.Artifact)

        def work(connection: BaseDatabaseWrapper) -> None:
            artifacts = m.Artifact.objects.using(alias)
            # A key stays taken while its row exists, soft-deleted or not (ASM's
            # unique index): registering never deletes anything.
            taken = artifacts.filter(key=row.key).exists()
            if taken or artifacts.filter(id=row.id).exists():
                field = "key" if taken else "id"
                raise ValidationError(
                    "validation_error",
                    f"an artifact with this {field} is already registered: {getattr(row, field)!r}",
                    {"key": row.key, "id": row.id},
                    field=field,
                )
            try:
                with transaction.atomic(using=alias):
                    row.save(using=alias, force_insert=True)
            except IntegrityError as exc:
                # A concurrent registration of the same key won the race.
                raise ValidationError(
                    "validation_error",
                    f"an artifact with this key is already registered: {row.key!r}",
                    {"key": row.key, "id": row.id, "cause": str(exc)},
                    field="key",
                ) from exc

        # Not retried on a lost connection: a registration that did commit
        # would then be refused as a duplicate key.
        run_write(alias, "register_artifact", work, retry_safe=False)
        return {name: getattr(row, name) for name in _ARTIFACT_FIELDS}

    def get_by_key(self, key: str) -> dict[str, Any] | None:
        key = check_id(key, "key")
        live = self._live()
        artifact: dict[str, Any] | None = run_read(
            live.db,
            "get_artifact",
            lambda _c: live.filter(key=key).values(*_ARTIFACT_FIELDS).first(),
        )
        return artifact

    def list_by_session(self, session_id: str) -> list[dict[str, Any]]:
        session_id = check_id(session_id, "session_id")
        live = self._live()
        return run_read(
            live.db,
            "list_artifacts",
            lambda _c: list(
                live.filter(session_id=session_id)
                .order_by("created_at", "id")
                .values(*_ARTIFACT_FIELDS)
            ),
        )

    def session_stats(self, session_id: str) -> dict[str, int]:
        session_id = check_id(session_id, "session_id")
        live = self._live()
        totals = run_read(
            live.db,
            "artifact_stats",
            lambda _c: live.filter(session_id=session_id).aggregate(
                artifact_count=Count("id"), total_bytes=Sum("byte_size")
            ),
        )
        return {
            "artifact_count": int(totals["artifact_count"] or 0),
            "total_bytes": int(totals["total_bytes"] or 0),
        }

    def delete(self, key: str) -> None:
        key = check_id(key, "key")
        alias = db_for_write(self.using, m.Artifact)
        now = utcnow()
        run_write(
            alias,
            "delete_artifact",
            lambda _c: (
                m.Artifact.objects.using(alias)
                .filter(key=key, deleted_at__isnull=True)
                .update(deleted_at=now)
            ),
        )

    def _live(self) -> Any:
        return m.Artifact.objects.using(
            db_for_read(self.using, m.Artifact, consistent=self.consistent)
        ).filter(deleted_at__isnull=True)
