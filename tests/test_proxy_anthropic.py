"""Anthropic Messages through the proxy with the real `anthropic` SDK."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

from proxy.render import HEADER
from tests.fakes import replies
from tests.harness import RunningProxy

RULE = "When a refund is requested, confirm the order id before promising any amount."
THINKING = {
    "type": "thinking",
    "thinking": "The user wants a refund; I should check the order first.",
    "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds/+signature==",
}


def approve_skill(proxy: RunningProxy, skillbook: str = "claude") -> None:
    proxy.add_skill(skillbook, "refunds", RULE)


def client(proxy: RunningProxy, skillbook: str = "claude", **kw: Any) -> anthropic.Anthropic:
    return proxy.anthropic(skillbook, key="sk-ant-test", **kw)


def test_string_system_gets_the_section_appended(proxy: RunningProxy) -> None:
    approve_skill(proxy)
    proxy.provider.enqueue(replies.text("Let me check that order."))
    raw = client(proxy).messages.with_raw_response.create(
        model="claude-test-model",
        max_tokens=100,
        system="You are a refunds agent.",
        messages=[{"role": "user", "content": "Refund me"}],
    )
    message = raw.parse()
    assert message.content[0].text == "Let me check that order."  # type: ignore[union-attr]
    sent = proxy.provider.last.json()
    assert sent["system"].startswith("You are a refunds agent.\n\n" + HEADER)
    assert sent["system"].endswith(RULE)
    assert sent["messages"] == [{"role": "user", "content": "Refund me"}]
    assert proxy.provider.last.path == "/v1/messages"
    assert raw.headers["X-Skills-Injected"] == "1"
    trace = proxy.trace(raw.headers["X-Trace-Id"])
    assert trace["format"] == "messages" and trace["skillbook"] == "claude"
    assert trace["model"] == "claude-test-model"
    assert trace["output_tokens"] == message.usage.output_tokens
    assert trace["response_json"]["content"][0]["text"] == "Let me check that order."


def test_block_system_keeps_client_blocks_and_cache_control(proxy: RunningProxy) -> None:
    approve_skill(proxy)
    system: list[dict[str, Any]] = [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=1"},
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
    ]
    client(proxy).messages.create(
        model="claude-test-model",
        max_tokens=10,
        system=system,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "hi"}],
    )
    sent = proxy.provider.last.json()["system"]
    assert sent[:2] == system
    assert len(sent) == 3 and sent[2]["type"] == "text" and RULE in sent[2]["text"]
    assert "cache_control" not in sent[2]


def test_thinking_blocks_and_signatures_arrive_untouched(proxy: RunningProxy) -> None:
    approve_skill(proxy)
    history = [
        {"role": "user", "content": "Refund order 42"},
        {
            "role": "assistant",
            "content": [
                THINKING,
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
                {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"id": 42}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "found"}],
        },
    ]
    client(proxy).messages.create(
        model="claude-test-model",
        max_tokens=10,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=history,  # type: ignore[call-overload]
    )
    sent = proxy.provider.last
    assert sent.json()["messages"] == history
    assert json.dumps(THINKING["signature"]).encode() in sent.body
    assert RULE in sent.json()["system"]


def test_streamed_tool_use_and_thinking_are_relayed_and_folded(proxy: RunningProxy) -> None:
    proxy.provider.enqueue(replies.thinking("I should look it up.", "Looking it up."))
    with client(proxy).messages.stream(
        model="claude-test-model",
        max_tokens=100,
        messages=[{"role": "user", "content": "where is order 42?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking"
    assert final.content[0].signature
    [trace] = proxy.traces(1)
    folded = trace["response_json"]
    assert folded["content"][0]["signature"] == final.content[0].signature
    assert folded["content"][1]["text"] == "Looking it up."
    assert folded["stop_reason"] == final.stop_reason
    assert trace["stream"] is True

    args = {"order_id": "42", "verbose": True}
    proxy.provider.enqueue(
        replies.tool_calls(
            [{"name": "lookup", "arguments": json.dumps(args)}], finish_reason="tool_calls"
        )
    )
    with client(proxy).messages.stream(
        model="claude-test-model",
        max_tokens=100,
        tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "where is order 42?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[-1].input == args  # type: ignore[union-attr]
    trace = proxy.traces(2)[1]
    assert trace["response_json"]["content"][-1]["input"] == args
    assert trace["response_json"]["stop_reason"] == "tool_use"


def test_headers_and_key_pass_through_and_count_tokens_works(proxy: RunningProxy) -> None:
    sdk = client(proxy, default_headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    counted = sdk.messages.count_tokens(
        model="claude-test-model", messages=[{"role": "user", "content": "hello there"}]
    )
    assert counted.input_tokens > 0
    seen = proxy.provider.last
    assert seen.path == "/v1/messages/count_tokens"
    # newer SDKs send the key as a bearer token, older ones as x-api-key: either passes through
    assert "sk-ant-test" in (seen.header("x-api-key") or seen.header("Authorization") or "")
    assert seen.header("anthropic-version") and seen.header("anthropic-beta") == (
        "prompt-caching-2024-07-31"
    )
    [trace] = proxy.traces(1)
    assert trace["key_fingerprint"].startswith("fp_")
    assert trace["format"] is None  # counted, not a conversation turn for the learner


def test_count_tokens_counts_the_request_as_it_will_be_sent(proxy: RunningProxy) -> None:
    approve_skill(proxy)
    client(proxy).messages.count_tokens(
        model="claude-test-model", system="S", messages=[{"role": "user", "content": "hi"}]
    )
    assert RULE in proxy.provider.last.json()["system"]


def test_configured_anthropic_key_replaces_the_clients(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(upstream={"anthropic_api_key": "sk-ant-server"})
    client(proxy).messages.create(
        model="claude-test-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    assert proxy.provider.last.header("x-api-key") == "sk-ant-server"
    assert proxy.provider.last.header("Authorization") is None


def test_provider_errors_are_relayed_verbatim(proxy: RunningProxy) -> None:
    reply = replies.anthropic_error(429, "rate_limit_error", "Number of requests exceeded")
    proxy.provider.enqueue(reply)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client(proxy).messages.create(
            model="claude-test-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.response.content == reply.error_body


def test_proxy_errors_parse_as_anthropic_errors(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(server={"max_body_bytes": 500})
    with pytest.raises(anthropic.APIStatusError) as caught:
        client(proxy).messages.create(
            model="claude-test-model",
            max_tokens=5,
            messages=[{"role": "user", "content": "x" * 1000}],
        )
    assert caught.value.status_code == 413
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    invalid = httpx.post(proxy.url + "/v1/messages", content=b"{oops")
    assert invalid.status_code == 400
    assert invalid.json()["type"] == "error"
    assert invalid.json()["error"]["type"] == "invalid_request_error"


def test_unreachable_anthropic_upstream_is_an_anthropic_502(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(upstream={"anthropic_base_url": "http://127.0.0.1:9"})
    with pytest.raises(anthropic.InternalServerError) as caught:
        client(proxy).messages.create(
            model="claude-test-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 502
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
