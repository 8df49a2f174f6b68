"""OpenAI Responses API (`/v1/responses`).

The section goes into `instructions`, never into `input`: the API does not carry `instructions`
over from a `previous_response_id`, so adding it to every request is exactly right, and `input`
(which may hold reasoning items, encrypted content and item references) stays byte-for-byte the
client's. A stream ends with `response.completed` (or `.incomplete` / `.failed`) carrying the
whole response, and has no `[DONE]`; only when that event never arrives is the answer rebuilt
from the item and delta events.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from core.formats.base import Message, ToolCall, Usage, as_list, int_or_none, text_of
from core.formats.chat import json_text, openai_error_body
from core.formats.sse import iter_events, json_data

__all__ = ["RESPONSES", "ResponsesFormat"]

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_STARTED = frozenset({"response.created", "response.in_progress", "response.queued"})
_TEXT_TYPES = frozenset({"input_text", "output_text", "text"})
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_DELTA_FIELDS = {"response.output_text.delta": "text", "response.refusal.delta": "refusal"}


def _content_text(content: Any) -> str:
    text = text_of(content, _TEXT_TYPES)
    if text or not isinstance(content, list):
        return text
    refusals = [p.get("refusal") for p in content if isinstance(p, dict)]
    return "\n".join(r for r in refusals if isinstance(r, str))


def _add_item(out: list[Message], item: Any) -> None:
    """Append one input or output item; a function call joins the assistant turn before it."""
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    if kind is None or kind == "message":
        role = item.get("role")
        role = _ROLES.get(role) if isinstance(role, str) else None
        if role is not None:
            out.append(Message(role, _content_text(item.get("content"))))
    elif kind == "function_call":
        call_id, name = str(item.get("call_id") or ""), str(item.get("name") or "")
        call = ToolCall(call_id, name, json_text(item.get("arguments")))
        if out and out[-1].role == "assistant":
            out[-1] = dataclasses.replace(out[-1], tool_calls=(*out[-1].tool_calls, call))
        else:
            out.append(Message("assistant", "", (call,)))
    elif kind == "function_call_output":
        output_id = item.get("call_id")
        output = text_of(item.get("output"), _TEXT_TYPES)
        out.append(Message("tool", output, tool_call_id=str(output_id) if output_id else None))


_MAX_PARTS = 1024
"""Content parts per item the assembler will make room for: a `content_index` beyond it (or
negative, or not a number) from a misbehaving server means the next free slot instead."""


def _position(value: Any, default: int) -> int:
    return value if isinstance(value, int) and 0 <= value < _MAX_PARTS else default


def _content_of(item: dict[str, Any]) -> list[Any]:
    """The item's `content` list, made one if a server sent something else there."""
    content = item.get("content")
    if not isinstance(content, list):
        content = item["content"] = []
    return content


class _Assembler:
    """Rebuilds `output` from item and delta events, for a stream cut off before its end."""

    __slots__ = ("arguments", "done", "items", "texts")

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self.done: set[int] = set()
        self.texts: dict[tuple[int, int, str], list[str]] = {}
        self.arguments: dict[int, list[str]] = {}

    def add(self, kind: str, event: dict[str, Any]) -> None:
        index = event.get("output_index")
        if not isinstance(index, int):
            return
        item = event.get("item")
        if kind == "response.output_item.done" and isinstance(item, dict):
            self.items[index] = item  # final and authoritative: no deltas apply to it
            self.done.add(index)
        elif kind == "response.output_item.added" and isinstance(item, dict):
            content = item.get("content")
            copy = {**item, "content": list(content)} if isinstance(content, list) else dict(item)
            self.items[index] = copy
        elif kind == "response.content_part.added" and isinstance(event.get("part"), dict):
            content = _content_of(self.items.setdefault(index, {}))
            position = _position(event.get("content_index"), len(content))
            while len(content) <= position:
                content.append({})
            content[position] = dict(event["part"])
        elif kind in _DELTA_FIELDS and isinstance(event.get("delta"), str):
            key = (index, _position(event.get("content_index"), 0), _DELTA_FIELDS[kind])
            self.texts.setdefault(key, []).append(event["delta"])
        elif kind == "response.function_call_arguments.delta" and isinstance(
            event.get("delta"), str
        ):
            self.arguments.setdefault(index, []).append(event["delta"])

    def output(self) -> list[dict[str, Any]]:
        for (index, position, field), parts in self.texts.items():
            if index in self.done:
                continue
            content = _content_of(self.items.setdefault(index, {}))
            while len(content) <= position:
                content.append({"type": "output_text" if field == "text" else "refusal"})
            part = content[position]
            if not isinstance(part, dict):  # a server's odd item: its deltas still count
                part = content[position] = {}
            part[field] = str(part.get(field) or "") + "".join(parts)
        for index, parts in self.arguments.items():
            if index not in self.done:
                item = self.items.setdefault(index, {"type": "function_call"})
                item["arguments"] = str(item.get("arguments") or "") + "".join(parts)
        return [self.items[i] for i in sorted(self.items)]


class ResponsesFormat:
    name = "responses"

    def system_text(self, body: dict[str, Any]) -> str:
        instructions = body.get("instructions")
        return instructions if isinstance(instructions, str) else ""

    def inject(self, body: dict[str, Any], section: str) -> dict[str, Any] | None:
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            text = f"{instructions}\n\n{section}" if instructions else section
            return {**body, "instructions": text}
        return {**body, "instructions": section} if instructions is None else None

    def latest_user_text(self, body: dict[str, Any]) -> str:
        items = body.get("input")
        if isinstance(items, str):
            return items
        for item in reversed(as_list(items)):
            if (
                isinstance(item, dict)
                and item.get("role") == "user"
                and item.get("type", "message") == "message"
            ):
                text = _content_text(item.get("content"))
                if text:
                    return text
        return ""

    def fold_stream(self, raw: bytes) -> dict[str, Any]:
        final: dict[str, Any] | None = None
        started: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        assembler = _Assembler()
        for event in iter_events(raw):
            data = json_data(event)
            if data is None:
                continue
            kind = str(data.get("type") or event.event)
            response = data.get("response")
            if kind in _TERMINAL and isinstance(response, dict):
                final = response
            elif kind in _STARTED and isinstance(response, dict):
                started = response
            elif kind == "error":
                error = {key: data.get(key) for key in ("code", "message", "param")}
            else:
                assembler.add(kind, data)
        if final is not None:
            if not final.get("output") and assembler.items:
                final["output"] = assembler.output()  # a compatible server that sent it bare
            return final
        folded: dict[str, Any] = dict(started) if started else {"object": "response"}
        folded["output"] = assembler.output()
        if error is not None:
            folded["error"] = error
        folded["incomplete"] = True
        return folded

    def usage(self, response: dict[str, Any]) -> Usage:
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return Usage()
        return Usage(
            int_or_none(usage.get("input_tokens")), int_or_none(usage.get("output_tokens"))
        )

    def conversation(
        self, request: dict[str, Any], response: dict[str, Any] | None
    ) -> list[Message]:
        out: list[Message] = []
        instructions = request.get("instructions")
        if isinstance(instructions, str) and instructions:
            out.append(Message("system", instructions))
        items = request.get("input")
        if isinstance(items, str):
            out.append(Message("user", items))
        elif isinstance(items, list):
            for item in items:
                _add_item(out, item)
        output = response.get("output") if response else None
        for item in as_list(output):
            _add_item(out, item)
        return out

    def error_body(self, status: int, message: str, type_: str, code: str | None) -> bytes:
        return openai_error_body(message, type_, code)


RESPONSES = ResponsesFormat()
