"""Previews of event payloads built from a bounded prefix of their JSON text.

A list or timeline never loads an event's whole ``data``: the database sends
the first :data:`PREVIEW_CHARS` characters of its JSON text
(:class:`~agent_sessions.jsonsql.JSONTextPrefix`), and :func:`parse_prefix`
turns that prefix back into the JSON value it starts, with every value that
was cut short ending in :data:`ELLIPSIS`. A 1 MB tool result thus costs a page
a few kilobytes.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet

from agent_sessions.jsonsql import JSONStoredSize, JSONTextPrefix

#: Characters of ``data`` read for a conversation entry.
PREVIEW_CHARS = 4000
#: Payloads stored in more bytes than this are not read at all for a preview:
#: reading a TOASTed value means fetching all of it, so a page of fifty 1 MB
#: events would cost fifty megabytes of database work.
PREVIEW_MAX_STORED_BYTES = 64 * 1024
#: Characters of ``data`` read for a one-line timeline preview.
LINE_PREVIEW_CHARS = 400
#: Appended to a value the prefix cut short.
ELLIPSIS = "…"
#: Deeper nesting than this is shown as cut (keeps the parser's recursion bounded).
MAX_DEPTH = 48

__all__ = [
    "ELLIPSIS",
    "PREVIEW_CHARS",
    "PREVIEW_MAX_STORED_BYTES",
    "is_unread",
    "one_line",
    "parse_prefix",
    "size_label",
    "with_data_prefix",
]


def with_data_prefix(queryset: QuerySet[Any], length: int = PREVIEW_CHARS) -> QuerySet[Any]:
    """``queryset`` of events annotated with ``data_prefix`` and ``data_size``.

    ``data_prefix`` is the first ``length`` characters of ``data``'s JSON
    text, or NULL when ``data`` is stored in more than
    :data:`PREVIEW_MAX_STORED_BYTES`; ``data_size`` is the stored size.
    """
    annotated: QuerySet[Any] = queryset.annotate(
        data_prefix=JSONTextPrefix("data", length, PREVIEW_MAX_STORED_BYTES),
        data_size=JSONStoredSize("data"),
    )
    return annotated


def is_unread(row: Any) -> bool:
    """True when ``row``'s payload was too large to preview (see :func:`with_data_prefix`)."""
    size = getattr(row, "data_size", None)
    if getattr(row, "data_prefix", None) is not None or not isinstance(size, int):
        return False
    return size > PREVIEW_MAX_STORED_BYTES


def size_label(size: int | None) -> str:
    """A stored size for people: ``"1.2 MB"``, ``"80 KB"``."""
    if not size:
        return "0 B"
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    if size >= 1_000:
        return f"{size / 1_000:.0f} KB"
    return f"{size} B"


class _Cut(Exception):
    """The text ended inside a value."""


class _PrefixParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.cut = False

    def skip_space(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        self.pos = pos
        if pos >= len(text):
            raise _Cut

    def value(self, depth: int) -> Any:
        self.skip_space()
        char = self.text[self.pos]
        if char == '"':
            return self.string()
        if depth >= MAX_DEPTH:
            raise _Cut
        if char == "{":
            return self.container(depth, {})
        if char == "[":
            return self.container(depth, [])
        return self.scalar()

    def container(self, depth: int, result: Any) -> Any:
        # On a cut, the partial container is returned through _Partial.
        closing = "}" if isinstance(result, dict) else "]"
        self.pos += 1
        try:
            self.skip_space()
            if self.text[self.pos] == closing:
                self.pos += 1
                return result
            while True:
                if isinstance(result, dict):
                    self.skip_space()
                    try:
                        key = self.string()
                    except _Partial:
                        raise _Cut from None  # a cut key: the entry is dropped
                    self.skip_space()
                    if self.text[self.pos] != ":":
                        raise ValueError("expected ':'")
                    self.pos += 1
                    try:
                        result[key] = self.value(depth + 1)
                    except _Partial as partial:
                        result[key] = partial.value
                        raise _Partial(result) from None
                else:
                    try:
                        result.append(self.value(depth + 1))
                    except _Partial as partial:
                        result.append(partial.value)
                        raise _Partial(result) from None
                self.skip_space()
                char = self.text[self.pos]
                self.pos += 1
                if char == closing:
                    return result
                if char != ",":
                    raise ValueError(f"expected ',' or {closing!r}")
        except _Cut:
            raise _Partial(result) from None

    def string(self) -> str:
        text, start = self.text, self.pos
        if text[start] != '"':
            raise ValueError("expected a string")
        pos = start + 1
        while True:
            end = text.find('"', pos)
            if end < 0:
                raise _Partial(self._cut_string(text[start + 1 :]))
            backslashes = 0
            while text[end - 1 - backslashes] == "\\":
                backslashes += 1
            if backslashes % 2 == 0:
                self.pos = end + 1
                return str(json.loads(text[start : end + 1]))
            pos = end + 1

    @staticmethod
    def _cut_string(body: str) -> str:
        # Drop an escape sequence the cut split, then decode what is left.
        for size in range(0, 6):
            candidate = body[: len(body) - size] if size else body
            try:
                return str(json.loads('"' + candidate + '"')) + ELLIPSIS
            except ValueError:
                continue
        return ELLIPSIS

    def scalar(self) -> Any:
        text, pos = self.text, self.pos
        end = pos
        while end < len(text) and text[end] not in ",]} \t\r\n":
            end += 1
        if end >= len(text):
            raise _Cut
        self.pos = end
        return json.loads(text[pos:end])


class _Partial(Exception):
    """The text ended inside a value; ``value`` is what was read of it."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


def parse_prefix(text: str | None) -> tuple[Any, bool]:
    """The JSON value that ``text`` (a possibly cut JSON document) starts.

    Args:
        text: A prefix of a JSON document, or None (SQL NULL).

    Returns:
        ``(value, cut)``: the value with cut strings ending in ``…`` and cut
        containers closed, and whether anything was cut. Text that is not
        JSON at all comes back as the string itself (with ``cut`` True).
    """
    if text is None:
        return {}, False
    try:
        return json.loads(text), False
    except (ValueError, RecursionError):
        pass
    parser = _PrefixParser(text)
    try:
        return parser.value(0), True
    except _Partial as partial:
        return partial.value, True
    except _Cut:
        return ELLIPSIS, True
    except (ValueError, IndexError, RecursionError):
        return text + ELLIPSIS, True


def one_line(value: Any, length: int = 120) -> str:
    """A one-line rendering of a preview value, cut to ``length`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + ELLIPSIS
