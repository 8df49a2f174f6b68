"""Thin request handlers: parse, choose the skillbook, forward, relay, hand the trace over.

Rules live elsewhere (routing, forwarding, tracing); a handler only strings them together and
makes sure that, whatever happens, the exchange is recorded once and the client gets an answer
in its own wire format.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web

from core import jsonio
from proxy import errors
from proxy.body import Body, answer_unread, read_body
from proxy.credentials import apply_upstream_key, client_key, fingerprint, key_allowed
from proxy.forwarding import relay, upstream_headers
from proxy.injection import inject, opted_out, pinned_version
from proxy.routing import (
    SKILLBOOK_HEADER,
    Route,
    choose_skillbook,
    classify,
    forwarded_tail,
    upstream_url,
    without_query,
)
from proxy.skillbook_cache import UnknownVersion
from proxy.state import STATE, ProxyState
from proxy.tracing import MAX_TRACE_BODY_BYTES, TraceRecord, new_trace_id

SESSION_HEADER = "X-Session-Id"
log = logging.getLogger("skillproxy")


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
        path=f"/v1/{tail}" + _raw_query(request.raw_path),
        format=route.format.name if route.format and route.turn else None,
        request_content_type=request.headers.get("Content-Type", ""),
        session_id=request.headers.get(SESSION_HEADER),
    )
    key = client_key(request.headers)
    record.key_fingerprint = fingerprint(key) if key else None
    extra = {"X-Trace-Id": record.id}
    try:
        target = _admitted(request, state)  # before the skillbook: a refused client names none
        record.skillbook = extra["X-Skillbook"] = skillbook_for(request, state)
        body = await _body(request, state, route, record, extra)
        return await _forward(request, state, route, target, body, record, extra, started)
    except errors.ProxyError as exc:
        record.status = exc.status
        record.error = str(exc)
        response = _error(exc, route, record)
        await answer_unread(request, response, exc)
        return response
    except asyncio.CancelledError:  # the client left while we waited on the provider
        record.client_disconnected = True
        record.error = record.error or "client disconnected"
        raise
    except Exception as exc:
        if record.status is not None:  # the provider's answer has started going out
            raise
        log.exception("failed on %s %s", request.method, without_query(record.path))
        failure = errors.internal_error(type(exc).__name__)
        record.status = failure.status
        record.error = f"{failure}: {exc}"[:1000]
        return _error(failure, route, record)
    finally:
        record.latency_ms = (time.perf_counter() - started) * 1000
        if state.metrics is not None:  # before the await: a hang-up there must not skip it
            state.metrics.observe(record)  # never raises
        await state.traces.submit(record)


def _admitted(request: web.Request, state: ProxyState) -> str:
    """The raw tail to forward, once the path and the client's key pass; else a ProxyError."""
    try:
        target = forwarded_tail(request.raw_path)
    except ValueError as exc:
        raise errors.invalid_path(str(exc)) from None
    keys = state.config.server.client_keys
    if keys and not key_allowed(request.headers, keys):
        raise errors.invalid_api_key()
    return target


async def _body(
    request: web.Request,
    state: ProxyState,
    route: Route,
    record: TraceRecord,
    extra: dict[str, str],
) -> Body:
    """The body to forward: the client's, or with the skillbook section added."""
    server = state.config.server
    body = await read_body(
        request,
        limit=server.max_body_bytes,
        timeout_s=server.body_timeout_s,
        readable=route.format is not None,
    )
    record.request_bytes = len(body.data)
    if record.request_bytes <= MAX_TRACE_BODY_BYTES:  # larger ones are stored as their size
        record.request_body = body.data
    if route.format is None:
        return body
    payload, stdlib = _parse_json(body.data)
    model = payload.get("model")
    record.model = model if isinstance(model, str) else None
    record.stream = payload.get("stream") is True
    if opted_out(request.headers):
        return body
    try:
        pinned = pinned_version(request.headers)
    except ValueError as exc:
        raise errors.invalid_request(str(exc), "invalid_skillbook_version") from None
    if (missing := state.skillbooks.missing_encoding(record.model)) is not None:
        await _load_tokenizer(state, missing)
    try:
        added = inject(
            state.skillbooks, route.format, payload, record, extra, stdlib=stdlib, pinned=pinned
        )
    except UnknownVersion:
        raise errors.unknown_skillbook_version(record.skillbook, pinned) from None
    except ValueError as exc:  # parsed, but nested too deeply to be written back
        raise errors.invalid_json(str(exc)) from None
    return body if added is None else body._replace(data=added)


async def _load_tokenizer(state: ProxyState, encoding: str) -> None:
    """Once per model family: without it this request goes out with no section, not failed."""
    try:
        await state.skillbooks.add_encoding(encoding)
    except Exception:  # the store or tokenizer failed: forwarding must not
        log.exception("could not prepare skillbooks for %s", encoding)


LARGE_BODY_BYTES = 1 << 20
"""aiohttp warns (ResourceWarning) on a bytes body over 1 MiB; written from a BytesIO in
chunks instead, a large upload does not hold the loop in one write."""


def _payload(data: bytes) -> bytes | io.BytesIO | None:
    if not data:
        return None
    return io.BytesIO(data) if len(data) > LARGE_BODY_BYTES else data


def _raw_query(raw_path: str) -> str:
    """`?...` as the client sent it: the decoded form would turn `key=a%26b` into `key=a&b`,
    and redaction would then hide only `a` of the secret."""
    _, sep, query = raw_path.partition("?")
    return f"?{query}" if sep and query else ""


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
    target: str,
    body: Body,
    record: TraceRecord,
    extra: dict[str, str],
    started: float,
) -> web.StreamResponse:
    upstream = state.config.upstream
    base = upstream.anthropic_base_url if route.anthropic else upstream.openai_base_url
    headers = upstream_headers(request.headers, inflated=body.inflated)
    apply_upstream_key(
        headers,
        key=upstream.anthropic_api_key if route.anthropic else upstream.api_key,
        anthropic=route.anthropic,
    )
    watch = state.stalls.watch()
    try:
        async with state.session.request(
            request.method,
            upstream_url(base, target),
            data=_payload(body.data),
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
