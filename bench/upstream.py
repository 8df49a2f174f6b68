"""A zero-latency fake provider, so a benchmark measures the proxy and not the model.

It speaks the three wire formats: OpenAI Chat Completions (`POST /v1/chat/completions`),
Anthropic Messages (`POST /v1/messages`) and OpenAI Responses (`POST /v1/responses`), each as
one JSON body or, for `"stream": true`, as an SSE stream written one event per write. Every
answer is precomputed bytes, and streaming is detected with a byte search instead of a JSON
parse: this process shares the machine with the proxy under test and must never be the
bottleneck. `GET /healthz` answers 200 so a pass-through proxy can stand in for skillproxy.

    python bench/upstream.py --port 9001
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MODEL = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-5"
WORDS = ["Sure", ",", " here", " is", " a", " short", " answer", " to", " your", " question."]
USAGE = {"prompt_tokens": 42, "completion_tokens": len(WORDS), "total_tokens": 42 + len(WORDS)}


def _completion() -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(WORDS)},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sse(obj: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + _json(obj) + b"\n\n"


def _stream_events() -> list[bytes]:
    """One event per word (the first carries the role), the finish, the usage, then [DONE]."""
    head = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
    }
    events = []
    for i, word in enumerate(WORDS):
        delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        events.append(_sse({**head, "choices": [choice]}))
    events.append(_sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    events.append(_sse({**head, "choices": [], "usage": USAGE}))
    events.append(b"data: [DONE]\n\n")
    return events


def _claude_message(
    content: list[dict[str, object]], stop: str | None, out: int
) -> dict[str, object]:
    usage = {
        "input_tokens": USAGE["prompt_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": out,
        "service_tier": "standard",
    }
    return {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def _message_events() -> list[bytes]:
    """Anthropic's named events: message_start, the text block (a ping after it opens, one
    text_delta per word), message_delta with the stop reason and usage, message_stop."""

    def event(kind: str, **fields: object) -> bytes:
        return _sse({"type": kind, **fields}, kind)

    events = [event("message_start", message=_claude_message([], None, 1))]
    events.append(event("content_block_start", index=0, content_block={"type": "text", "text": ""}))
    events.append(event("ping"))
    for word in WORDS:
        events.append(
            event("content_block_delta", index=0, delta={"type": "text_delta", "text": word})
        )
    events.append(event("content_block_stop", index=0))
    stop = {"stop_reason": "end_turn", "stop_sequence": None}
    events.append(event("message_delta", delta=stop, usage={"output_tokens": len(WORDS)}))
    events.append(event("message_stop"))
    return events


def _response(status: str, output: list[dict[str, object]], usage: object) -> dict[str, object]:
    return {
        "id": "resp_bench",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    }


def _text_part(text: str) -> dict[str, object]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message_item(status: str, text: str | None) -> dict[str, object]:
    content = [] if text is None else [_text_part(text)]
    return {
        "id": "msg_bench",
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


RESPONSE_USAGE = {
    "input_tokens": USAGE["prompt_tokens"],
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": len(WORDS),
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": USAGE["total_tokens"],
}
TEXT = "".join(WORDS)


def _response_final() -> dict[str, object]:
    return _response("completed", [_message_item("completed", TEXT)], RESPONSE_USAGE)


def _response_events() -> list[bytes]:
    """The Responses API's semantic events, each with its `sequence_number`, one
    response.output_text.delta per word, ending with response.completed (no [DONE])."""
    events: list[bytes] = []

    def emit(kind: str, **fields: object) -> None:
        events.append(_sse({"type": kind, **fields, "sequence_number": len(events)}, kind))

    started = _response("in_progress", [], None)
    where = {"item_id": "msg_bench", "output_index": 0, "content_index": 0}
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    emit("response.output_item.added", output_index=0, item=_message_item("in_progress", None))
    emit("response.content_part.added", **where, part=_text_part(""))
    for word in WORDS:
        emit("response.output_text.delta", **where, delta=word, logprobs=[])
    emit("response.output_text.done", **where, text=TEXT, logprobs=[])
    emit("response.content_part.done", **where, part=_text_part(TEXT))
    emit("response.output_item.done", output_index=0, item=_message_item("completed", TEXT))
    emit("response.completed", response=_response_final())
    return events


def _handler(whole: bytes, events: list[bytes]) -> Handler:
    """A handler answering `whole` as JSON, or `events` one write each for a stream."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if b'"stream":true' not in body and b'"stream": true' not in body:
            return web.Response(body=whole, content_type="application/json")
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        for event in events:
            await resp.write(event)
        await resp.write_eof()
        return resp

    return handle


COMPLETION = _completion()
EVENTS = _stream_events()
MESSAGE = _json(_claude_message([{"type": "text", "text": TEXT}], "end_turn", len(WORDS)))
MESSAGE_EVENTS = _message_events()
RESPONSE = _json(_response_final())
RESPONSE_EVENTS = _response_events()
chat = _handler(COMPLETION, EVENTS)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", _handler(MESSAGE, MESSAGE_EVENTS))
    app.router.add_post("/v1/responses", _handler(RESPONSE, RESPONSE_EVENTS))
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
