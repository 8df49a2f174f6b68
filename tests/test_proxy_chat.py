"""Chat Completions through the proxy with the real `openai` SDK: nothing changed, all recorded.

Covers proxy/handlers.py and proxy/forwarding.py."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import openai
from openai.types.chat import ChatCompletionToolParam

from tests.fakes import replies
from tests.harness import RunningProxy

TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


def client(proxy: RunningProxy, key: str = "sk-test-client-key-123456") -> openai.OpenAI:
    return proxy.openai(key=key)


def test_non_streaming_answer_reaches_sdk_and_trace(proxy: RunningProxy) -> None:
    proxy.provider.enqueue(replies.text("The return window is 30 days."))
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "The return window is 30 days."
    trace_id = raw.headers["X-Trace-Id"]
    trace = proxy.trace(trace_id)
    assert trace["format"] == "chat"
    assert trace["model"] == "gpt-4o-mini"
    assert trace["status"] == 200
    assert trace["skillbook"] == "default"
    assert trace["path"] == "/v1/chat/completions"
    assert trace["request_json"]["messages"][1] == {"role": "user", "content": "Hi"}
    assert trace["response_json"] == json.loads(raw.http_response.content)
    assert trace["input_tokens"] == completion.usage.prompt_tokens  # type: ignore[union-attr]
    assert trace["output_tokens"] == completion.usage.completion_tokens  # type: ignore[union-attr]
    assert trace["latency_ms"] > 0 and trace["ttfb_ms"] > 0
    assert not trace["stream"] and not trace["client_disconnected"]


def test_forwarded_bytes_equal_client_bytes_with_every_field(proxy: RunningProxy) -> None:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "naïve café ☕"}],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "lookup_order"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "temperature": 0.25,
        "seed": 12345678901234567,
        "field_from_the_future": {"nested": [1, 2.5, None, True]},
    }
    raw = json.dumps(body, indent=1).encode()
    response = httpx.post(
        proxy.v1 + "/chat/completions",
        content=raw,
        headers={
            "Authorization": "Bearer sk-abc",
            "Content-Type": "application/json",
            "X-Skillproxy-Inject": "off",
        },
    )
    assert response.status_code == 200
    assert proxy.provider.last.body == raw
    assert len(response.json()["choices"]) == 2


def test_streaming_text_and_usage_are_relayed_and_folded(proxy: RunningProxy) -> None:
    proxy.provider.enqueue(replies.text("one two three four five six"))
    stream = client(proxy).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four five six"
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    [trace] = proxy.traces(1)
    assert trace["stream"] is True
    message = trace["response_json"]["choices"][0]["message"]
    assert message["content"] == text
    assert trace["response_json"]["choices"][0]["finish_reason"] == "stop"
    assert trace["output_tokens"] == usage.completion_tokens
    assert trace["input_tokens"] == usage.prompt_tokens


def test_streamed_tool_calls_are_folded_with_full_arguments(proxy: RunningProxy) -> None:
    args = json.dumps({"order_id": "A-1001", "note": "split across many deltas"})
    proxy.provider.enqueue(
        replies.tool_calls(
            [
                {"name": "lookup_order", "arguments": args},
                {"name": "lookup_order", "arguments": "{}"},
            ]
        )
    )
    stream = client(proxy).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "where is A-1001?"}],
        tools=TOOLS,
        stream=True,
    )
    pieces: dict[int, str] = {}
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            pieces[call.index] = pieces.get(call.index, "") + (call.function.arguments or "")  # type: ignore[union-attr]
    assert pieces == {0: args, 1: "{}"}
    [trace] = proxy.traces(1)
    calls = trace["response_json"]["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == [args, "{}"]
    assert calls[0]["function"]["name"] == "lookup_order" and calls[0]["id"]
    assert trace["response_json"]["choices"][0]["finish_reason"] == "tool_calls"
    assert trace["request_json"]["tools"] == TOOLS


def test_async_client_and_skillbook_prefix(proxy: RunningProxy) -> None:
    async def go() -> str:
        async with openai.AsyncOpenAI(
            base_url=proxy.sb("support-bot"), api_key="k", max_retries=0
        ) as aclient:
            done = await aclient.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hello"}]
            )
            return done.choices[0].message.content or ""

    assert asyncio.run(go()) == "ok"
    [trace] = proxy.traces(1)
    assert trace["skillbook"] == "support-bot"
    assert proxy.provider.last.path == "/v1/chat/completions"


def test_skillbook_header_chooses_skillbook(proxy: RunningProxy) -> None:
    response = httpx.post(
        proxy.v1 + "/chat/completions",
        json={"model": "m", "messages": []},
        headers={"X-Skillbook": "from-header"},
    )
    assert response.headers["X-Skillbook"] == "from-header"
    assert proxy.trace(response.headers["X-Trace-Id"])["skillbook"] == "from-header"
    assert "x-skillbook" not in {k.lower() for k in proxy.provider.last.headers}


def test_models_and_other_routes_pass_through_and_are_logged(proxy: RunningProxy) -> None:
    models = client(proxy).models.list()
    assert [m.id for m in models.data] == ["fake-model"]
    missing = httpx.get(proxy.v1 + "/no/such/route?x=1")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    traces = proxy.traces(2)
    assert [(t["method"], t["path"], t["status"]) for t in traces] == [
        ("GET", "/v1/models", 200),
        ("GET", "/v1/no/such/route?x=1", 404),
    ]
    assert traces[0]["format"] is None
    assert traces[0]["response_json"]["data"][0]["id"] == "fake-model"


def test_key_goes_upstream_and_only_a_fingerprint_is_stored(proxy: RunningProxy) -> None:
    key = "sk-proj-SECRETSECRETSECRET-0123456789"
    client(proxy, key).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert proxy.provider.last.header("Authorization") == f"Bearer {key}"
    [trace] = proxy.traces(1)
    assert trace["key_fingerprint"].startswith("fp_") and key not in trace["key_fingerprint"]
    proxy.server.stop()  # checkpoint the WAL so every byte the proxy wrote is in the files
    stored = b"".join(
        p.read_bytes() for p in Path(proxy.config.store.location.path).parent.glob("*.db*")
    )
    assert key.encode() not in stored and b"SECRETSECRET" not in stored


def test_configured_upstream_key_replaces_the_clients(make_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy = make_proxy(upstream={"api_key": "sk-server-side"})
    client(proxy, "sk-client").chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert proxy.provider.last.header("Authorization") == "Bearer sk-server-side"


def test_headers_pass_through_both_ways_minus_hop_by_hop(proxy: RunningProxy) -> None:
    proxy.provider.enqueue(replies.text("hi", headers={"X-Provider-Thing": "p1"}))
    response = httpx.post(
        proxy.v1 + "/chat/completions",
        json={"model": "m", "messages": []},
        headers={
            "X-Client-Thing": "c1",
            "OpenAI-Organization": "org-1",
            "Connection": "keep-alive",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic eDp5",
        },
    )
    assert response.headers["X-Provider-Thing"] == "p1"
    assert response.headers["X-Trace-Id"].startswith("tr_")
    seen = {k.lower(): v for k, v in proxy.provider.last.headers.items()}
    assert seen["x-client-thing"] == "c1" and seen["openai-organization"] == "org-1"
    assert "keep-alive" not in seen and "proxy-authorization" not in seen


def test_proxy_adds_no_user_agent_or_encoding_of_its_own(proxy: RunningProxy) -> None:
    """Answers are relayed still encoded: only the client's encodings may reach the provider."""
    body = b'{"model":"m","messages":[]}'
    host, port = proxy.url.removeprefix("http://").split(":")
    bare = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(bare)
        assert conn.recv(64).startswith(b"HTTP/1.1 200")
    seen = {k.lower() for k in proxy.provider.last.headers}
    assert "user-agent" not in seen and "accept-encoding" not in seen

    httpx.post(
        proxy.v1 + "/chat/completions",
        content=body,
        headers={"User-Agent": "agent/1.0", "Accept-Encoding": "br"},
    )
    sent = {k.lower(): v for k, v in proxy.provider.last.headers.items()}
    assert sent["user-agent"] == "agent/1.0" and sent["accept-encoding"] == "br"


def test_streaming_relays_each_event_as_it_arrives(proxy: RunningProxy) -> None:
    proxy.provider.enqueue(replies.text("a b c d", chunk_delay=0.3))
    with httpx.stream(
        "POST",
        proxy.v1 + "/chat/completions",
        json={"model": "m", "messages": [], "stream": True},
        timeout=10,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["X-Accel-Buffering"] == "no"
        events = response.iter_lines()
        first = next(line for line in events if line.startswith("data:"))
        assert '"role":"assistant"' in first.replace(" ", "")
        rest = [line for line in events if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"
    trace = proxy.trace(response.headers["X-Trace-Id"])
    assert trace["ttfb_ms"] < trace["latency_ms"] - 500
