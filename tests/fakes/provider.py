"""A scripted LLM provider that speaks OpenAI's and Anthropic's wire formats on loopback.

    provider = FakeProvider()
    with ServerThread(provider.app()) as server:
        provider.enqueue(replies.text("hello"), replies.openai_error(429, "slow down"))
        ...  # point a client at server.url + "/v1"
        assert provider.received[0].json()["model"] == "gpt-4o-mini"

Routes under /v1: `chat/completions`, `responses` (+ `GET responses/{id}`), `messages`,
`messages/count_tokens`, `models`; anything else is a 404 in OpenAI's error shape.
Each request to a model route takes the next queued `Reply` (FIFO, shared by all routes)
or the default one, a plain "ok". Requests are recorded before they are answered, and a
client that goes away mid-reply is counted in `disconnects` (and sets `disconnected`) so
a test can prove that an upstream request was really cancelled. Token counting rules are
in `tests.fakes.replies`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import anthropic_messages, openai_chat, openai_responses, replies
from tests.fakes.replies import Reply
from tests.fakes.streaming import Frame, Turn, client_gone, compact, send_stream, wait_watching

Handler = Callable[[web.Request], Any]


@dataclass(frozen=True)
class Received:
    """One request as the provider saw it."""

    method: str
    path: str  # path and query string
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


class FakeProvider:
    """Builds the app (`app()`) and holds the script and the record of what it served."""

    def __init__(self, *, default: Reply | None = None, models: Sequence[str] = ("fake-model",)):
        self.default = default or replies.text("ok")
        self.models = tuple(models)
        self.received: list[Received] = []
        self.responses: dict[str, dict[str, Any]] = {}  # Responses API objects by id
        self.disconnects = 0
        self.disconnected = threading.Event()
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closing = False

    # -- scripting -------------------------------------------------------------------------

    def enqueue(self, *scripted: Reply) -> None:
        self._queue.extend(scripted)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def last(self) -> Received:
        return self.received[-1]

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.received.clear()
            self.responses.clear()
            self.disconnects = 0
            self.disconnected.clear()

    def wait_for_disconnect(self, timeout: float = 5.0) -> bool:
        return self.disconnected.wait(timeout)

    # -- the app ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record], client_max_size=64 * 1024**2)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/responses/{id}", self._get_response)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._closing = False

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing = True  # wakes hanging handlers so shutdown does not wait on them

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self.received.append(
                Received(request.method, request.raw_path, dict(request.headers), body)
            )
        response: web.StreamResponse = await handler(request)
        return response

    # -- routes ----------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._model_route(request, openai_chat.completion, openai_chat.chunks)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        def whole(turn: Turn) -> dict[str, Any]:
            obj = openai_responses.response(turn)
            self.responses[obj["id"]] = obj
            return obj

        def streamed(turn: Turn) -> list[Frame]:
            frames, obj = openai_responses.events(turn)
            self.responses[obj["id"]] = obj
            return frames

        return await self._model_route(request, whole, streamed)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        return await self._model_route(
            request, anthropic_messages.message, anthropic_messages.events, anthropic=True
        )

    async def _get_response(self, request: web.Request) -> web.StreamResponse:
        response_id = request.match_info["id"]
        if response_id not in self.responses:
            message = f"Response with id '{response_id}' not found."
            return self._error(replies.openai_error(404, message), self._headers(False))
        return _json(self.responses[response_id], self._headers(False), indent=2)

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        tokens = replies.count_input_tokens(await request.read())
        return _json({"input_tokens": tokens}, self._headers(True))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"}
            for m in self.models
        ]
        return _json({"object": "list", "data": data}, self._headers(False), indent=2)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        message = f"Invalid URL ({request.method} {request.path})"
        return self._error(replies.openai_error(404, message), self._headers(False))

    # -- the shared answer path ------------------------------------------------------------

    async def _model_route(
        self,
        request: web.Request,
        whole: Callable[[Turn], dict[str, Any]],
        streamed: Callable[[Turn], list[Frame]],
        *,
        anthropic: bool = False,
    ) -> web.StreamResponse:
        body = await request.read()
        headers = self._headers(anthropic)
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError:
            return self._error(_bad_json(anthropic), headers)
        reply = self._queue.popleft() if self._queue else self.default
        headers.update(reply.headers)
        if reply.delay and not await wait_watching(request, reply.delay, self._is_closing):
            self._note_disconnect()
            return web.Response(status=499)
        if reply.is_error:
            return self._error(reply, headers)
        turn = Turn(
            reply=reply,
            request=payload,
            model=reply.model or str(payload.get("model") or "fake-model"),
            input_tokens=reply.input_tokens(body),
            output_tokens=reply.output_tokens(),
            created=int(time.time()),
            new_id=self._new_id,
        )
        if payload.get("stream") is True:
            response, finished = await send_stream(
                request, streamed(turn), reply, headers, self._is_closing
            )
            if not finished and client_gone(request):
                self._note_disconnect()
            return response
        if reply.hang:
            await wait_watching(request, float("inf"), self._is_closing)
            if client_gone(request):
                self._note_disconnect()
        return _json(whole(turn), headers, indent=None if anthropic else 2)

    def _error(self, reply: Reply, headers: Mapping[str, str]) -> web.Response:
        merged = {**headers, "Content-Type": "application/json", **reply.headers}
        return web.Response(status=reply.error_status or 500, body=reply.error_body, headers=merged)

    def _headers(self, anthropic: bool) -> dict[str, str]:
        if anthropic:
            return {"request-id": self._new_id("req_")}
        return {
            "x-request-id": self._new_id("req_"),
            "openai-processing-ms": "42",
            "openai-version": "2020-10-01",
        }

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self._ids):08d}"

    def _is_closing(self) -> bool:
        return self._closing

    def _note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self.disconnected.set()


def _json(obj: Any, headers: Mapping[str, str], indent: int | None = None) -> web.Response:
    text = json.dumps(obj, indent=indent, ensure_ascii=False) if indent else compact(obj)
    return web.Response(body=text.encode(), headers={**headers, "Content-Type": "application/json"})


def _bad_json(anthropic: bool) -> Reply:
    if anthropic:
        return replies.anthropic_error(400, "invalid_request_error", "Invalid JSON body")
    return replies.openai_error(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you"
        " aren't using your HTTP library correctly.)",
    )
