"""Signed keyset cursors: now part of :mod:`agent_sessions.paging`, importable here too."""

from __future__ import annotations

from agent_sessions.paging import MAX_CURSOR_LENGTH, decode_cursor, encode_cursor

__all__ = ["MAX_CURSOR_LENGTH", "decode_cursor", "encode_cursor"]
