"""Sending a request to the provider and relaying its answer, byte for byte, as it arrives.

One pooled `aiohttp.ClientSession` per app forwards everything (httpx's client could not keep up
on this path; see DESIGN.md). Responses are relayed without decompressing them: the session is
created with `auto_decompress=False` and adds no `Accept-Encoding` of its own, so the client
receives exactly what the provider sent. Streams are written chunk by chunk as they arrive, and
each chunk is kept beside the relay for the trace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from core.config import UpstreamConfig
from proxy.stalls import Watch
from proxy.tracing import TraceRecord

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length"}
_NOT_RELAYED = HOP_BY_HOP | {"content-length", "date", "server"}
OWN_HEADER_PREFIXES = ("x-skillproxy-", "x-skillbook")
BUFFER_LIMIT = 1024 * 1024
"""Answers up to this size with a Content-Length are read whole; larger or unsized ones stream."""


_SKIPPED_AUTO_HEADERS: CIMultiDict[None] = CIMultiDict(
    {"User-Agent": None, "Accept-Encoding": None}
)


class VerbatimRequest(aiohttp.ClientRequest):
    """A request that adds no `User-Agent` or `Accept-Encoding` to what the client sent.

    The answer is relayed still encoded, so the provider must see only the encodings the client
    accepts. The session's `skip_auto_headers` option does the same, but copies the headers
    twice per request to do it; here the decision is made once. `update_auto_headers` is
    aiohttp's own hook, not documented API, so pyproject requires the aiohttp this was tested
    with, and `test_proxy_adds_no_user_agent_or_encoding_of_its_own` fails if it changes.
    """

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        self._skip_auto_headers = _SKIPPED_AUTO_HEADERS
        if "Accept" not in self.headers:
            self.headers["Accept"] = "*/*"  # aiohttp's default, kept as it always was


def create_session(config: UpstreamConfig) -> aiohttp.ClientSession:
    """The app's single upstream session; cookies are never shared between clients.

    It has no read timeout of its own: `proxy.stalls` enforces `read_timeout_s` more cheaply.
    """
    connector = aiohttp.TCPConnector(limit=config.max_connections, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, connect=config.connect_timeout_s)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        request_class=VerbatimRequest,
    )


def upstream_headers(headers: CIMultiDictProxy[str], *, inflated: bool = False) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop ones and the proxy's own `X-Skillbook*` controls;
    `inflated`: the server undid the body's `Content-Encoding`, so it goes on without one."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower in _NOT_FORWARDED or lower.startswith(OWN_HEADER_PREFIXES):
            continue
        out.add(name, value)
    if inflated:
        out.popall("Content-Encoding", None)
    return out


def relayed_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in _NOT_RELAYED:
            out.add(name, value)
    return out


async def relay(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    record: TraceRecord,
    extra_headers: dict[str, str],
    started: float,
    watch: Watch,
) -> web.StreamResponse:
    """Send the provider's answer to the client, keeping a copy in `record`.

    A client that disconnects is marked on the record (the caller then drops the upstream
    connection, which cancels the request at the provider). A provider failure before anything
    was sent propagates (the caller answers 502/504); after the status line went out it can only
    be recorded, and the client's connection is closed so it sees a broken answer, not a clean
    end.
    """
    headers = relayed_headers(upstream.headers)
    headers.update(extra_headers)
    content_type = upstream.headers.get("Content-Type", "")
    record.response_content_type = content_type
    record.response_encoding = upstream.headers.get("Content-Encoding", "")
    length = upstream.content_length
    is_stream = "text/event-stream" in content_type
    response: web.StreamResponse
    if not is_stream and length is not None and length <= BUFFER_LIMIT:
        body = await upstream.read()
        watch.busy()
        record.ttfb_ms = (time.perf_counter() - started) * 1000
        record.keep_chunk(body)
        response = web.Response(
            status=upstream.status, reason=upstream.reason, body=body, headers=headers
        )
        record.status = upstream.status
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionResetError:
            record.client_disconnected = True
        return response

    if is_stream:
        headers.setdefault("Cache-Control", "no-cache")
        headers["X-Accel-Buffering"] = "no"
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    record.status = upstream.status
    try:
        watch.busy()
        await response.prepare(request)
        watch.waiting()
        async for chunk in upstream.content.iter_any():
            watch.busy()
            if record.ttfb_ms is None:
                record.ttfb_ms = (time.perf_counter() - started) * 1000
            record.keep_chunk(chunk)
            await response.write(chunk)
            watch.waiting()
        watch.busy()
        await response.write_eof()
    except ConnectionResetError:  # raised by our writes to the client (aiohttp's subclass too)
        record.client_disconnected = True
    except (aiohttp.ClientError, TimeoutError) as exc:
        _cut_off(request, response, record, f"{type(exc).__name__}: {exc}")
    except asyncio.CancelledError:
        if not watch.absorb():
            raise
        _cut_off(request, response, record, "the provider went silent")
    return response


def _cut_off(
    request: web.Request, response: web.StreamResponse, record: TraceRecord, why: str
) -> None:
    """The provider failed after the answer started: the client must see it broken."""
    record.error = f"provider failed mid-response: {why}"
    response.force_close()
    if request.transport is not None:
        request.transport.close()
