"""Errors: the provider's relayed verbatim, the proxy's own in the caller's wire format.

Covers proxy/errors.py."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from tests.fakes import replies
from tests.harness import RunningProxy


def sdk(proxy: RunningProxy) -> openai.OpenAI:
    return proxy.openai()


def test_provider_error_is_relayed_verbatim(proxy: RunningProxy) -> None:
    reply = replies.openai_error(429, "Rate limit reached", "requests", "rate_limit_exceeded")
    proxy.provider.enqueue(reply, reply)
    response = httpx.post(proxy.v1 + "/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 429
    assert response.content == reply.error_body
    with pytest.raises(openai.RateLimitError, match="Rate limit reached"):
        sdk(proxy).chat.completions.create(model="m", messages=[])
    trace = proxy.trace(response.headers["X-Trace-Id"])
    assert trace["status"] == 429
    assert trace["response_json"]["error"]["code"] == "rate_limit_exceeded"


def test_invalid_json_is_400_in_openai_shape(proxy: RunningProxy) -> None:
    response = httpx.post(
        proxy.v1 + "/chat/completions",
        content=b'{"model": "m", "messages": [',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"
    assert "not valid JSON" in error["message"]
    assert proxy.provider.received == []
    trace = proxy.trace(response.headers["X-Trace-Id"])
    assert trace["status"] == 400 and "invalid_json" in trace["error"]


def test_json_that_is_not_an_object_is_400(proxy: RunningProxy) -> None:
    response = httpx.post(proxy.v1 + "/chat/completions", json=[1, 2])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"


def test_body_over_the_limit_is_413(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(server={"max_body_bytes": 1000})
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 2000}]}
    response = httpx.post(proxy.v1 + "/chat/completions", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        yield b"y" * 5000
        yield b'"}]}'

    response = httpx.post(proxy.v1 + "/chat/completions", content=chunked())
    assert response.status_code == 413
    assert proxy.provider.received == []


def test_invalid_skillbook_name_is_400(proxy: RunningProxy) -> None:
    response = httpx.post(
        proxy.v1 + "/chat/completions", json={}, headers={"X-Skillbook": "no/slashes"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_skillbook"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_provider_is_502(make_proxy: Callable[..., RunningProxy]) -> None:
    port = _closed_port()
    proxy = make_proxy(upstream={"openai_base_url": f"http://127.0.0.1:{port}/v1"})
    response = httpx.post(proxy.v1 + "/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unreachable" and error["type"] == "upstream_error"
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(proxy).chat.completions.create(model="m", messages=[])
    assert caught.value.status_code == 502
    trace = proxy.trace(response.headers["X-Trace-Id"])
    assert trace["status"] == 502 and "could not be reached" in trace["error"]


def test_a_provider_that_never_accepts_the_connection_is_504_saying_so(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    """A listener whose accept queue is full drops new connection attempts: they hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            proxy = make_proxy(
                upstream={
                    "openai_base_url": f"http://127.0.0.1:{port}/v1",
                    "connect_timeout_s": 0.3,
                    "read_timeout_s": 30,
                }
            )
            response = httpx.post(
                proxy.v1 + "/chat/completions", json={"model": "m", "messages": []}, timeout=10
            )
        finally:
            for filler in fillers:
                filler.close()
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "upstream_connect_timeout" and "connect" in error["message"]
    assert proxy.trace(response.headers["X-Trace-Id"])["status"] == 504


def test_slow_provider_is_504(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(upstream={"read_timeout_s": 0.3})
    proxy.provider.enqueue(replies.text("too late", delay=3))
    response = httpx.post(proxy.v1 + "/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert proxy.trace(response.headers["X-Trace-Id"])["status"] == 504


def test_a_slow_stream_that_never_goes_silent_is_relayed_whole(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    """The read timeout bounds each silence, not the whole answer."""
    proxy = make_proxy(upstream={"read_timeout_s": 0.4})
    words = "one two three four five six seven eight"
    proxy.provider.enqueue(replies.text(words, chunk_delay=0.15))
    with httpx.stream(
        "POST", proxy.v1 + "/chat/completions", json={"model": "m", "stream": True}
    ) as response:
        body = b"".join(response.iter_bytes())
    assert response.status_code == 200 and body.endswith(b"data: [DONE]\n\n")
    [trace] = proxy.traces(1)
    assert trace["error"] is None and trace["latency_ms"] > 1000
    assert trace["response_json"]["choices"][0]["message"]["content"] == words


def test_provider_stalling_mid_stream_cuts_the_client_off(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(upstream={"read_timeout_s": 0.5})
    proxy.provider.enqueue(replies.text("one two three", hang=True))
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST", proxy.v1 + "/chat/completions", json={"model": "m", "stream": True}
        ) as response,
    ):
        for _ in response.iter_bytes():
            pass
    [trace] = proxy.traces(1)
    assert trace["status"] == 200
    assert "mid-response" in trace["error"]
    assert trace["response_json"]["incomplete"] is True
