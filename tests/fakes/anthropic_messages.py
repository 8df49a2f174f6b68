"""Anthropic Messages wire format: `message` objects and the named-event SSE stream.

Stream order as api.anthropic.com sends it: `message_start` (empty content, input usage),
then per block `content_block_start` / `content_block_delta`... / `content_block_stop`
with one `ping` after the first block opens, then `message_delta` (stop_reason and
cumulative `output_tokens`) and `message_stop`. A thinking block opens with an empty
`signature` and receives it in one `signature_delta` after its `thinking_delta`s; a
tool_use block opens with `input: {}` and streams its JSON as `input_json_delta`s,
starting with an empty `partial_json` as the real API does.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.streaming import Frame, Turn, json_pieces, sse, text_pieces

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(turn: Turn) -> str:
    reason = turn.reply.finish_reason
    return _STOP_REASONS.get(reason, reason)


def _usage(turn: Turn, output_tokens: int) -> dict[str, Any]:
    usage = turn.reply.usage
    return {
        "input_tokens": turn.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens if usage else 0,
        "cache_read_input_tokens": usage.cache_read_input_tokens if usage else 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _blocks(turn: Turn) -> list[dict[str, Any]]:
    reply = turn.reply
    blocks: list[dict[str, Any]] = []
    if reply.reasoning is not None:
        blocks.append(
            {"type": "thinking", "thinking": reply.reasoning, "signature": reply.signature}
        )
    if reply.content or not reply.calls:
        blocks.append({"type": "text", "text": reply.content})
    for call in reply.calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id or turn.new_id("toolu_"),
                "name": call.name,
                "input": json.loads(call.arguments),
            }
        )
    return blocks


def _message(
    turn: Turn, content: list[dict[str, Any]], stop: str | None, output_tokens: int
) -> dict[str, Any]:
    return {
        "id": turn.new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _usage(turn, output_tokens),
    }


def message(turn: Turn) -> dict[str, Any]:
    return _message(turn, _blocks(turn), stop_reason(turn), turn.output_tokens)


def events(turn: Turn) -> list[Frame]:
    frames = [_event("message_start", message=_message(turn, [], None, 1))]
    calls = iter(turn.reply.calls)
    for index, block in enumerate(_blocks(turn)):
        kind = block["type"]
        if kind == "thinking":
            start = {**block, "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": piece}
                for piece in text_pieces(block["thinking"])
            ]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "text":
            start = {**block, "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in text_pieces(block["text"])]
        else:
            start = {**block, "input": {}}
            pieces = ["", *json_pieces(next(calls).arguments)]
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
        frames.append(_event("content_block_start", index=index, content_block=start))
        if index == 0:
            frames.append(_event("ping"))
        frames += [
            _event("content_block_delta", True, index=index, delta=delta) for delta in deltas
        ]
        frames.append(_event("content_block_stop", index=index))
    frames.append(
        _event(
            "message_delta",
            delta={"stop_reason": stop_reason(turn), "stop_sequence": None},
            usage={"output_tokens": turn.output_tokens},
        )
    )
    frames.append(_event("message_stop"))
    return frames


def _event(kind: str, is_delta: bool = False, **fields: Any) -> Frame:
    return sse({"type": kind, **fields}, event=kind, is_delta=is_delta)
