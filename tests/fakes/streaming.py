"""What the three wire formats share: the rendering context, SSE framing and the writer.

Formats are pure functions from a `Turn` to JSON or to a list of `Frame`s; only this module
touches the socket, so delays, hangs and client disconnects behave the same on every route.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.replies import Reply

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
_POLL_SECONDS = 0.01


@dataclass(frozen=True)
class Turn:
    """Everything a format needs to render one reply to one request."""

    reply: Reply
    request: Mapping[str, Any]
    model: str
    input_tokens: int
    output_tokens: int
    created: int
    new_id: Callable[[str], str]  # prefix -> fresh deterministic id, e.g. "msg_fake0003"

    @property
    def choices(self) -> int:
        n = self.request.get("n")
        return n if isinstance(n, int) and n > 0 else 1


@dataclass(frozen=True)
class Frame:
    payload: bytes
    is_delta: bool = False  # a hanging stream stops after the first delta frame


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse(data: Any, *, event: str | None = None, is_delta: bool = False) -> Frame:
    """One server-sent event; `data` is JSON-encoded unless it is already a string."""
    body = data if isinstance(data, str) else compact(data)
    head = f"event: {event}\n" if event else ""
    return Frame(f"{head}data: {body}\n\n".encode(), is_delta)


def text_pieces(text: str) -> list[str]:
    """Split text the way token streams do: each word keeps its leading space."""
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


def json_pieces(arguments: str, size: int = 8) -> list[str]:
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def wait_watching(
    request: web.Request, seconds: float, is_closing: Callable[[], bool]
) -> bool:
    """Sleep up to `seconds` (inf allowed); False as soon as the client has gone away."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds if math.isfinite(seconds) else math.inf
    while loop.time() < deadline and not is_closing():
        if client_gone(request):
            return False
        await asyncio.sleep(min(_POLL_SECONDS, max(0.0, deadline - loop.time())))
    return not client_gone(request)


async def send_stream(
    request: web.Request,
    frames: list[Frame],
    reply: Reply,
    headers: Mapping[str, str],
    is_closing: Callable[[], bool],
) -> tuple[web.StreamResponse, bool]:
    """Write `frames` as an SSE response; the flag says whether every frame went out."""
    response = web.StreamResponse(
        headers={"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache", **headers}
    )
    try:
        await response.prepare(request)
        for index, frame in enumerate(frames):
            paused = index and reply.chunk_delay
            if paused and not await wait_watching(request, reply.chunk_delay, is_closing):
                return response, False
            await response.write(frame.payload)
            if reply.hang and frame.is_delta:
                await wait_watching(request, math.inf, is_closing)
                return response, False
        await response.write_eof()
    except ConnectionResetError:
        return response, False
    return response, True
