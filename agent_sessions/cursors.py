"""Signed keyset cursors for the QueryAPI's paging.

A cursor holds the sort key of the last row of a page (for example its
``updated_at`` and ``id``), signed with ``SECRET_KEY`` by
:mod:`django.core.signing`. The signing salt names the query kind and the
``order_by``, so a cursor made for ``search_sessions`` ordered by
``updated_at_desc`` is refused by ``search_events`` or by another order:
anything malformed, tampered with or mismatched raises
``ValidationError("invalid_cursor")``. Rotating ``SECRET_KEY`` (with
``SECRET_KEY_FALLBACKS``) follows Django's usual rules.

Cursors are opaque to callers; their content is not a stable format.
"""

from __future__ import annotations

from typing import Any

from django.core import signing

from agent_sessions.errors import ValidationError

__all__ = ["MAX_CURSOR_LENGTH", "decode_cursor", "encode_cursor"]

#: Longer strings are refused before any decoding work (a real cursor is ~100 characters).
MAX_CURSOR_LENGTH = 2048

_SALT_PREFIX = "agent_sessions.query.cursor"


def _salt(kind: str, order_by: str) -> str:
    return f"{_SALT_PREFIX}:{kind}:{order_by}"


def encode_cursor(kind: str, order_by: str, position: list[Any]) -> str:
    """Sign ``position`` (JSON-serialisable sort-key values) for one query kind and order.

    Args:
        kind: The query, e.g. ``"sessions"``, ``"runs"``, ``"events"``.
        order_by: The ``order_by`` the page was read with.
        position: The sort key of the last row returned.

    Returns:
        An opaque, URL-safe string.
    """
    return signing.dumps(position, salt=_salt(kind, order_by), compress=True)


def decode_cursor(cursor: object, kind: str, order_by: str, length: int) -> list[Any]:
    """Verify a cursor and return the position it holds.

    Args:
        cursor: The cursor a caller passed back.
        kind: The query it must belong to.
        order_by: The ``order_by`` it must have been made with.
        length: How many sort-key values the position must hold.

    Returns:
        The position (a list of ``length`` JSON values).

    Raises:
        ValidationError: ``invalid_cursor`` when the cursor is not a string,
            is malformed, fails the signature check (tampered, another secret
            key, another kind or order), or holds an unexpected position.
    """
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise _invalid(f"cursor must be a string returned by a previous {kind} page")
    try:
        position = signing.loads(cursor, salt=_salt(kind, order_by))
    except (signing.BadSignature, ValueError, UnicodeError):
        raise _invalid(
            f"cursor is malformed, was tampered with, or does not belong to "
            f"{kind} ordered by {order_by!r}"
        ) from None
    if not isinstance(position, list) or len(position) != length:
        raise _invalid("cursor holds an unexpected position")
    return position


def _invalid(message: str) -> ValidationError:
    return ValidationError("invalid_cursor", message, field="cursor")
