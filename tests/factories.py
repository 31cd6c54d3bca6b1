"""factory-boy factories for the five asm_* models (rows written through the ORM)."""

from __future__ import annotations

import datetime as dt
import uuid

import factory

from agent_sessions import models

UTC = dt.UTC


def _hex_id(prefix: str) -> factory.LazyFunction:
    return factory.LazyFunction(lambda: f"{prefix}{uuid.uuid4().hex}")


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Session

    id = _hex_id("ses_")
    agent_id = factory.Sequence(lambda n: f"agent-{n}")
    status = "pending"
    metadata = factory.LazyFunction(dict)
    context = factory.LazyFunction(dict)
    tags = factory.LazyFunction(list)
    created_at = factory.LazyFunction(_now)
    updated_at = factory.LazyAttribute(lambda o: o.created_at)
    deleted_at = None


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Run

    id = _hex_id("run_")
    session_id = factory.LazyFunction(lambda: SessionFactory().id)
    status = "pending"
    metadata = factory.LazyFunction(dict)
    turn_count = 0
    token_usage = factory.LazyFunction(dict)
    started_at = factory.LazyFunction(_now)
    provider_metadata = factory.LazyFunction(dict)


class EventFactory(factory.django.DjangoModelFactory):
    """An event row written directly (bypassing the store's sequence counter)."""

    class Meta:
        model = models.Event

    id = _hex_id("evt_")
    type = "message_sent"
    timestamp = factory.LazyFunction(_now)
    session_id = factory.LazyFunction(lambda: SessionFactory().id)
    sequence_number = factory.Sequence(lambda n: n + 1)
    data = factory.LazyFunction(dict)
    metadata = factory.LazyFunction(dict)
    schema_version = 1


class SessionSequenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.SessionSequence

    session_id = _hex_id("ses_")
    last_sequence = 0
    updated_at = factory.LazyFunction(_now)


class ArtifactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Artifact

    id = factory.Sequence(lambda n: f"art_{n:016d}")
    session_id = factory.LazyFunction(lambda: SessionFactory().id)
    key = factory.Sequence(lambda n: f"artifacts/{n}.txt")
    content_type = "text/plain"
    byte_size = 42
    checksum_sha256 = "0" * 64
    storage_backend = "local"
    storage_ref = factory.LazyAttribute(lambda o: f"/var/artifacts/{o.key}")
    metadata = factory.LazyFunction(dict)
    created_at = factory.LazyFunction(_now)
