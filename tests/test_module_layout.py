"""Names that moved between modules stay importable where the contract names them."""

from __future__ import annotations

from agent_sessions import artifacts, cascade, store


def test_artifact_registry_lives_in_artifacts_and_is_importable_from_store() -> None:
    assert store.DjangoArtifactRegistry is artifacts.DjangoArtifactRegistry
    assert artifacts.DjangoArtifactRegistry.__module__ == "agent_sessions.artifacts"


def test_delete_sessions_cascade_lives_in_cascade_and_is_importable_from_store() -> None:
    assert store.delete_sessions_cascade is cascade.delete_sessions_cascade
    assert cascade.delete_sessions_cascade.__module__ == "agent_sessions.cascade"
