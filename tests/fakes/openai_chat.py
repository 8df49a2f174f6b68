"""OpenAI Chat Completions wire format: `chat.completion` objects and `chat.completion.chunk` SSE.

Mirrors api.openai.com: compact JSON per `data:` line, `usage: null` on every chunk when the
client asked for `stream_options.include_usage` and then a usage chunk with `choices: []`,
and the `[DONE]` sentinel. The first chunk of a tool-only answer carries the first tool
call together with the role and `content: null`, as the real API does.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.replies import ToolCall
from tests.fakes.streaming import Frame, Turn, json_pieces, sse, text_pieces

SYSTEM_FINGERPRINT = "fp_fake0000"
_FROM_ANTHROPIC = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def finish_reason(turn: Turn) -> str:
    reason = turn.reply.finish_reason
    return _FROM_ANTHROPIC.get(reason, reason)


def call_ids(turn: Turn) -> list[str]:
    return [call.id or turn.new_id("call_") for call in turn.reply.calls]


def usage(turn: Turn) -> dict[str, Any]:
    cached = turn.reply.usage.cache_read_input_tokens if turn.reply.usage else 0
    completion = turn.output_tokens * turn.choices
    return {
        "prompt_tokens": turn.input_tokens,
        "completion_tokens": completion,
        "total_tokens": turn.input_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(turn: Turn) -> dict[str, Any]:
    reply = turn.reply
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content or (None if reply.calls else ""),
        "refusal": None,
        "annotations": [],
    }
    if reply.calls:
        pairs = zip(reply.calls, call_ids(turn), strict=True)
        message["tool_calls"] = [_full_call(call, id_) for call, id_ in pairs]
    choice = {"message": message, "logprobs": None, "finish_reason": finish_reason(turn)}
    return {
        "id": turn.new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": turn.created,
        "model": turn.model,
        "choices": [{"index": i, **choice} for i in range(turn.choices)],
        "usage": usage(turn),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def chunks(turn: Turn) -> list[Frame]:
    options = turn.request.get("stream_options") or {}
    include_usage = bool(options.get("include_usage"))
    head: dict[str, Any] = {
        "id": turn.new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": turn.created,
        "model": turn.model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    tail = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> Frame:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        has_output = bool(delta.get("content") or delta.get("tool_calls"))
        return sse({**head, "choices": [choice], **tail}, is_delta=has_output)

    deltas = _deltas(turn)
    frames: list[Frame] = []
    for index in range(turn.choices):
        frames += [chunk(index, delta) for delta in deltas]
        frames.append(chunk(index, {}, finish_reason(turn)))
    if include_usage:
        frames.append(sse({**head, "choices": [], "usage": usage(turn)}))
    frames.append(sse("[DONE]"))
    return frames


def _deltas(turn: Turn) -> list[dict[str, Any]]:
    reply = turn.reply
    role: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
    deltas: list[dict[str, Any]] = []
    if reply.content or not reply.calls:
        deltas.append(role)
        deltas += [{"content": piece} for piece in text_pieces(reply.content)]
    for position, (call, id_) in enumerate(zip(reply.calls, call_ids(turn), strict=True)):
        function = {"name": call.name, "arguments": ""}
        start = {"index": position, "id": id_, "type": "function", "function": function}
        if deltas:
            deltas.append({"tool_calls": [start]})
        else:
            deltas.append({**role, "content": None, "tool_calls": [start]})
        for piece in json_pieces(call.arguments):
            deltas.append({"tool_calls": [{"index": position, "function": {"arguments": piece}}]})
    return deltas


def _full_call(call: ToolCall, id_: str) -> dict[str, Any]:
    return {
        "id": id_,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
