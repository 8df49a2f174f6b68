"""`POST /otlp/v1/traces`: an OpenTelemetry collector (its `otlphttp` exporter) exports GenAI
spans straight into a skillbook, as traces and episodes the learner reads.

The same reading as `skillproxy traces import --format otlp-json`: each inference span is a
turn (`skillproxy.import_formats.genai_spans`), each trace of the request a conversation,
stored as the import stores one (source `import:otlp-http`). Spans that are no model call
are accepted and dropped, as a collector sends everything it has; spans that are malformed,
or model calls whose messages were not recorded, are rejected, counted in the answer's
`partial_success` with the first reason, while the rest are stored.

Spans of one trace often come over several requests (a collector exports in batches): each
request's spans of a trace are one conversation, all under the session `otlp-<trace id>`, so
they chain into one episode while it is open; a conversation is named by its trace and its
span ids, so a request the collector retries, or a file exported from the same spans, adds
nothing. The skillbook is the one `X-Skillbook` names, else `server.default_skillbook`.

Auth is the admin API's (`skillproxy.admin.guard`): this writes into the store, so with
`admin.token` set it wants `Authorization: Bearer <token>` (a collector's exporter sends it
under `headers:`), and without one it answers only clients on loopback. The body is read as
the proxy reads any (`proxy.body`): gzip or deflate (what collectors send) undone, capped at
`server.max_body_bytes` after inflating, within `server.body_timeout_s`. `br` and `zstd` are
the exception to the 415 below: aiohttp's parser undoes them when their decoders are installed
and otherwise refuses the request itself (a plain-text 400) before any handler runs, so no
route can answer it in OTLP's words. What is stored is redacted as `[privacy]` asks
(`skillproxy.import_formats.privacy`).
Answers follow OTLP/HTTP (`skillproxy.otlp_wire`): `ExportTraceServiceResponse` in the
request's encoding; failures a `google.rpc.Status` with 400 (bad data), 401/403 (auth), 408
(too slow), 413 (too large), 415 (content type or encoding) or 503 with `Retry-After` (the
store; a collector retries it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from aiohttp import web

from core.redaction import Redactor
from proxy.body import read_body
from proxy.errors import ProxyError, retry_after
from proxy.routing import SKILLBOOK_HEADER, choose_skillbook
from proxy.state import STATE
from skillproxy.admin.guard import admin_refusal
from skillproxy.import_formats.genai_spans import SpanTurn, trace_conversation
from skillproxy.import_formats.otlp_file import read_turns
from skillproxy.import_formats.otlp_json import spans
from skillproxy.import_formats.privacy import import_redactor, redacted
from skillproxy.import_formats.turns import LineError, unexpected
from skillproxy.otlp_wire import CONTENT_TYPES, Encoding, decode, export_response, status
from store.errors import StoreUnavailable
from store.records import ImportedConversation

PATH = "/otlp/v1/traces"
SOURCE = "import:otlp-http"

log = logging.getLogger("skillproxy.otlp")


class OtlpError(Exception):
    def __init__(self, http_status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.http_status, self.message, self.close = http_status, message, close


def add_otlp_routes(app: web.Application) -> None:
    app.router.add_post(PATH, receive_traces)
    app.router.add_route("*", PATH, method_not_allowed)


async def receive_traces(request: web.Request) -> web.StreamResponse:
    encoding: Encoding = "protobuf" if request.content_type == CONTENT_TYPES["protobuf"] else "json"
    try:
        return await _receive(request, encoding)
    except OtlpError as exc:
        failure = _failure(encoding, exc.http_status, exc.message)
        if exc.close:  # the body broke as it was read: what is left is not worth reading
            failure.force_close()
        return failure
    except StoreUnavailable as exc:
        log.warning("otlp: %s", exc)
        headers = {"Retry-After": retry_after(exc.retry_after_s)}
        return _failure(encoding, 503, f"the store is unavailable: {exc}", headers)
    except Exception:  # a bug: logged with its traceback, answered as OTLP answers
        log.exception("otlp: %s %s failed", request.method, request.path)
        return _failure(encoding, 500, "internal error; the proxy's log has the details")


async def method_not_allowed(request: web.Request) -> web.StreamResponse:
    message = f"{request.method} {PATH}: OTLP/HTTP exports traces with POST"
    return _failure("json", 405, message, {"Allow": "POST"})


async def _receive(request: web.Request, encoding: Encoding) -> web.Response:
    if request.content_type not in CONTENT_TYPES.values():
        raise OtlpError(
            415, f"Content-Type {request.content_type!r}: send application/x-protobuf or "
            "application/json (OTLP/HTTP)",
        )  # fmt: skip
    refused = admin_refusal(request)  # after the media type: a form's text/plain is a 415
    if refused is not None:
        raise OtlpError(refused[0], refused[1])
    state = request.config_dict[STATE]
    try:
        skillbook = choose_skillbook(
            None, request.headers.get(SKILLBOOK_HEADER), state.config.server.default_skillbook
        )
    except ValueError as exc:
        raise OtlpError(400, f"{SKILLBOOK_HEADER}: {exc}") from None
    server = state.config.server
    try:
        read = await read_body(
            request, limit=server.max_body_bytes, timeout_s=server.body_timeout_s, readable=True
        )
    except ProxyError as exc:  # 413 too large, 415 an encoding it cannot undo, 408, 400
        raise OtlpError(exc.status, exc.message, close=exc.close) from None
    body = read.data
    redactor = import_redactor(state.config, skillbook)
    conversations, rejected, problem = await asyncio.to_thread(_read, body, encoding, redactor)
    if conversations:
        settle_s = state.config.learner.settle_s
        await state.store.run(
            lambda s: s.traces.import_conversations(skillbook, conversations, settle_s=settle_s)
        )
    answer = export_response(encoding, rejected, problem)
    return web.Response(body=answer, content_type=CONTENT_TYPES[encoding])


def _read(
    body: bytes, encoding: Encoding, redactor: Redactor | None
) -> tuple[list[ImportedConversation], int, str]:
    """The request's conversations (redacted as `[privacy]` asks), how many spans were
    rejected, and the first reason."""
    try:
        document, ids = decode(body, encoding)
        turns, problems = read_turns(spans(document, ids))
    except LineError as exc:
        raise OtlpError(400, str(exc)) from None
    by_trace: dict[str, list[SpanTurn]] = defaultdict(list)
    for turn in turns:
        by_trace[turn.trace_id].append(turn)
    conversations: list[ImportedConversation] = []
    rejected = len(problems)
    for trace_id, members in by_trace.items():
        try:
            conversations.append(trace_conversation("otlp-http", trace_id, members, source=SOURCE))
        except LineError as exc:
            rejected += len(members)
            problems.append(f"trace {trace_id}: {exc}")
        except Exception:  # a bug: this trace's spans rejected, not the request
            rejected += len(members)
            problems.append(f"trace {trace_id}: {unexpected(f'trace {trace_id}')}")
    message = f"{rejected} spans rejected; the first: {problems[0]}" if problems else ""
    return redacted(conversations, redactor), rejected, message


def _failure(
    encoding: Encoding, http_status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=http_status, body=status(encoding, http_status, message),
        content_type=CONTENT_TYPES[encoding], headers=headers,
    )  # fmt: skip
