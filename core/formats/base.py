"""The one surface every wire format offers, and the normalised types the learner reads.

The proxy never reasons about a provider's JSON itself: it asks the request's `WireFormat` for
the system text, for a body with the skillbook section added, for the final response folded from
a stream, and for a provider-neutral conversation. Adapters are pure functions over parsed JSON
(no I/O, no shared state), so one module-level instance per format serves every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Message", "ToolCall", "Usage", "WireFormat", "as_list", "int_or_none", "text_of"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (or re-serialised where the wire parses it)


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


class WireFormat(Protocol):
    name: str  # "chat" | "responses" | "messages"

    def system_text(self, body: dict[str, Any]) -> str:
        """The client's own system/instructions text, joined."""
        ...

    def inject(self, body: dict[str, Any], section: str) -> dict[str, Any] | None:
        """`body` with `section` after the client's system text, or None when the body cannot
        carry it without changing something the client sent (its system container is the
        wrong JSON type); the input is never mutated."""
        ...

    def latest_user_text(self, body: dict[str, Any]) -> str:
        """Text of the last user turn, for relevance ranking."""
        ...

    def fold_stream(self, raw: bytes) -> dict[str, Any]:
        """The complete SSE byte stream as the equivalent non-streaming response object."""
        ...

    def usage(self, response: dict[str, Any]) -> Usage: ...

    def conversation(
        self, request: dict[str, Any], response: dict[str, Any] | None
    ) -> list[Message]:
        """Request messages plus the assistant's answer, normalised for the learner."""
        ...

    def error_body(self, status: int, message: str, type_: str, code: str | None) -> bytes:
        """The proxy's own error, in this format's error shape."""
        ...


def text_of(content: Any, types: frozenset[str] = frozenset({"text"})) -> str:
    """Text of a content value that is a string or a list of typed parts (others ignored).

    Parts are joined with a newline: they are separate blocks to the model, and gluing them
    would merge the last word of one with the first word of the next. Request bodies are the
    client's, unchecked: a part of any other shape is skipped, never an error.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if isinstance(part, dict) and isinstance(text := part.get("text"), str):
            kind = part.get("type")
            if isinstance(kind, str) and kind in types:  # a list or object is unhashable
                texts.append(text)
    return "\n".join(texts)


def int_or_none(value: Any) -> int | None:
    """A token count from provider JSON; bools and junk are not counts."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_list(value: Any) -> list[Any]:
    """`value` if it is a JSON array, else empty: request bodies are the client's, unchecked."""
    return value if isinstance(value, list) else []
