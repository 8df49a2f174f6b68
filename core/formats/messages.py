"""Anthropic Messages (`/v1/messages`).

Injection touches `system` and nothing else. A string stays a string; a list of blocks gets one
more text block after the client's, whose blocks (and their `cache_control` breakpoints) are kept
as they were, so a prefix the client caches is still byte-identical. We add no breakpoint of our
own: Anthropic allows four per request, the client may already use them all, and a breakpoint
in `messages` caches the whole system anyway. `messages` is never copied: thinking and
redacted_thinking blocks must go back exactly as the model signed them.
"""

from __future__ import annotations

import json
from typing import Any

from core.formats.base import Message, ToolCall, Usage, as_list, int_or_none, text_of
from core.formats.sse import iter_events, json_data

__all__ = ["MESSAGES", "MessagesFormat"]

# delta type -> (its field, also the block field it extends; block type if the start was lost)
_DELTAS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "input_json_delta": ("partial_json", "tool_use"),
}


def _append_turn(out: list[Message], role: Any, content: Any) -> None:
    """One API message as normalised messages: tool results become "tool" messages."""
    if role == "assistant":
        calls = tuple(
            ToolCall(
                str(block.get("id") or ""),
                str(block.get("name") or ""),
                json.dumps(block.get("input", {}), ensure_ascii=False),
            )
            for block in as_list(content)
            if isinstance(block, dict) and block.get("type") == "tool_use"
        )
        out.append(Message("assistant", text_of(content), calls))
    elif role == "user":
        results = [
            block
            for block in as_list(content)
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]
        for block in results:
            call_id = block.get("tool_use_id")
            text = text_of(block.get("content"))
            out.append(Message("tool", text, tool_call_id=str(call_id) if call_id else None))
        text = text_of(content)
        if text or not results:
            out.append(Message("user", text))


class _Folder:
    """Snapshot of a message being streamed, built the way the SDK's accumulator does."""

    __slots__ = ("blocks", "error", "fragments", "message", "stopped", "usage")

    def __init__(self) -> None:
        self.message: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.fragments: dict[tuple[int, str], list[str]] = {}
        self.usage: dict[str, Any] = {}
        self.error: Any = None
        self.stopped = False

    def add(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "message_start" and isinstance(event.get("message"), dict):
            self.message = dict(event["message"])
            content = self.message.get("content")  # may arrive pre-populated
            if isinstance(content, list):
                self.blocks = {i: dict(b) for i, b in enumerate(content) if isinstance(b, dict)}
            usage = self.message.get("usage")
            self.usage = dict(usage) if isinstance(usage, dict) else {}
        elif kind == "content_block_start" and isinstance(event.get("content_block"), dict):
            index = event.get("index")
            if isinstance(index, int):
                self.blocks[index] = dict(event["content_block"])
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            self._delta(event.get("index"), event["delta"])
        elif kind == "message_delta":
            # Counts here are cumulative totals: they replace, and absent ones leave the
            # message_start value standing.
            for source, target in (("delta", self.message), ("usage", self.usage)):
                values = event.get(source)
                if isinstance(values, dict):
                    target.update((k, v) for k, v in values.items() if v is not None)
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            self.error = event.get("error")

    def _delta(self, index: Any, delta: dict[str, Any]) -> None:
        if not isinstance(index, int):
            return
        kind = delta.get("type")
        if isinstance(kind, str) and kind in _DELTAS:
            field, block_type = _DELTAS[kind]
            fragment = delta.get(field)
            if isinstance(fragment, str):
                self.blocks.setdefault(index, {"type": block_type})
                self.fragments.setdefault((index, field), []).append(fragment)
        elif kind == "signature_delta":
            block = self.blocks.setdefault(index, {"type": "thinking"})
            block["signature"] = delta.get("signature")
        elif kind == "citations_delta":
            block = self.blocks.setdefault(index, {"type": "text"})
            if not isinstance(block.get("citations"), list):
                block["citations"] = []
            block["citations"].append(delta.get("citation"))

    def build(self) -> dict[str, Any]:
        for (index, field), fragments in self.fragments.items():
            block, joined = self.blocks[index], "".join(fragments)
            if field != "partial_json":
                block[field] = str(block.get(field) or "") + joined
            elif joined.strip():  # "" is what a tool without arguments streams: keep `{}`
                try:
                    block["input"] = json.loads(joined)
                except ValueError:
                    block["partial_json"] = joined  # cut off mid-arguments: keep what came
        message = self.message
        message.setdefault("type", "message")
        message.setdefault("role", "assistant")
        message["content"] = [self.blocks[i] for i in sorted(self.blocks)]
        if self.usage:
            message["usage"] = self.usage
        if self.error is not None:
            message["error"] = self.error
        if not self.stopped:
            message["incomplete"] = True
        return message


class MessagesFormat:
    name = "messages"

    def system_text(self, body: dict[str, Any]) -> str:
        return text_of(body.get("system"))

    def inject(self, body: dict[str, Any], section: str) -> dict[str, Any] | None:
        system = body.get("system")
        if isinstance(system, list):
            return {**body, "system": [*system, {"type": "text", "text": section}]}
        if isinstance(system, str):
            return {**body, "system": f"{system}\n\n{section}" if system else section}
        return {**body, "system": section} if system is None else None

    def latest_user_text(self, body: dict[str, Any]) -> str:
        messages = body.get("messages")
        for message in reversed(as_list(messages)):
            if isinstance(message, dict) and message.get("role") == "user":
                text = text_of(message.get("content"))  # skips turns of bare tool results
                if text:
                    return text
        return ""

    def fold_stream(self, raw: bytes) -> dict[str, Any]:
        folder = _Folder()
        for event in iter_events(raw):
            data = json_data(event)
            if data is not None:
                folder.add(str(data.get("type") or event.event), data)
        return folder.build()

    def usage(self, response: dict[str, Any]) -> Usage:
        """Input counts cache reads and writes too, as OpenAI's `prompt_tokens` does."""
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return Usage()
        input_tokens = int_or_none(usage.get("input_tokens"))
        if input_tokens is not None:
            for key in ("cache_creation_input_tokens", "cache_read_input_tokens"):
                input_tokens += int_or_none(usage.get(key)) or 0
        return Usage(input_tokens, int_or_none(usage.get("output_tokens")))

    def conversation(
        self, request: dict[str, Any], response: dict[str, Any] | None
    ) -> list[Message]:
        out: list[Message] = []
        system = self.system_text(request)
        if system:
            out.append(Message("system", system))
        messages = request.get("messages")
        for message in as_list(messages):
            if isinstance(message, dict):
                _append_turn(out, message.get("role"), message.get("content"))
        if response is not None:
            _append_turn(out, "assistant", response.get("content"))
        return out

    def error_body(self, status: int, message: str, type_: str, code: str | None) -> bytes:
        return json.dumps({"type": "error", "error": {"type": type_, "message": message}}).encode()


MESSAGES = MessagesFormat()
