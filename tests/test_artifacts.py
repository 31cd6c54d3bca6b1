"""DjangoArtifactRegistry: register, read, stats and soft delete (CONTRACT §5)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agent_sessions import models as m
from agent_sessions.errors import ValidationError
from agent_sessions.ports import ArtifactRegistry
from agent_sessions.store import DjangoArtifactRegistry

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def register(registry: DjangoArtifactRegistry, key: str, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "byte_size": 100,
        "checksum_sha256": "ab" * 32,
        "storage_backend": "local",
        "storage_ref": f"/srv/artifacts/{key}",
        "session_id": "ses_1",
    }
    values.update(fields)
    return registry.register(key=key, **values)


def test_registry_implements_the_artifact_registry_protocol(
    artifact_registry: DjangoArtifactRegistry,
) -> None:
    assert isinstance(artifact_registry, ArtifactRegistry)


def test_register_returns_the_stored_artifact_with_a_generated_id(
    artifact_registry: DjangoArtifactRegistry,
) -> None:
    artifact = register(
        artifact_registry,
        "report.pdf",
        run_id="run_1",
        content_type="application/pdf",
        metadata={"pages": 3},
    )
    assert artifact["id"].startswith("art_")
    assert len(artifact["id"]) == len("art_") + 16
    assert artifact["created_at"].tzinfo is UTC
    assert artifact["deleted_at"] is None
    assert artifact_registry.get_by_key("report.pdf") == artifact


def test_register_keeps_a_given_id(artifact_registry: DjangoArtifactRegistry) -> None:
    assert register(artifact_registry, "a.txt", id="art_mine")["id"] == "art_mine"


def test_register_of_a_taken_key_raises_validation_error(
    artifact_registry: DjangoArtifactRegistry,
) -> None:
    first = register(artifact_registry, "a.txt")
    with pytest.raises(ValidationError) as info:
        register(artifact_registry, "a.txt", byte_size=1)
    assert info.value.details["field"] == "key"
    assert artifact_registry.get_by_key("a.txt") == first


def test_register_of_a_taken_id_raises_validation_error(
    artifact_registry: DjangoArtifactRegistry,
) -> None:
    register(artifact_registry, "a.txt", id="art_same")
    with pytest.raises(ValidationError):
        register(artifact_registry, "b.txt", id="art_same")
    assert artifact_registry.get_by_key("b.txt") is None


@pytest.mark.parametrize(
    "bad",
    [
        {"key": "k" * 256},
        {"key": ""},
        {"byte_size": -1},
        {"byte_size": "100"},
        {"checksum_sha256": "\x00"},
        {"metadata": {"x": float("nan")}},
        {"metadata": ["not", "an", "object"]},
        {"storage_ref": None},
    ],
    ids=[
        "long-key",
        "empty-key",
        "negative-size",
        "string-size",
        "nul-checksum",
        "nan-metadata",
        "list-metadata",
        "missing-ref",
    ],
)
def test_register_refuses_invalid_values_and_writes_nothing(
    artifact_registry: DjangoArtifactRegistry, bad: dict[str, Any]
) -> None:
    key = bad.pop("key", "a.txt")
    with pytest.raises(ValidationError):
        register(artifact_registry, key, **bad)
    assert not m.Artifact.objects.exists()


def test_get_by_key_of_a_missing_key_is_none(artifact_registry: DjangoArtifactRegistry) -> None:
    assert artifact_registry.get_by_key("missing") is None


def test_list_by_session_is_oldest_first(artifact_registry: DjangoArtifactRegistry) -> None:
    first = register(artifact_registry, "1.txt")
    second = register(artifact_registry, "2.txt")
    register(artifact_registry, "other.txt", session_id="ses_2")
    assert artifact_registry.list_by_session("ses_1") == [first, second]


def test_session_stats_count_live_artifacts_and_their_bytes(
    artifact_registry: DjangoArtifactRegistry,
) -> None:
    register(artifact_registry, "1.txt", byte_size=10)
    register(artifact_registry, "2.txt", byte_size=5_000_000_000)
    register(artifact_registry, "gone.txt", byte_size=7)
    artifact_registry.delete("gone.txt")
    assert artifact_registry.session_stats("ses_1") == {
        "artifact_count": 2,
        "total_bytes": 5_000_000_010,
    }
    assert artifact_registry.session_stats("ses_none") == {"artifact_count": 0, "total_bytes": 0}


def test_delete_soft_deletes_and_hides_the_artifact(
    artifact_registry: DjangoArtifactRegistry,
) -> None:
    register(artifact_registry, "a.txt")
    artifact_registry.delete("a.txt")
    assert artifact_registry.get_by_key("a.txt") is None
    assert artifact_registry.list_by_session("ses_1") == []
    assert m.Artifact.objects.get(key="a.txt").deleted_at is not None


def test_delete_is_idempotent(artifact_registry: DjangoArtifactRegistry) -> None:
    register(artifact_registry, "a.txt")
    artifact_registry.delete("a.txt")
    deleted_at = m.Artifact.objects.get(key="a.txt").deleted_at
    artifact_registry.delete("a.txt")
    artifact_registry.delete("never-registered")
    assert m.Artifact.objects.get(key="a.txt").deleted_at == deleted_at


def test_a_soft_deleted_key_stays_taken_and_registering_it_deletes_nothing(
    artifact_registry: DjangoArtifactRegistry,
) -> None:
    # CONTRACT §11: ASM's unique index on key holds soft-deleted rows too.
    first = register(artifact_registry, "a.txt", byte_size=1)
    artifact_registry.delete("a.txt")
    with pytest.raises(ValidationError) as info:
        register(artifact_registry, "a.txt", byte_size=2)
    assert (info.value.code, info.value.field) == ("validation_error", "key")
    [row] = m.Artifact.objects.filter(key="a.txt").values("id", "byte_size", "deleted_at")
    assert (row["id"], row["byte_size"]) == (first["id"], 1)
    assert row["deleted_at"] is not None
