"""Thin request handlers: parse, choose the skillbook, forward, relay, hand the trace over.

Rules live elsewhere (routing, forwarding, tracing); a handler only strings them together and
makes sure that, whatever happens, the exchange is recorded once and the client gets an answer
in its own wire format.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web

from core import jsonio
from proxy import errors
from proxy.credentials import apply_upstream_key, client_key, fingerprint
from proxy.forwarding import relay, upstream_headers
from proxy.injection import inject, opted_out
from proxy.routing import (
    SKILLBOOK_HEADER,
    Route,
    choose_skillbook,
    classify,
    raw_tail,
    upstream_url,
)
from proxy.state import STATE, ProxyState
from proxy.tracing import TraceRecord, new_trace_id

SESSION_HEADER = "X-Session-Id"
log = logging.getLogger("skillproxy")


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"status": "ok", "traces": state.traces.stats.as_dict()})


async def proxy_v1(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    started = time.perf_counter()
    tail = request.match_info["tail"]
    route = classify(request.method, tail)
    record = TraceRecord(
        id=new_trace_id(),
        created_at=time.time(),
        skillbook=state.config.server.default_skillbook,
        method=request.method,
        path=f"/v1/{tail}" + (f"?{request.query_string}" if request.query_string else ""),
        format=route.format.name if route.format and route.turn else None,
        request_content_type=request.headers.get("Content-Type", ""),
        session_id=request.headers.get(SESSION_HEADER),
    )
    key = client_key(request.headers)
    record.key_fingerprint = fingerprint(key) if key else None
    try:
        record.skillbook = skillbook_for(request, state)
        extra = {"X-Trace-Id": record.id, "X-Skillbook": record.skillbook}
        body = await _read_body(request, state)
        record.request_body = body
        if route.format is not None:
            payload, stdlib = _parse_json(body)
            model = payload.get("model")
            record.model = model if isinstance(model, str) else None
            record.stream = payload.get("stream") is True
            if not opted_out(request.headers):
                if (missing := state.skillbooks.missing_encoding(record.model)) is not None:
                    await _load_tokenizer(state, missing)
                added = inject(
                    state.skillbooks, route.format, payload, record, extra, stdlib=stdlib
                )
                body = added or body
        return await _forward(request, state, route, body, record, extra, started)
    except errors.ProxyError as exc:
        record.status = exc.status
        record.error = str(exc)
        return _error(exc, route, record)
    except asyncio.CancelledError:  # the client left while we waited on the provider
        record.client_disconnected = True
        record.error = record.error or "client disconnected"
        raise
    finally:
        record.latency_ms = (time.perf_counter() - started) * 1000
        await state.traces.submit(record)


async def _load_tokenizer(state: ProxyState, encoding: str) -> None:
    """Once per model family: without it this request goes out with no section, not failed."""
    try:
        await state.skillbooks.add_encoding(encoding)
    except Exception:  # the store or tokenizer failed: forwarding must not
        log.exception("could not prepare skillbooks for %s", encoding)


def skillbook_for(request: web.Request, state: ProxyState) -> str:
    """The path's skillbook, else the `X-Skillbook` header's, else the default; 400 if invalid."""
    try:
        return choose_skillbook(
            request.match_info.get("skillbook"),
            request.headers.get(SKILLBOOK_HEADER),
            state.config.server.default_skillbook,
        )
    except ValueError as exc:
        raise errors.invalid_request(str(exc), "invalid_skillbook") from None


async def _read_body(request: web.Request, state: ProxyState) -> bytes:
    limit = state.config.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise errors.body_too_large(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.body_too_large(limit) from None


def _parse_json(body: bytes) -> tuple[dict[str, Any], bool]:
    """The body as an object, and whether only the standard library could parse it."""
    try:
        payload, stdlib = jsonio.parse(body)
    except ValueError as exc:
        raise errors.invalid_json(str(exc)) from None
    if not isinstance(payload, dict):
        raise errors.invalid_request("The request body must be a JSON object.", "invalid_body")
    return payload, stdlib


async def _forward(
    request: web.Request,
    state: ProxyState,
    route: Route,
    body: bytes,
    record: TraceRecord,
    extra: dict[str, str],
    started: float,
) -> web.StreamResponse:
    upstream = state.config.upstream
    base = upstream.anthropic_base_url if route.anthropic else upstream.openai_base_url
    headers = upstream_headers(request.headers)
    apply_upstream_key(
        headers,
        key=upstream.anthropic_api_key if route.anthropic else upstream.api_key,
        anthropic=route.anthropic,
    )
    watch = state.stalls.watch()
    try:
        async with state.session.request(
            request.method,
            upstream_url(base, raw_tail(request.raw_path)),
            data=body if body else None,
            headers=headers,
            allow_redirects=False,
        ) as answer:
            response = await relay(request, answer, record, extra, started, watch)
            if record.client_disconnected:
                answer.close()  # drop the connection: the provider sees the request cancelled
                record.error = "client disconnected"
            return response
    except asyncio.CancelledError:
        if watch.absorb():  # the provider went silent before anything was sent
            raise errors.upstream_timeout(upstream.read_timeout_s) from None
        raise
    except TimeoutError:  # before ClientError: aiohttp's timeouts are both. The session's only
        # timeout is the connect one; `proxy.stalls` enforces the read timeout (above).
        raise errors.upstream_connect_timeout(upstream.connect_timeout_s) from None
    except aiohttp.ClientError as exc:
        raise errors.upstream_unreachable(f"{type(exc).__name__}: {exc}") from None
    finally:
        state.stalls.release(watch)


def _error(err: errors.ProxyError, route: Route, record: TraceRecord) -> web.Response:
    response = errors.error_response(err, anthropic=route.anthropic, trace_id=record.id)
    record.response_content_type = "application/json"
    assert isinstance(response.body, bytes)
    record.keep_chunk(response.body)
    return response
