"""A zero-latency fake OpenAI provider, so a benchmark measures the proxy and not the model.

Every answer is precomputed bytes, and streaming is detected with a byte search instead of a JSON
parse: this process shares the machine with the proxy under test and must never be the
bottleneck. `GET /healthz` answers 200 so a pass-through proxy can stand in for skillproxy.

    python bench/upstream.py --port 9001
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web

MODEL = "gpt-4o-mini"
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


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


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


COMPLETION = _completion()
EVENTS = _stream_events()


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if b'"stream":true' not in body and b'"stream": true' not in body:
        return web.Response(body=COMPLETION, content_type="application/json")
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    for event in EVENTS:
        await resp.write(event)
    await resp.write_eof()
    return resp


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
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
