"""One OpenTelemetry span per proxied exchange, built from its stored row in the trace sink.

Where: in the trace sink's process (`proxy.trace_sink`), once a frame's rows are committed and
acknowledged. The row already holds what a span needs (the usage read, a stream folded into
its final response, the cost, personal data redacted for the skillbooks that ask), so nothing
is parsed on the proxy's event loop and no request waits for a span. Spans go to a
`BatchSpanProcessor`, whose own thread exports them over OTLP/HTTP (protobuf); when the
collector is slow or gone its queue fills and it drops spans, and the exchange is stored all
the same; what the SDK logs about it is held to a line a minute (`SDK_LOG_EVERY_S`). A
dropped trace (full queue, `traces.on_full`) has no span either.

Times: the span starts when the request arrived (`created_at`) and ends `latency_ms` later.
Attributes follow the GenAI semantic conventions (`gen_ai.*`, `server.*`, `error.type`), plus
skillproxy's own (`skillproxy.*`: skillbook, version, injected skills, trace id). Message
content goes on the span only with `otel.capture_content`, as `gen_ai.input.messages` and
`gen_ai.output.messages` in the conventions' parts format. API keys appear only as the
fingerprint the trace keeps.

`span_of` is a pure function of the row (testable without the SDK); `SpanExport` imports the
SDK, which is the `otel` extra, only when export is on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core import jsonio
from core.config import Config
from core.formats import FORMATS
from core.formats.base import Message
from proxy.metrics import OTHER, route_label
from proxy.routing import classify
from store.columns import PRICED_COLUMNS

log = logging.getLogger("skillproxy.otel")

EXPORT_DELAY_MS = 1000
"""How long the processor gathers spans before an export."""
QUEUE_SIZE = 4096
"""Spans waiting for export at most; beyond that new ones are dropped (counted by the SDK)."""
SDK_LOG_EVERY_S = 60.0
"""The SDK logs each retry, each failed batch and each span dropped at a full queue; against
a dead collector that is a line per request. One line per logger this often is kept, with a
count of those held back."""
SDK_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
)
OPERATIONS = {
    "chat/completions": "chat",
    "responses": "chat",
    "messages": "chat",
    "embeddings": "embeddings",
    "completions": "text_completion",
    "complete": "text_completion",
}
"""gen_ai.operation.name by route; a request creating a model response, only (POST)."""


def span_settings(config: Config | None) -> dict[str, Any] | None:
    """What the sink child needs to export spans, as plain values (None: export is off). The
    headers' values are read by the child from the environment it inherits: no secret crosses
    the pipe or sits in a settings object."""
    if config is None or not config.otel.enabled:
        return None
    otel = config.otel
    return {
        "endpoint": otel.endpoint,
        "headers": dict(otel.headers),
        "service_name": otel.service_name,
        "capture_content": otel.capture_content,
        "timeout_s": otel.timeout_s,
        "openai_base_url": config.upstream.openai_base_url,
        "anthropic_base_url": config.upstream.anthropic_base_url,
    }


@dataclass(frozen=True, slots=True)
class SpanData:
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    error: str | None
    """The span's error description; None when the exchange succeeded."""


def span_of(row: Sequence[Any], settings: Mapping[str, Any]) -> SpanData:
    """The span of one stored row (in `PRICED_COLUMNS` order)."""
    values = dict(zip(PRICED_COLUMNS, row, strict=True))
    method, path = values["method"] or "", values["path"] or ""
    route = route_label(path)
    anthropic = classify(method, path[4:].partition("?")[0]).anthropic
    operation = OPERATIONS.get(route) if method == "POST" else None
    request = _parsed(values["request_json"]) if operation is not None else None
    response = _parsed(values["response_json"]) if values["format"] else None  # not vectors
    model = values["model"]
    attrs: dict[str, Any] = {"gen_ai.provider.name": "anthropic" if anthropic else "openai"}
    base = urlsplit(settings["anthropic_base_url" if anthropic else "openai_base_url"])
    attrs["server.address"] = base.hostname or ""
    attrs["server.port"] = base.port or (443 if base.scheme == "https" else 80)
    if operation is not None:
        attrs["gen_ai.operation.name"] = operation
    _put(attrs, "gen_ai.request.model", model)
    _request_params(attrs, request)
    _response_fields(attrs, response)
    _put(attrs, "gen_ai.usage.input_tokens", values["input_tokens"])
    _put(attrs, "gen_ai.usage.output_tokens", values["output_tokens"])
    _put(attrs, "gen_ai.conversation.id", values["session_id"])
    status = values["status"]
    _put(attrs, "http.request.method", method)
    _put(attrs, "http.response.status_code", status if isinstance(status, int) else None)
    error = _error_type(values)
    _put(attrs, "error.type", error)
    injected = _parsed(values["injected_skill_ids"])
    attrs["skillproxy.trace_id"] = values["id"]
    attrs["skillproxy.skillbook"] = values["skillbook"]
    _put(attrs, "skillproxy.skillbook_version", values["skillbook_version"])
    attrs["skillproxy.injected_skills"] = len(injected) if isinstance(injected, list) else 0
    _put(attrs, "skillproxy.skill_tokens", values["skill_tokens"])
    attrs["skillproxy.route"] = route
    attrs["skillproxy.stream"] = bool(values["stream"])
    _put(attrs, "skillproxy.time_to_first_byte_ms", values["ttfb_ms"])
    _put(attrs, "skillproxy.cost_usd", values["cost_usd"])
    _put(attrs, "skillproxy.key_fingerprint", values["key_fingerprint"])
    if values["client_disconnected"]:
        attrs["skillproxy.client_disconnected"] = True
    if settings["capture_content"] and values["format"] and isinstance(request, dict):
        _content(attrs, values["format"], request, response)
    start = int(values["created_at"] * 1e9)
    end = start + int((values["latency_ms"] or 0) * 1e6)
    if operation is not None:
        name = f"{operation} {model}" if model else operation
    else:  # the HTTP conventions' "{method} {route}", or the method alone without a route
        name = method if route == OTHER else f"{method} /v1/{route}"
    description = (values["error"] or error) if error else None
    return SpanData(name, start, end, attrs, description)


def _put(attrs: dict[str, Any], key: str, value: Any) -> None:
    """OpenTelemetry attributes are str, bool, int, float or lists of them; None is left out."""
    if isinstance(value, (str, bool, int, float)):
        attrs[key] = value


def _parsed(text: Any) -> Any:
    if not isinstance(text, str) or not text:
        return None
    try:
        return jsonio.loads(text)
    except ValueError:
        return None


def _request_params(attrs: dict[str, Any], request: Any) -> None:
    if not isinstance(request, dict):
        return
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        if isinstance(request.get(key), int):
            attrs["gen_ai.request.max_tokens"] = request[key]
            break
    for key in ("temperature", "top_p"):
        value = request.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attrs[f"gen_ai.request.{key}"] = float(value)


def _response_fields(attrs: dict[str, Any], response: Any) -> None:
    """id, model and finish reasons, wherever the three formats keep them."""
    if not isinstance(response, dict):
        return
    _put(attrs, "gen_ai.response.id", response.get("id"))
    _put(attrs, "gen_ai.response.model", response.get("model"))
    reasons: list[str] = []
    choices = response.get("choices")
    if isinstance(choices, list):  # chat completions
        found = (c.get("finish_reason") for c in choices if isinstance(c, dict))
        reasons = [reason for reason in found if isinstance(reason, str)]
    elif isinstance(response.get("stop_reason"), str):  # messages
        reasons = [response["stop_reason"]]
    elif isinstance(response.get("status"), str):  # responses: why it ended, if incomplete
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        reasons = [reason if isinstance(reason, str) else response["status"]]
    if reasons:
        attrs["gen_ai.response.finish_reasons"] = reasons


def _error_type(values: Mapping[str, Any]) -> str | None:
    status = values["status"]
    if isinstance(status, int) and status >= 400:
        return str(status)
    if values["client_disconnected"]:
        return "client_disconnected"
    error = values["error"]
    if isinstance(error, str) and error.startswith("provider failed mid-response"):
        return "provider_failed_mid_response"
    return "_OTHER" if error else None


SEPARATE_INSTRUCTIONS = frozenset({"messages", "responses"})
"""Formats whose system prompt is a field of its own (`system`, `instructions`), which the
conventions put in `gen_ai.system_instructions`; in chat it is a message like the others."""


def _content(attrs: dict[str, Any], fmt: str, request: dict[str, Any], response: Any) -> None:
    adapter = FORMATS[fmt]
    asked = adapter.conversation(request, None)
    whole = adapter.conversation(request, response if isinstance(response, dict) else None)
    answer = whole[len(asked) :]
    if fmt in SEPARATE_INSTRUCTIONS:
        system = [m for m in asked if m.role == "system"]
        if system:
            parts = [{"type": "text", "content": m.content} for m in system if m.content]
            attrs["gen_ai.system_instructions"] = json.dumps(parts, ensure_ascii=False)
            asked = [m for m in asked if m.role != "system"]
    attrs["gen_ai.input.messages"] = json.dumps([_parts(m) for m in asked], ensure_ascii=False)
    if answer:
        reasons = attrs.get("gen_ai.response.finish_reasons") or [""]
        output = [{**_parts(m), "finish_reason": reasons[0]} for m in answer]
        attrs["gen_ai.output.messages"] = json.dumps(output, ensure_ascii=False)


def _parts(message: Message) -> dict[str, Any]:
    """A message in the GenAI conventions' shape: a role and typed parts."""
    parts: list[dict[str, Any]] = []
    if message.tool_call_id is not None:
        parts.append(
            {"type": "tool_call_response", "id": message.tool_call_id, "response": message.content}
        )
    elif message.content:
        parts.append({"type": "text", "content": message.content})
    for call in message.tool_calls:
        parts.append(
            {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
        )
    return {"role": message.role, "parts": parts}


class _Throttle(logging.Filter):
    """Lets one record through every `every_s`; says how many it held back meanwhile."""

    def __init__(self, every_s: float) -> None:
        super().__init__()
        self._every_s = every_s
        self._next = -float("inf")
        self._held = 0
        self._lock = threading.Lock()  # the SDK logs from its export thread and the sink's

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return False
            self._next = now + self._every_s
            held, self._held = self._held, 0
        if held:
            record.msg = f"{record.msg} ({held} more such lines held back)"
        return True


class SpanExport:
    """The SDK's tracer provider, batch processor and OTLP/HTTP exporter, in the sink child."""

    def __init__(self, settings: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._settings = settings
        self._throttles = {name: _Throttle(SDK_LOG_EVERY_S) for name in SDK_LOGGERS}
        for name, throttle in self._throttles.items():
            logging.getLogger(name).addFilter(throttle)
        self._kind = SpanKind.CLIENT
        self._error = (Status, StatusCode.ERROR)
        headers = {
            name: environ.get(variable, "") for name, variable in settings["headers"].items()
        }
        self._timeout_s: float = settings["timeout_s"]
        self._exporter = OTLPSpanExporter(
            endpoint=settings["endpoint"], headers=headers, timeout=self._timeout_s
        )
        self._stop_exporting: Callable[[], object] = self._exporter.shutdown  # untyped in the SDK
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": settings["service_name"]}),
            shutdown_on_exit=False,  # `close` does it, within its time
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(
                self._exporter,
                max_queue_size=QUEUE_SIZE,
                schedule_delay_millis=EXPORT_DELAY_MS,
                export_timeout_millis=int(settings["timeout_s"] * 1000),
            )
        )
        self._tracer = self._provider.get_tracer("skillproxy")
        self.failures = 0

    def emit(self, rows: Sequence[Sequence[Any]]) -> None:
        """Queue a span for each row; a row that cannot become one is logged, not raised."""
        for row in rows:
            try:
                self._emit(span_of(row, self._settings))
            except Exception:  # one odd row must cost neither the others nor the sink
                self.failures += 1
                if self.failures == 1:
                    log.exception("could not build a span for trace %s", row[0])

    def _emit(self, data: SpanData) -> None:
        span = self._tracer.start_span(
            data.name, kind=self._kind, attributes=data.attributes, start_time=data.start_ns
        )
        if data.error is not None:
            status, code = self._error
            span.set_status(status(code, data.error[:500]))
        span.end(end_time=data.end_ns)

    def close(self) -> None:
        """Export what is queued, then stop the processor's thread: within `timeout_s` in all.

        The SDK's own shutdown waits up to 30 s for the queue, each batch taking up to
        `timeout_s` against a dead collector; so it runs on a thread of its own, and past
        `timeout_s` the exporter is shut, which ends its retries and drops what is left."""
        closing = threading.Thread(
            target=self._provider.shutdown, name="otel-shutdown", daemon=True
        )
        closing.start()
        closing.join(self._timeout_s)
        if closing.is_alive():
            log.warning(
                "OpenTelemetry: the collector took over %ss; the spans not sent are dropped",
                self._timeout_s,
            )
            self._stop_exporting()
            closing.join(1.0)
        for name, throttle in self._throttles.items():
            logging.getLogger(name).removeFilter(throttle)


def open_export(
    settings: Mapping[str, Any] | None, environ: Mapping[str, str]
) -> SpanExport | None:
    """The export for the sink child's settings; None when off, or when it cannot start (the
    traces are stored regardless, and the log says why)."""
    if settings is None:
        return None
    try:
        return SpanExport(settings, environ)
    except Exception:
        log.exception("OpenTelemetry export could not start; traces are stored without spans")
        return None
