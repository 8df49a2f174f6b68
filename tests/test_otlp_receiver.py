"""`POST /otlp/v1/traces` on a real proxy, sent what an OpenTelemetry collector's `otlphttp`
exporter sends: OTLP/JSON, binary protobuf built with opentelemetry-proto's classes, gzip.

Covers skillproxy/otlp_receiver.py and skillproxy/otlp_wire.py: spans become traces and
episodes, a retried request adds nothing, a trace sent over two requests is one episode, some
bad spans are a partial success, and each failure is a `google.rpc.Status` with OTLP's status
code, in the request's encoding (decoded here with a Status type built from its .proto
definition, not with the code under test)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from learner.episodes import group_new_traces
from store import open_store
from tests.harness import ADMIN_TOKEN, RunningProxy
from tests.test_trace_import import imported

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "import" / "otlp-genai.jsonl"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
PROTOBUF = {**AUTH, "Content-Type": "application/x-protobuf"}
TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")


def _status_type() -> type[Message]:
    """google.rpc.Status from its definition in googleapis' google/rpc/status.proto (its
    `details` field, a repeated Any, is left out: the receiver sends none)."""
    file = descriptor_pb2.FileDescriptorProto(name="test_status.proto", package="google.rpc")
    status = file.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=5, label=1)  # int32
    status.field.add(name="message", number=2, type=9, label=1)  # string
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


STATUS = _status_type()


def post(proxy: RunningProxy, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(proxy.url + "/otlp/v1/traces", content=body, headers=headers)


def text(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def chat_span(span_id: str, start: int, question: str, answer: str | None) -> Span:
    """A chat span of the current conventions, its messages as JSON text (what SDKs write)."""
    asked = [{"role": "user", "parts": [{"type": "text", "content": question}]}]
    attributes = [
        text("gen_ai.operation.name", "chat"), text("gen_ai.provider.name", "anthropic"),
        text("gen_ai.request.model", "claude-sonnet-4-5"),
        KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=40)),
        KeyValue(key="gen_ai.usage.output_tokens", value=AnyValue(int_value=9)),
    ]  # fmt: skip
    if answer is not None:
        said = [{"role": "assistant", "parts": [{"type": "text", "content": answer}],
                 "finish_reason": "stop"}]  # fmt: skip
        attributes += [text("gen_ai.input.messages", json.dumps(asked)),
                       text("gen_ai.output.messages", json.dumps(said))]  # fmt: skip
    return Span(
        trace_id=TRACE, span_id=bytes.fromhex(span_id), name="chat claude-sonnet-4-5",
        kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=start, end_time_unix_nano=start + 10**9,
        attributes=attributes,
    )  # fmt: skip


def request_of(*spans: Span) -> bytes:
    export = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(
            resource=Resource(attributes=[text("service.name", "shop-agent")]),
            scope_spans=[ScopeSpans(
                scope=InstrumentationScope(name="opentelemetry.instrumentation.anthropic"),
                spans=list(spans),
            )],
        )]
    )  # fmt: skip
    data: bytes = export.SerializeToString()
    return data


def answer_of(response: httpx.Response) -> ExportTraceServiceResponse:
    assert response.status_code == 200, response.content
    assert response.headers["Content-Type"].startswith("application/x-protobuf")
    parsed = ExportTraceServiceResponse()
    parsed.ParseFromString(response.content)
    return parsed


# --------------------------------------------------------------------------- taking spans


def test_otlp_json_documents_become_traces_of_the_skillbook_the_header_names(
    proxy: RunningProxy,
) -> None:
    for line in FIXTURE.read_bytes().splitlines():
        answer = post(proxy, line, {**JSON, "X-Skillbook": "agents"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"].startswith("application/json")
        assert answer.json() == {}  # every span taken: no partial_success
    stored = imported(proxy, "agents")
    assert len(stored) == 6 and {t.source for t in stored} == {"import:otlp-http"}
    sessions = {t.session_id for t in stored}
    assert len(sessions) == 5 and "otlp-5b8efff798038103d269b633813fc60c" in sessions
    again = post(proxy, FIXTURE.read_bytes().splitlines()[0], {**JSON, "X-Skillbook": "agents"})
    assert again.status_code == 200 and len(imported(proxy, "agents")) == 6  # a retry
    assert imported(proxy, "default") == []


def test_protobuf_and_gzip_as_a_collector_sends_them_one_trace_over_two_requests(
    proxy: RunningProxy,
) -> None:
    first = request_of(chat_span("00f067aa0ba902b7", 10**18, "Open on Sunday?", "From 11:00."))
    answer = answer_of(post(proxy, first, PROTOBUF))
    assert not answer.HasField("partial_success")
    second = request_of(chat_span("00f067aa0ba902b8", 10**18 + 5 * 10**9, "And Monday?", "9:00."))
    squeezed = gzip.compress(second)
    assert answer_of(post(proxy, squeezed, {**PROTOBUF, "Content-Encoding": "gzip"}))
    answer_of(post(proxy, squeezed, {**PROTOBUF, "Content-Encoding": "gzip"}))  # a retry
    stored = imported(proxy, "default")
    assert len(stored) == 2 and {t.session_id for t in stored} == {f"otlp-{TRACE.hex()}"}
    store = open_store(proxy.config.store.url)
    try:
        group_new_traces(store, settle_s=0)
        trace = store.traces.get(stored[1].trace_id)
        assert trace is not None and trace.input_tokens == 40 and trace.model == "claude-sonnet-4-5"
    finally:
        store.close()
    [episode] = proxy.admin("GET", "/episodes", params={"skillbook": "default"}).json()["data"]
    assert episode["trace_count"] == 2


def test_unusable_spans_are_a_partial_success_and_the_others_are_stored(
    proxy: RunningProxy,
) -> None:
    silent = chat_span("00f067aa0ba902c1", 10**18, "Hi", None)  # content not recorded
    broken = Span(trace_id=b"\x01" * 3, span_id=b"\x02" * 8, name="chat x")
    broken.attributes.append(text("gen_ai.operation.name", "chat"))
    good = chat_span("00f067aa0ba902c2", 10**18, "Hi", "Hello.")
    plain = Span(trace_id=TRACE, span_id=b"\x03" * 8, name="GET /healthz")  # no model call
    answer = answer_of(post(proxy, request_of(silent, broken, good, plain), PROTOBUF))
    assert answer.partial_success.rejected_spans == 2
    assert "no messages recorded" in answer.partial_success.error_message
    assert len(imported(proxy, "default")) == 1

    document = json.loads(FIXTURE.read_text().splitlines()[0])
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["spanId"] = "xyz"
    answered = post(proxy, json.dumps(document).encode(), JSON)
    assert answered.status_code == 200
    partial = answered.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "spanId" in partial["errorMessage"]


def test_a_value_of_the_wrong_type_rejects_its_span_not_the_request(proxy: RunningProxy) -> None:
    """An `arrayValue` that is not `{"values": [...]}` once made the whole request a 500."""
    document = json.loads(FIXTURE.read_text().splitlines()[0])
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[1]["attributes"].append({"key": "odd", "value": {"arrayValue": [1]}})
    spans[2]["attributes"].append({"key": "odd", "value": {"kvlistValue": "x"}})
    answered = post(proxy, json.dumps(document).encode(), JSON)
    assert answered.status_code == 200, answered.text
    partial = answered.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2" and "arrayValue is" in partial["errorMessage"]


def test_privacy_redacts_received_spans_as_it_does_proxied_traces(make_proxy: Any) -> None:
    proxy = make_proxy(privacy={"stored_skillbooks": ["*"]})
    span = chat_span("00f067aa0ba902d1", 10**18, "Mail bob@example.org", "Sent to bob@example.org.")
    answer_of(post(proxy, request_of(span), PROTOBUF))
    [stored] = imported(proxy, "default")
    store = open_store(proxy.config.store.url)
    try:
        trace = store.traces.get(stored.trace_id)
    finally:
        store.close()
    assert trace is not None
    bodies = json.dumps([trace.request_json, trace.response_json])
    assert "bob@example.org" not in bodies and bodies.count("[EMAIL]") == 2


# --------------------------------------------------------------------------- failures


def _status(response: httpx.Response, code: int) -> str:
    """The Status in a failure's body, in the request's encoding; its message."""
    if response.headers["Content-Type"].startswith("application/x-protobuf"):
        status = STATUS()
        status.ParseFromString(response.content)
        assert status.code == code  # type: ignore[attr-defined]
        message: str = status.message  # type: ignore[attr-defined]
        return message
    body = response.json()
    assert body["code"] == code and set(body) == {"code", "message"}
    return str(body["message"])


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "words"),
    [
        (b"{not json", JSON, 400, 3, "not JSON"),
        (b'{"resourceSpans": {}}', JSON, 400, 3, "resourceSpans"),
        (b"\xff\x00garbage", PROTOBUF, 400, 3, "not a protobuf ExportTraceServiceRequest"),
        (b"{}", {"Content-Type": "application/json"}, 401, 16, "Bearer"),
        (b"{}", {**PROTOBUF, "Authorization": "Bearer wrong"}, 403, 7, "not valid"),
        (b"{}", {**AUTH, "Content-Type": "text/plain"}, 415, 3, "application/x-protobuf"),
        (b"{}", {**JSON, "Content-Encoding": "snappy"}, 415, 3, "Content-Encoding 'snappy'"),
        (b"not gzip", {**PROTOBUF, "Content-Encoding": "gzip"}, 400, 3, "Content-Encoding"),
        (b"{}", {**JSON, "X-Skillbook": "no/such"}, 400, 3, "X-Skillbook"),
    ],
)
def test_a_bad_request_is_a_status_with_otlps_code(
    proxy: RunningProxy, body: bytes, headers: dict[str, str], status: int, code: int, words: str
) -> None:
    answer = post(proxy, body, headers)
    assert answer.status_code == status, answer.content
    assert words in _status(answer, code)


def test_a_body_over_the_cap_is_413_even_when_it_came_gzipped(make_proxy: Any) -> None:
    proxy = make_proxy(server={"max_body_bytes": 4096})
    spans = [chat_span(f"{n + 1:016x}", 10**18 + n, "x" * 200, "y") for n in range(20)]
    body = request_of(*spans)
    assert len(gzip.compress(body)) < 4096 < len(body)
    answer = post(proxy, gzip.compress(body), {**PROTOBUF, "Content-Encoding": "gzip"})
    assert answer.status_code == 413
    assert "server.max_body_bytes" in _status(answer, 8)
    assert imported(proxy, "default") == []


def test_only_post_exports(proxy: RunningProxy) -> None:
    answer = httpx.get(proxy.url + "/otlp/v1/traces", headers=AUTH)
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    assert "POST" in _status(answer, 12)


def test_the_opentelemetry_sdks_own_exporter_delivers_gzip_protobuf(proxy: RunningProxy) -> None:
    """What an application (or a collector's otlphttp exporter) sends: the SDK's OTLP/HTTP
    exporter, gzip on, its bearer header, over a real socket."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = OTLPSpanExporter(
        endpoint=proxy.url + "/otlp/v1/traces", headers={**AUTH, "X-Skillbook": "sdk"},
        compression=Compression.Gzip, timeout=10,
    )  # fmt: skip
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    asked = [{"role": "user", "parts": [{"type": "text", "content": "Gift wrap?"}]}]
    said = [{"role": "assistant", "parts": [{"type": "text", "content": "Yes, for 2 EUR."}],
             "finish_reason": "stop"}]  # fmt: skip
    with provider.get_tracer("shop-agent").start_as_current_span("chat gpt-4o") as span:
        span.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 6, "gen_ai.input.messages": json.dumps(asked),
            "gen_ai.output.messages": json.dumps(said),
        })  # fmt: skip
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    [stored] = imported(proxy, "sdk")
    assert stored.session_id == f"otlp-{trace_id}" and stored.source == "import:otlp-http"
