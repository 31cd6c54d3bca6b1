"""Signed keyset cursors: bound to the query kind, the order and the secret key."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import signing

from agent_sessions.errors import ValidationError
from agent_sessions.paging import decode_cursor, encode_cursor
from agent_sessions.query import DjangoQueryAPI
from tests.factories import EventFactory, SessionFactory

POSITION = ["2025-03-01T12:00:00+00:00", "ses_a"]


def invalid_cursor(cursor: Any, kind: str = "sessions", order_by: str = "updated_at_desc") -> str:
    with pytest.raises(ValidationError) as exc:
        decode_cursor(cursor, kind, order_by, 2)
    assert exc.value.field == "cursor"
    return exc.value.code


def test_a_cursor_round_trips_its_position() -> None:
    cursor = encode_cursor("sessions", "updated_at_desc", POSITION)
    assert decode_cursor(cursor, "sessions", "updated_at_desc", 2) == POSITION


def test_a_cursor_is_an_opaque_url_safe_string() -> None:
    cursor = encode_cursor("sessions", "updated_at_desc", POSITION)
    assert "ses_a" not in cursor
    assert all(c.isalnum() or c in "-_:." for c in cursor)


def test_a_tampered_cursor_is_invalid() -> None:
    cursor = encode_cursor("sessions", "updated_at_desc", POSITION)
    flipped = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    assert invalid_cursor(flipped) == "invalid_cursor"


def test_a_forged_unsigned_position_is_invalid() -> None:
    forged = signing.b64_encode(b'["2025-03-01T12:00:00+00:00","ses_a"]').decode()
    assert invalid_cursor(forged) == "invalid_cursor"


def test_a_cursor_of_another_query_kind_is_invalid() -> None:
    cursor = encode_cursor("events", "updated_at_desc", POSITION)
    assert invalid_cursor(cursor) == "invalid_cursor"


def test_a_cursor_of_another_order_is_invalid() -> None:
    cursor = encode_cursor("sessions", "created_at_desc", POSITION)
    assert invalid_cursor(cursor) == "invalid_cursor"


def test_a_cursor_signed_with_another_secret_key_is_invalid(settings: Any) -> None:
    cursor = encode_cursor("sessions", "updated_at_desc", POSITION)
    settings.SECRET_KEY = "another-secret-key-entirely"
    assert invalid_cursor(cursor) == "invalid_cursor"


def test_a_cursor_survives_key_rotation_with_fallbacks(settings: Any) -> None:
    cursor = encode_cursor("sessions", "updated_at_desc", POSITION)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-new-secret-key"
    assert decode_cursor(cursor, "sessions", "updated_at_desc", 2) == POSITION


@pytest.mark.parametrize("cursor", ["", "garbage", "a:b:c", 42, b"bytes", ["x"], "x" * 5000])
def test_malformed_cursors_are_invalid(cursor: Any) -> None:
    assert invalid_cursor(cursor) == "invalid_cursor"


def test_a_position_of_the_wrong_length_is_invalid() -> None:
    cursor = encode_cursor("sessions", "updated_at_desc", ["only-one"])
    assert invalid_cursor(cursor) == "invalid_cursor"


@pytest.mark.django_db
def test_search_refuses_a_cursor_from_another_search(query_api: DjangoQueryAPI) -> None:
    for _ in range(3):
        SessionFactory()
        EventFactory()
    session_cursor = query_api.search_sessions(limit=1).cursor
    with pytest.raises(ValidationError) as exc:
        query_api.search_events(limit=1, cursor=session_cursor)
    assert exc.value.code == "invalid_cursor"


@pytest.mark.django_db
def test_search_refuses_a_cursor_used_with_another_order(query_api: DjangoQueryAPI) -> None:
    for _ in range(3):
        SessionFactory()
    cursor = query_api.search_sessions(limit=1).cursor
    with pytest.raises(ValidationError) as exc:
        query_api.search_sessions(limit=1, cursor=cursor, order_by="created_at_asc")
    assert exc.value.code == "invalid_cursor"


@pytest.mark.django_db
def test_search_refuses_a_signed_cursor_holding_values_of_the_wrong_kind(
    query_api: DjangoQueryAPI,
) -> None:
    cursor = encode_cursor("sessions", "updated_at_desc", [12, "ses_a"])
    with pytest.raises(ValidationError) as exc:
        query_api.search_sessions(cursor=cursor)
    assert exc.value.code == "invalid_cursor"
