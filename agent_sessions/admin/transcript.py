"""Event payloads read as a conversation: messages, tool calls and results, errors, usage.

Events reach ``asm_events`` in several shapes: plain ASM events (``content``,
``role``, ``tool_name``, ``tool_output``, ``error_message``… in ``data``), and
the items the framework adapters store whole — OpenAI Agents SDK items in
``data["item"]``, LangChain messages in ``data["message"]``, Google ADK events
in ``data["adk_event"]``. :func:`blocks_for` turns any of them into a list of
:class:`Block` s (what a reader sees), and :func:`pair_tool_calls` links each
tool result to the call it answers. The payloads given here are previews
(:mod:`agent_sessions.admin.previews`): any string may end in ``…``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_sessions.admin.previews import one_line

__all__ = [
    "Block",
    "blocks_for",
    "pair_tool_calls",
    "source_of",
    "tokens_of",
]

#: Longest text shown for one block (the event page has the rest).
TEXT_LIMIT = 3000
#: Longest rendering of tool arguments.
ARGS_LIMIT = 600

_ERROR_TYPES = frozenset({"error_occurred", "run_failed", "session_failed"})
_USAGE_TYPES = frozenset({"token_usage_updated", "turn_completed"})
_APPROVAL_TYPES = frozenset(
    {"tool_approval_requested", "tool_approval_granted", "tool_approval_denied"}
)
_CALL_ID_KEYS = ("tool_call_id", "call_id", "tool_use_id", "id")


@dataclass
class Block:
    """One thing an event says, ready for the transcript.

    Attributes:
        kind: ``message``, ``tool_call``, ``tool_result``, ``error``,
            ``policy``, ``usage``, ``approval`` or ``note``.
        role: Who speaks, for messages (``user``, ``assistant``, ``system``…).
        text: The text, newlines kept (may end in ``…`` when cut).
        tool_name: The tool of a call or result.
        call_id: The id tying a call to its result, when the payload has one.
        is_error: A failed tool result.
        pair: For a call, its result; for a result, its call (set by
            :func:`pair_tool_calls`) as ``{"sequence_number", "url", "failed"}``.
    """

    kind: str
    role: str = ""
    text: str = ""
    tool_name: str = ""
    call_id: str = ""
    is_error: bool = False
    pair: dict[str, Any] | None = None
    paired: bool = field(default=False, repr=False)


def _cut(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any) -> str:
    """The readable text of a content value: a string, a list of parts, or a parts object."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        pieces = [_part_text(part) for part in value]
        return "\n".join(piece for piece in pieces if piece)
    if isinstance(value, Mapping):
        if "parts" in value:
            return _text(value["parts"])
        if isinstance(value.get("text"), str):
            return str(value["text"])
    return one_line(value, ARGS_LIMIT)


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Mapping):
        for key in ("text", "refusal", "transcript"):
            if isinstance(part.get(key), str):
                return str(part[key])
        kind = part.get("type")
        if isinstance(kind, str):
            return f"[{kind}]"
    return one_line(part, ARGS_LIMIT)


def _args(value: Any) -> str:
    """Tool arguments in one compact line (JSON-encoded strings are decoded first)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return _cut(value, ARGS_LIMIT)
    if value is None or value == {}:
        return ""
    return one_line(value, ARGS_LIMIT)


def _output(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str | list):
        return _cut(_text(value))
    return _cut(json.dumps(value, ensure_ascii=False, indent=1, default=str))


def _first_str(data: Mapping[str, Any], keys: Iterable[str]) -> str:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def source_of(data: Any) -> str:
    """Which writer shaped ``data``: ``openai-agents``, ``langchain``, ``adk`` or ``asm``."""
    if isinstance(data, Mapping):
        if isinstance(data.get("item"), Mapping):
            return "openai-agents"
        if isinstance(data.get("message"), Mapping) and "type" in data["message"]:
            return "langchain"
        if isinstance(data.get("adk_event"), Mapping):
            return "adk"
    return "asm"


def _number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def tokens_of(data: Any) -> dict[str, int] | None:
    """Token counts an event reports, as ``{"input_tokens", "output_tokens"}``, or None.

    Reads ASM's ``input_tokens``/``output_tokens`` (also under ``usage``),
    LangChain's ``usage_metadata`` and ADK's ``usage_metadata``
    (``prompt_token_count``/``candidates_token_count``).
    """
    if not isinstance(data, Mapping):
        return None
    candidates: list[tuple[Any, str, str]] = [
        (data, "input_tokens", "output_tokens"),
        (data.get("usage"), "input_tokens", "output_tokens"),
        (data.get("usage"), "prompt_tokens", "completion_tokens"),
    ]
    message = data.get("message")
    if isinstance(message, Mapping) and isinstance(message.get("data"), Mapping):
        candidates.append((message["data"].get("usage_metadata"), "input_tokens", "output_tokens"))
    adk = data.get("adk_event")
    if isinstance(adk, Mapping):
        candidates.append(
            (adk.get("usage_metadata"), "prompt_token_count", "candidates_token_count")
        )
    for holder, input_key, output_key in candidates:
        if not isinstance(holder, Mapping):
            continue
        tokens_in, tokens_out = _number(holder.get(input_key)), _number(holder.get(output_key))
        if tokens_in is not None or tokens_out is not None:
            return {"input_tokens": tokens_in or 0, "output_tokens": tokens_out or 0}
    return None


# --------------------------------------------------------------------------- shapes


def _openai_blocks(item: Mapping[str, Any]) -> list[Block]:
    kind = str(item.get("type") or "message")
    if kind == "message":
        return [
            Block(
                "message", role=str(item.get("role") or ""), text=_cut(_text(item.get("content")))
            )
        ]
    call_id = _first_str(item, ("call_id", "id"))
    if kind.endswith("_call_output"):
        return [Block("tool_result", call_id=call_id, text=_output(item.get("output")))]
    if kind.endswith("_call"):
        name = str(item.get("name") or kind)
        args = item.get("arguments", item.get("action"))
        return [Block("tool_call", tool_name=name, call_id=call_id, text=_args(args))]
    if kind == "reasoning":
        return [Block("note", role="reasoning", text=_cut(_text(item.get("summary"))))]
    if kind.startswith("mcp_approval"):
        return [
            Block(
                "approval",
                tool_name=str(item.get("name") or ""),
                text=_args(item.get("arguments")) or one_line(item),
            )
        ]
    return [Block("note", role=kind, text=one_line(item, ARGS_LIMIT))]


_LANGCHAIN_ROLES = {"human": "user", "ai": "assistant", "system": "system", "chat": "chat"}


def _langchain_blocks(message: Mapping[str, Any]) -> list[Block]:
    kind = str(message.get("type") or "")
    body = message.get("data") if isinstance(message.get("data"), Mapping) else {}
    assert isinstance(body, Mapping)
    if kind in ("tool", "function"):
        return [
            Block(
                "tool_result",
                tool_name=str(body.get("name") or ""),
                call_id=str(body.get("tool_call_id") or ""),
                is_error=body.get("status") == "error",
                text=_output(body.get("content")),
            )
        ]
    blocks: list[Block] = []
    text = _text(body.get("content"))
    if text or not body.get("tool_calls"):
        role = _LANGCHAIN_ROLES.get(kind, kind or str(body.get("role") or ""))
        blocks.append(Block("message", role=role, text=_cut(text)))
    for call in body.get("tool_calls") or ():
        if isinstance(call, Mapping):
            blocks.append(_call_block(call))
    return blocks


def _call_block(call: Mapping[str, Any]) -> Block:
    """A tool call given as ``{"name", "id", "args"}`` (LangChain, ADK)."""
    return Block(
        "tool_call",
        tool_name=str(call.get("name") or ""),
        call_id=str(call.get("id") or ""),
        text=_args(call.get("args")),
    )


def _adk_blocks(adk_event: Mapping[str, Any]) -> list[Block]:
    content = adk_event.get("content")
    blocks: list[Block] = []
    author = str(adk_event.get("author") or "")
    if isinstance(content, Mapping):
        role = str(content.get("role") or author)
        role = "assistant" if role == "model" else role
        for part in content.get("parts") or ():
            if not isinstance(part, Mapping):
                continue
            call, response = part.get("function_call"), part.get("function_response")
            if isinstance(call, Mapping):
                blocks.append(_call_block(call))
            elif isinstance(response, Mapping):
                result = response.get("response")
                failed = isinstance(result, Mapping) and "error" in result
                blocks.append(
                    Block(
                        "tool_result",
                        tool_name=str(response.get("name") or ""),
                        call_id=str(response.get("id") or ""),
                        is_error=failed,
                        text=_output(result),
                    )
                )
            elif isinstance(part.get("text"), str):
                kind = "note" if part.get("thought") else "message"
                blocks.append(Block(kind, role=role, text=_cut(str(part["text"]))))
            else:
                blocks.append(Block("note", role=role, text=one_line(part, ARGS_LIMIT)))
    message = adk_event.get("error_message") or adk_event.get("error_code")
    if message:
        blocks.append(Block("error", text=_cut(str(message))))
    return blocks


def _asm_blocks(event_type: str, data: Mapping[str, Any]) -> list[Block]:
    if event_type.startswith("message_"):
        role = _first_str(data, ("role",)) or (
            "user" if event_type == "message_sent" else "assistant"
        )
        value = data.get("content", data.get("delta", data.get("text")))
        text = _text(value) if value is not None else one_line(data, ARGS_LIMIT)
        return [Block("message", role=role, text=_cut(text))]
    call_id = _first_str(data, _CALL_ID_KEYS)
    name = _first_str(data, ("tool_name", "name", "tool"))
    if event_type == "tool_call_started":
        args = data.get("tool_input", data.get("input", data.get("arguments")))
        return [Block("tool_call", tool_name=name, call_id=call_id, text=_args(args))]
    if event_type in ("tool_call_completed", "tool_call_failed"):
        failed = event_type == "tool_call_failed"
        value = data.get("tool_output", data.get("output", data.get("result")))
        if failed:
            error = _first_str(data, ("error_message", "error"))
            text = error + ("\n" if error and value is not None else "") + _output(value)
        else:
            text = _output(value)
        return [Block("tool_result", tool_name=name, call_id=call_id, is_error=failed, text=text)]
    if event_type in _ERROR_TYPES:
        text = _first_str(data, ("error_message", "message", "error", "reason"))
        detail = data.get("provider_error")
        if detail is not None:
            text += ("\n" if text else "") + one_line(detail, ARGS_LIMIT)
        return [Block("error", text=_cut(text or one_line(data, ARGS_LIMIT)))]
    if event_type == "policy_violation":
        head = " · ".join(
            part for part in (_first_str(data, ("policy",)), _first_str(data, ("kind",))) if part
        )
        details = data.get("details")
        text = head + (("\n" + one_line(details, ARGS_LIMIT)) if details is not None else "")
        return [Block("policy", text=_cut(text or one_line(data, ARGS_LIMIT)))]
    if event_type in _APPROVAL_TYPES:
        policy = _first_str(data, ("policy_name", "reason"))
        return [Block("approval", tool_name=name, text=policy)]
    if event_type in _USAGE_TYPES:
        return [Block("usage", text="" if tokens_of(data) else one_line(data, ARGS_LIMIT))]
    return [Block("note", text=one_line(data, ARGS_LIMIT) if data else "")]


def blocks_for(event_type: str, data: Any) -> list[Block]:
    """What an event of ``event_type`` with payload (preview) ``data`` says.

    Args:
        event_type: The stored type string (unknown types are read like any other).
        data: The event's ``data`` (or its preview).

    Returns:
        One or more blocks; adapter items may hold several (an AI message with
        its tool calls, an ADK event with text and function calls).
    """
    if not isinstance(data, Mapping):
        return [Block("note", text=one_line(data, ARGS_LIMIT))]
    source = source_of(data)
    if source == "openai-agents":
        blocks = _openai_blocks(data["item"])
    elif source == "langchain":
        blocks = _langchain_blocks(data["message"])
    elif source == "adk":
        blocks = _adk_blocks(data["adk_event"])
    else:
        blocks = _asm_blocks(event_type, data)
    if event_type == "tool_call_failed":
        for block in blocks:
            if block.kind == "tool_result":
                block.is_error = True
    return blocks or [Block("note", text=one_line(data, ARGS_LIMIT))]


def pair_tool_calls(entries: Iterable[tuple[Mapping[str, Any], list[Block]]]) -> None:
    """Link each tool result to the call it answers (in place).

    A result pairs with the call of the same ``call_id``; without ids, with
    the oldest unanswered call of the same tool in the same run (the order in
    which agents await their tools).

    Args:
        entries: ``(ref, blocks)`` in sequence order, ``ref`` holding the
            event's ``sequence_number``, ``url`` and ``run_id``.
    """
    by_id: dict[str, tuple[Mapping[str, Any], Block]] = {}
    open_calls: list[tuple[Mapping[str, Any], Block]] = []
    for ref, blocks in entries:
        for block in blocks:
            if block.kind == "tool_call":
                if block.call_id:
                    by_id[block.call_id] = (ref, block)
                open_calls.append((ref, block))
            elif block.kind == "tool_result":
                match = by_id.pop(block.call_id, None) if block.call_id else None
                if match is None:
                    match = next(
                        (
                            (call_ref, call)
                            for call_ref, call in open_calls
                            if not call.paired
                            and call_ref.get("run_id") == ref.get("run_id")
                            and (not block.tool_name or call.tool_name == block.tool_name)
                            and not (block.call_id and call.call_id)
                        ),
                        None,
                    )
                if match is None:
                    continue
                call_ref, call = match
                call.paired = True
                if not block.tool_name:
                    block.tool_name = call.tool_name
                call.pair = {
                    "sequence_number": ref["sequence_number"],
                    "url": ref["url"],
                    "failed": block.is_error,
                    "elapsed": _elapsed(call_ref, ref),
                }
                block.pair = {
                    "sequence_number": call_ref["sequence_number"],
                    "url": call_ref["url"],
                    "failed": False,
                    "elapsed": None,
                }


def _elapsed(first: Mapping[str, Any], second: Mapping[str, Any]) -> float | None:
    start, end = first.get("timestamp"), second.get("timestamp")
    if start is None or end is None:
        return None
    return float((end - start).total_seconds())


def summary_line(blocks: Iterable[Block], length: int = 160) -> str:
    """One line saying what ``blocks`` say, for the session page's timeline."""
    parts = []
    for block in blocks:
        if block.kind == "message":
            parts.append(f"{block.role}: {block.text}" if block.role else block.text)
        elif block.kind == "tool_call":
            parts.append(f"→ {block.tool_name}({block.text})")
        elif block.kind == "tool_result":
            mark = "✗" if block.is_error else "←"
            parts.append(f"{mark} {block.tool_name}: {block.text}".replace(" : ", ": "))
        elif block.kind in ("error", "policy"):
            parts.append(f"{block.kind}: {block.text}")
        elif block.kind == "approval":
            parts.append(f"approval {block.tool_name} {block.text}".strip())
        elif block.text:
            parts.append(block.text)
    return one_line(" · ".join(part for part in parts if part), length)
