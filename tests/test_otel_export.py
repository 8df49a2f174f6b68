"""OpenTelemetry export: a proxy with `[otel]` on sends one span per exchange to a loopback
OTLP/HTTP receiver started here, decoded with opentelemetry-proto's own messages; a collector
that never answers costs the requests nothing.

Covers proxy/otel_export.py and the span path of proxy/trace_sink.py."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from core.config import ConfigError, load_config
from proxy.otel_export import QUEUE_SIZE, SDK_LOGGERS, SpanExport, span_of
from skillproxy.app import create_app
from store.columns import PRICED_COLUMNS
from tests.fakes import replies
from tests.fakes.server_thread import ServerThread
from tests.harness import RunningProxy, proxy_config

ROOT = Path(__file__).resolve().parent.parent


class Receiver:
    """An OTLP/HTTP traces endpoint: keeps every span with its resource, and each request's
    headers."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        return app

    async def _traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        with self._lock:
            self.headers.append(dict(request.headers))
            for resource_spans in message.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "kind": span.kind,
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "status": span.status.code,
                                "description": span.status.message,
                                "attributes": attributes(span.attributes),
                                "resource": resource,
                            }
                        )
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    def wait(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.spans) >= count, f"expected {count} spans, got {len(self.spans)}"
        return sorted(self.spans, key=lambda s: s["start"])


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: plain(pair.value) for pair in pairs}


def plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [plain(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    received = Receiver()
    with ServerThread(received.app()) as server:
        yield received, f"{server.url}/v1/traces"


def test_each_exchange_becomes_a_span_with_the_genai_attributes(
    make_proxy: Callable[..., RunningProxy], receiver: tuple[Receiver, str]
) -> None:
    received, endpoint = receiver
    proxy = make_proxy(otel={"enabled": True, "endpoint": endpoint, "service_name": "agents"})
    proxy.add_skill("support", "tone", "Answer in one short sentence.")
    secret = "sk-never-in-a-span-123456"
    raw = proxy.openai("support", key=secret).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        max_tokens=50,
        temperature=0.2,
        messages=[{"role": "user", "content": "Where is my parcel?"}],
    )
    completion = raw.parse()
    proxy.anthropic().messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
    )
    proxy.provider.enqueue(replies.openai_error(429, "slow down", "rate_limit_error"))
    assert httpx.post(
        f"{proxy.v1}/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
    ).status_code == 429  # fmt: skip
    chat, messages, limited = received.wait(3)

    trace = proxy.trace(raw.headers["X-Trace-Id"])
    attrs = chat["attributes"]
    assert chat["name"] == "chat gpt-4o-mini"
    assert chat["kind"] == 3  # SPAN_KIND_CLIENT
    assert chat["resource"]["service.name"] == "agents"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.response.model"] == completion.model
    assert attrs["gen_ai.response.id"] == completion.id
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens  # type: ignore[union-attr]
    assert attrs["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens  # type: ignore[union-attr]
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == int(proxy.provider_url.rsplit(":", 1)[1])
    assert attrs["http.response.status_code"] == 200
    assert "error.type" not in attrs and chat["status"] == 0
    assert attrs["skillproxy.skillbook"] == "support"
    assert attrs["skillproxy.injected_skills"] == 1
    assert attrs["skillproxy.skillbook_version"] == trace["skillbook_version"]
    assert attrs["skillproxy.trace_id"] == trace["id"]
    assert chat["start"] == int(trace["created_at"] * 1e9)
    assert chat["end"] - chat["start"] == pytest.approx(trace["latency_ms"] * 1e6, abs=1e3)
    assert not any(k.startswith("gen_ai.input") or k.startswith("gen_ai.output") for k in attrs)
    assert all(secret not in str(v) for span in received.spans for v in span["attributes"].values())

    assert messages["attributes"]["gen_ai.provider.name"] == "anthropic"
    assert messages["attributes"]["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert limited["attributes"]["error.type"] == "429"
    assert limited["status"] == 2  # STATUS_CODE_ERROR


def test_headers_come_from_the_environment_and_content_only_when_asked(
    tmp_path: Path,
    fake_provider: Any,
    receiver: tuple[Receiver, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received, endpoint = receiver
    _, provider_server = fake_provider
    monkeypatch.setenv("TEST_OTEL_TEAM_KEY", "team-secret")  # the sink child inherits it
    settings = {
        "enabled": True,
        "endpoint": endpoint,
        "headers": {"x-honeycomb-team": "TEST_OTEL_TEAM_KEY"},
        "capture_content": True,
    }
    base = proxy_config(tmp_path, provider_server.url)
    config = load_config(
        environ={"TEST_OTEL_TEAM_KEY": "team-secret"},
        overrides={**base.model_dump(), "otel": settings},
    )

    async def build() -> web.Application:
        return create_app(config)

    with ServerThread(build, handler_cancellation=True) as server:
        httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "Where is it?"}]},
        )
        [span] = received.wait(1)
    assert received.headers[0]["x-honeycomb-team"] == "team-secret"
    attrs = span["attributes"]
    assert '"content": "Where is it?"' in attrs["gen_ai.input.messages"]
    assert '"role": "assistant"' in attrs["gen_ai.output.messages"]


def blackhole() -> socket.socket:
    """A port that accepts connections and never answers: a collector that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def test_a_collector_that_hangs_neither_delays_nor_fails_requests(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    with blackhole() as hole:
        endpoint = f"http://127.0.0.1:{hole.getsockname()[1]}/v1/traces"
        slow = make_proxy(otel={"enabled": True, "endpoint": endpoint, "timeout_s": 1.0})
        took = []
        with httpx.Client() as client:
            for _ in range(20):
                started = time.perf_counter()
                response = client.post(
                    f"{slow.v1}/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
                )
                took.append(time.perf_counter() - started)
                assert response.status_code == 200
        assert len(slow.traces(20)) == 20  # stored all the same
        assert max(took) < 0.5, took
        started = time.perf_counter()
        slow.server.stop()  # the sink gives up on the last spans within timeout_s
        assert time.perf_counter() - started < 8


def row(**values: Any) -> tuple[Any, ...]:
    defaults: dict[str, Any] = dict.fromkeys(PRICED_COLUMNS)
    defaults.update(id="tr_1", created_at=1.5, skillbook="b", method="POST", stream=0)
    defaults.update(client_disconnected=0, latency_ms=2.0, injected_skill_ids="[]")
    defaults.update(values)
    return tuple(defaults[c] for c in PRICED_COLUMNS)


SETTINGS = {
    "capture_content": False,
    "openai_base_url": "https://api.openai.com/v1",
    "anthropic_base_url": "https://api.anthropic.com",
}


def test_a_responses_answer_cut_short_says_why_and_a_hang_up_is_an_error() -> None:
    response = json.dumps(
        {
            "id": "resp_1",
            "model": "m",
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
        }
    )
    span = span_of(
        row(path="/v1/responses", format="responses", model="m", status=200,
            response_json=response, client_disconnected=1),
        SETTINGS,
    )  # fmt: skip
    assert span.attributes["gen_ai.response.finish_reasons"] == ["max_output_tokens"]
    assert span.attributes["server.address"] == "api.openai.com"
    assert span.attributes["server.port"] == 443
    assert span.attributes["error.type"] == "client_disconnected"
    assert (span.start_ns, span.end_ns) == (1_500_000_000, 1_502_000_000)


def test_captured_content_keeps_system_instructions_apart_and_says_why_it_ended() -> None:
    request = {"model": "c", "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}
    response = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "c",
        "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
    }  # fmt: skip
    span = span_of(
        row(path="/v1/messages", format="messages", model="c", status=200,
            request_json=json.dumps(request), response_json=json.dumps(response)),
        {**SETTINGS, "capture_content": True},
    )  # fmt: skip
    attrs = span.attributes
    assert json.loads(attrs["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]}
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello"}],
         "finish_reason": "end_turn"}
    ]  # fmt: skip


def test_a_pass_through_span_is_named_by_its_route() -> None:
    span = span_of(row(method="GET", path="/v1/models/gpt-4o", status=200), SETTINGS)
    assert span.name == "GET /v1/models"
    assert "gen_ai.operation.name" not in span.attributes
    assert span.error is None
    unknown = span_of(row(method="GET", path="/v1/nothing/here", status=404), SETTINGS)
    assert unknown.name == "GET"  # never a made-up "/v1/other"


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"endpoint": "collector:4318"}, "http:// or https:// URL"),
        ({"headers": {"Authorization": "Bearer abc"}}, "name of an environment variable"),
        ({"headers": {"bad header": "X"}}, "not an HTTP header name"),
        ({"enabled": True, "headers": {"Authorization": "UNSET_VAR"}}, "UNSET_VAR is not set"),
        ({"timeout_s": 60}, "otel.timeout_s"),
        ({"service_name": ""}, "otel.service_name"),
    ],
)
def test_bad_otel_settings_are_refused(settings: dict[str, Any], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_config(environ={}, overrides={"otel": settings})


def test_a_secret_given_as_a_header_is_not_repeated_in_the_error() -> None:
    with pytest.raises(ConfigError, match="name of an environment variable") as refused:
        load_config(environ={}, overrides={"otel": {"headers": {"x-key": "sk-live-123"}}})
    assert "sk-live-123" not in str(refused.value)


def test_headers_can_come_from_the_environment_as_json() -> None:
    config = load_config(environ={"SKILLPROXY_OTEL__HEADERS": '{"x-team": "TEAM_KEY"}'})
    assert config.otel.headers == {"x-team": "TEAM_KEY"}
    assert hash(config) == hash(config.model_copy())  # frozen, and hashable with its table
    with pytest.raises(ConfigError, match="not a JSON object"):
        load_config(environ={"SKILLPROXY_OTEL__HEADERS": "x-team=TEAM_KEY"})


def test_enabled_without_the_sdk_the_start_stops_with_one_line(tmp_path: Path) -> None:
    """A Python where the `otel` extra is missing (its module blocked before anything runs)."""
    program = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "from skillproxy.cli import main\n"
        f"sys.exit(main(['serve', '--port', '0', '--db', {str(tmp_path / 'x.db')!r}]))\n"
    )
    env = {**os.environ, "SKILLPROXY_OTEL__ENABLED": "true"}
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "otel.enabled needs the OpenTelemetry SDK" in lines[0]
    assert "pip install 'skillproxy[otel]'" in lines[0]


def test_closing_against_a_hung_collector_takes_at_most_timeout_s() -> None:
    """Eight batches queued, each export hanging for `timeout_s`: the SDK alone would wait for
    them all, one after another."""
    with blackhole() as hole:
        settings = {
            **SETTINGS,
            "endpoint": f"http://127.0.0.1:{hole.getsockname()[1]}/v1/traces",
            "headers": {},
            "service_name": "skillproxy",
            "timeout_s": 0.3,
        }
        export = SpanExport(settings, {})
        export.emit([row(id=f"tr_{n}") for n in range(8 * 512)])
        started = time.perf_counter()
        export.close()
        assert time.perf_counter() - started < 1.2


def test_a_dead_collector_does_not_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """The SDK logs every retry, every failed batch and every span dropped at a full queue:
    against a dead collector under load, that is a line per request."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        settings = {
            **SETTINGS,
            "endpoint": f"http://127.0.0.1:{closed.getsockname()[1]}/v1/traces",
            "headers": {},
            "service_name": "skillproxy",
            "timeout_s": 0.3,
        }
        with caplog.at_level(logging.INFO):
            export = SpanExport(settings, {})
            export.emit([row(id=f"tr_{n}") for n in range(QUEUE_SIZE + 200)])
            time.sleep(0.5)  # a few exports fail
            export.close()
    sdk = [r for r in caplog.records if r.name.startswith("opentelemetry")]
    assert 1 <= len(sdk) <= len(SDK_LOGGERS), [r.getMessage() for r in sdk]
