"""OpenAI Responses API wire format: `response` objects and their semantic SSE events.

Every event is `event: <type>` plus `data: {"type": <type>, ..., "sequence_number": n}`,
numbered from 0, with no `[DONE]` sentinel: the stream ends with `response.completed`
(or `response.incomplete` when the reply finished for `length`/`content_filter`).
Request parameters the real API echoes back (instructions, tools, temperature, ...) are
echoed the same way so a client reading them sees what it sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.fakes.streaming import Frame, Turn, json_pieces, sse, text_pieces

_INCOMPLETE = {
    "length": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "content_filter": "content_filter",
}


@dataclass(frozen=True)
class _Ids:
    response: str
    message: str
    calls: list[tuple[str, str]]  # (item id, call id)


def _ids(turn: Turn) -> _Ids:
    calls = [(turn.new_id("fc_"), call.id or turn.new_id("call_")) for call in turn.reply.calls]
    return _Ids(turn.new_id("resp_"), turn.new_id("msg_"), calls)


def _status(turn: Turn) -> str:
    return "incomplete" if turn.reply.finish_reason in _INCOMPLETE else "completed"


def _envelope(turn: Turn, ids: _Ids, status: str) -> dict[str, Any]:
    req = turn.request
    reason = _INCOMPLETE.get(turn.reply.finish_reason)
    return {
        "id": ids.response,
        "object": "response",
        "created_at": turn.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": reason} if status == "incomplete" else None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "model": turn.model,
        "output": [],
        "parallel_tool_calls": req.get("parallel_tool_calls", True),
        "previous_response_id": req.get("previous_response_id"),
        "reasoning": req.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": "default",
        "store": req.get("store", True),
        "temperature": req.get("temperature", 1.0),
        "text": req.get("text") or {"format": {"type": "text"}},
        "tool_choice": req.get("tool_choice", "auto"),
        "tools": req.get("tools", []),
        "top_p": req.get("top_p", 1.0),
        "truncation": req.get("truncation", "disabled"),
        "usage": None,
        "user": req.get("user"),
        "metadata": req.get("metadata") or {},
    }


def _usage(turn: Turn) -> dict[str, Any]:
    cached = turn.reply.usage.cache_read_input_tokens if turn.reply.usage else 0
    return {
        "input_tokens": turn.input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": turn.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": turn.input_tokens + turn.output_tokens,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _items(turn: Turn, ids: _Ids, status: str) -> list[dict[str, Any]]:
    """The final output items; streaming starts each one empty and `in_progress`."""
    reply = turn.reply
    items: list[dict[str, Any]] = []
    if reply.content or not reply.calls:
        items.append(
            {
                "id": ids.message,
                "type": "message",
                "status": status,
                "content": [_text_part(reply.content)],
                "role": "assistant",
            }
        )
    for call, (item_id, call_id) in zip(reply.calls, ids.calls, strict=True):
        items.append(
            {
                "id": item_id,
                "type": "function_call",
                "status": "completed",
                "arguments": call.arguments,
                "call_id": call_id,
                "name": call.name,
            }
        )
    return items


def response(turn: Turn) -> dict[str, Any]:
    ids, status = _ids(turn), _status(turn)
    return {
        **_envelope(turn, ids, status),
        "output": _items(turn, ids, status),
        "usage": _usage(turn),
    }


def events(turn: Turn) -> tuple[list[Frame], dict[str, Any]]:
    """The SSE frames, and the final response object (for GET /v1/responses/{id})."""
    ids, status = _ids(turn), _status(turn)
    items = _items(turn, ids, status)
    final = {**_envelope(turn, ids, status), "output": items, "usage": _usage(turn)}
    frames: list[Frame] = []

    def emit(kind: str, is_delta: bool = False, **fields: Any) -> None:
        data = {"type": kind, **fields, "sequence_number": len(frames)}
        frames.append(sse(data, event=kind, is_delta=is_delta))

    started = _envelope(turn, ids, "in_progress")
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    for index, item in enumerate(items):
        where: dict[str, Any] = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            text = item["content"][0]["text"]
            emit("response.content_part.added", **where, content_index=0, part=_text_part(""))
            for piece in text_pieces(text):
                emit(
                    "response.output_text.delta",
                    True,
                    **where,
                    content_index=0,
                    delta=piece,
                    logprobs=[],
                )
            emit("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            emit("response.content_part.done", **where, content_index=0, part=_text_part(text))
        else:
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for piece in json_pieces(item["arguments"]):
                emit("response.function_call_arguments.delta", True, **where, delta=piece)
            emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
    emit(f"response.{status}", response=final)
    return frames, final
