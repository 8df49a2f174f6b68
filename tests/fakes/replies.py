"""Scripted replies for the fake provider, in one format-neutral shape.

A `Reply` says what the model "answers" (text, tool calls, an Anthropic thinking block) or
which error the provider returns, plus timing knobs. Each wire format renders the same
`Reply` its own way, so one script can drive any route. Finish reasons use OpenAI's words
(`stop`, `length`, `tool_calls`, `content_filter`); other formats translate them, and a
format-native word (e.g. Anthropic's `pause_turn`) passes through unchanged.

Token counts are deterministic so tests can assert them:
- input tokens  = max(1, len(request body in bytes) // 4)
- output tokens = words (whitespace-separated) in text + thinking + tool names and arguments
An explicit `usage=Usage(...)` overrides both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SIGNATURE = "RmFrZVNpZ25hdHVyZUZvclRlc3RzT25seQ=="


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, exactly as the model would emit it
    id: str | None = None  # None: the route invents one in its own style (call_…, toolu_…)


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True)
class Reply:
    """One scripted provider answer; build it with `text()`, `tool_calls()`, `thinking()`
    or `error()` rather than by hand."""

    content: str = ""
    calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None  # Anthropic thinking block; ignored by the OpenAI routes
    signature: str = DEFAULT_SIGNATURE
    finish_reason: str = "stop"
    usage: Usage | None = None
    model: str | None = None  # None: echo the request's model
    delay: float = 0.0  # seconds before the response headers
    chunk_delay: float = 0.0  # seconds between stream events
    hang: bool = False  # stream up to the first delta, then wait for the client to leave
    headers: Mapping[str, str] = field(default_factory=dict)
    error_status: int | None = None
    error_body: bytes = b""

    @property
    def is_error(self) -> bool:
        return self.error_status is not None

    def output_tokens(self) -> int:
        if self.usage is not None:
            return self.usage.output_tokens
        parts = [self.content, self.reasoning or ""]
        parts += [f"{call.name} {call.arguments}" for call in self.calls]
        return sum(len(part.split()) for part in parts)

    def input_tokens(self, request_body: bytes) -> int:
        if self.usage is not None:
            return self.usage.input_tokens
        return count_input_tokens(request_body)


def count_input_tokens(request_body: bytes) -> int:
    return max(1, len(request_body) // 4)


def text(
    content: str,
    *,
    finish_reason: str = "stop",
    usage: Usage | None = None,
    model: str | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
    hang: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    return Reply(
        content=content,
        finish_reason=finish_reason,
        usage=usage,
        model=model,
        delay=delay,
        chunk_delay=chunk_delay,
        hang=hang,
        headers=dict(headers or {}),
    )


def tool_calls(
    calls: Sequence[Mapping[str, str]],
    *,
    content: str = "",
    finish_reason: str = "tool_calls",
    usage: Usage | None = None,
    model: str | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
    hang: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """`calls` are `{"name", "arguments", "id"?}` mappings; arguments is JSON text."""
    parsed = tuple(ToolCall(c["name"], c["arguments"], c.get("id")) for c in calls)
    for call in parsed:
        json.loads(call.arguments)  # fail at scripting time, not deep inside a stream
    return Reply(
        content=content,
        calls=parsed,
        finish_reason=finish_reason,
        usage=usage,
        model=model,
        delay=delay,
        chunk_delay=chunk_delay,
        hang=hang,
        headers=dict(headers or {}),
    )


def thinking(
    thought: str,
    content: str,
    *,
    signature: str = DEFAULT_SIGNATURE,
    finish_reason: str = "stop",
    usage: Usage | None = None,
    model: str | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
    hang: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """An Anthropic thinking block (with its signature) followed by text."""
    return Reply(
        content=content,
        reasoning=thought,
        signature=signature,
        finish_reason=finish_reason,
        usage=usage,
        model=model,
        delay=delay,
        chunk_delay=chunk_delay,
        hang=hang,
        headers=dict(headers or {}),
    )


def error(
    status: int,
    body: Mapping[str, Any] | bytes,
    headers: Mapping[str, str] | None = None,
    *,
    delay: float = 0.0,
) -> Reply:
    """An error relayed exactly as given: dicts become compact JSON, bytes pass untouched."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return Reply(error_status=status, error_body=raw, headers=dict(headers or {}), delay=delay)


def openai_error(
    status: int,
    message: str,
    type: str = "invalid_request_error",  # named after the wire field
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """OpenAI's error body, indented as api.openai.com sends it."""
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return error(status, (json.dumps(body, indent=4) + "\n").encode(), headers)


def anthropic_error(
    status: int,
    type: str,  # named after the wire field
    message: str,
    headers: Mapping[str, str] | None = None,
    request_id: str = "req_011CFakeRequestId000000",
) -> Reply:
    """Anthropic's error body, including the `request_id` the real API now adds."""
    body = {"type": "error", "error": {"type": type, "message": message}, "request_id": request_id}
    return error(status, body, headers)
