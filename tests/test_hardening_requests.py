"""Malformed, hostile and slow requests: every one gets an answer in the caller's wire format.

Covers proxy/body.py (reading the body: limit, encoding, timeout), the path and client-key
checks of proxy/routing.py and proxy/credentials.py, and core/jsonio.py's edge cases, all
through a running proxy, real sockets and the real SDKs.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest

from proxy.render import HEADER
from tests.harness import RunningProxy

RULE = "When a customer asks to return an item, verify the return window first."

# --------------------------------------------------------------------------- raw HTTP helpers


def _port(proxy: RunningProxy) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


def _read_response(sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response (Content-Length framed) from `sock`; (0, {}, b"") on EOF first."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def raw_request(
    proxy: RunningProxy, target: str, body: bytes = b"", *, method: str = "POST", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """Send exactly this request line (no client normalises the path) and read the answer."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{_port(proxy)}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1") + body)
        return _read_response(sock, time.monotonic() + 10)


def _closed(sock: socket.socket, timeout: float) -> bool:
    """True if the peer closes `sock` within `timeout` (anything still sent is discarded)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not sock.recv(65536):
                    return True
            except TimeoutError:
                return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    return False


def _reset_on_write(sock: socket.socket) -> bool:
    """True if the peer has closed its socket entirely: a write draws a reset."""
    try:
        for _ in range(20):
            sock.sendall(b"x")
            time.sleep(0.02)
    except OSError:
        return True
    return False


def openai_error(body: bytes) -> dict[str, Any]:
    error = json.loads(body)["error"]
    assert set(error) >= {"message", "type", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def anthropic_error(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    assert document["type"] == "error", document
    assert isinstance(document["error"]["message"], str) and document["error"]["type"]
    return dict(document["error"])


ROUTES = {
    "chat": "/v1/chat/completions",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
}


def _body(route: str, user_text_json: str) -> bytes:
    """A request of `route`'s format whose user text is the raw JSON string `user_text_json`."""
    if route == "chat":
        return (
            '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},'
            f'{{"role":"user","content":{user_text_json}}}]}}'
        ).encode()
    if route == "responses":
        head = '{"model":"gpt-4o-mini","instructions":"Be brief.","input":'
        return f"{head}{user_text_json}}}".encode()
    return (
        '{"model":"claude-sonnet-4-5","max_tokens":10,"system":"Be brief.",'
        f'"messages":[{{"role":"user","content":{user_text_json}}}]}}'
    ).encode()


def _section_of(route: str, sent: dict[str, Any]) -> str:
    if route == "chat":
        return str(sent["messages"][0]["content"])
    if route == "responses":
        return str(sent["instructions"])
    return str(sent["system"])


# --------------------------------------------------------------------------- 1a surrogates


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_lone_surrogate_escape_survives_injection(proxy: RunningProxy, route: str) -> None:
    proxy.add_skill("support", "returns", RULE)
    body = _body(route, r'"broken \ud83d emoji and caf\u00e9 \udc00\ud800"')
    response = httpx.post(
        proxy.sb("support") + ROUTES[route][3:],
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert int(response.headers["X-Skills-Injected"]) == 1
    sent = proxy.provider.last
    assert rb"\ud83d" in sent.body and rb"\udc00\ud800" in sent.body  # kept as escapes
    sent.body.decode("utf-8")  # still valid UTF-8 JSON
    document = json.loads(sent.body)
    assert _section_of(route, document).startswith("Be brief.\n\n" + HEADER)
    assert RULE in _section_of(route, document)
    text = "broken \ud83d emoji and caf\u00e9 \udc00\ud800"
    if route == "chat":
        assert document["messages"][1]["content"] == text
    elif route == "responses":
        assert document["input"] == text
    else:
        assert document["messages"][0]["content"] == text


def test_a_lone_surrogate_without_injection_is_forwarded_untouched(proxy: RunningProxy) -> None:
    body = _body("chat", r'"\ud83d"')
    response = httpx.post(proxy.v1 + "/chat/completions", content=body)
    assert response.status_code == 200
    assert proxy.provider.last.body == body


# --------------------------------------------------------------------------- 1b deep nesting


@pytest.mark.parametrize("depth", [1_030, 5_000, 200_000])
@pytest.mark.parametrize("route", list(ROUTES))
def test_json_nested_too_deeply_is_400_invalid_json(
    proxy: RunningProxy, route: str, depth: int
) -> None:
    nested = "[" * depth + "]" * depth
    status, _, body = raw_request(proxy, ROUTES[route], _body(route, nested))
    assert status == 400
    error = anthropic_error(body) if route == "messages" else openai_error(body)
    if route != "messages":
        assert error["code"] == "invalid_json"
    assert proxy.provider.received == []


@pytest.mark.parametrize("depth", [254, 256, 900, 960, 990, 1_000, 1_010, 1_020, 1_023, 1_024])
def test_deep_but_parseable_json_is_forwarded_or_refused_never_a_crash(
    proxy: RunningProxy, depth: int
) -> None:
    """Around both parsers' and both serialisers' depth limits, with a section to inject."""
    proxy.add_skill("support", "returns", RULE)
    for value in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        proxy.provider.reset()
        payload = _body("chat", "[]").replace(b'"content":[]', b'"content":' + value.encode())
        status, headers, body = raw_request(proxy, "/sb/support/v1/chat/completions", payload)
        if proxy.provider.received:  # forwarded with the section, the value intact (the
            # fake's own parser may refuse it: its answer is relayed)
            sent = proxy.provider.last.body
            assert value.encode() in sent and RULE.encode() in sent
            assert headers["x-skills-injected"] == "1"
        else:
            assert status == 400, body
            assert openai_error(body)["code"] == "invalid_json"


# --------------------------------------------------------------------------- 1c wrong types


WRONG_TYPED_CHATS: list[Any] = [
    {"model": "m", "messages": [{"role": ["system"], "content": "x"}]},
    {"model": "m", "messages": [{"role": {"system": 1}, "content": "x"}, {"role": "user"}]},
    {"model": "m", "messages": [{"role": "system", "content": [{"type": ["text"], "text": "a"}]}]},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": {}, "text": "a"}]}]},
    {"model": "m", "messages": [{"role": "assistant", "tool_calls": 5}, {"role": "tool"}]},
    {"model": ["m"], "messages": {"role": "user"}, "stream": "yes"},
    {"model": 7, "messages": [1, None, "x", [], {"role": None}]},
]


@pytest.mark.parametrize("ranking", ["usefulness", "relevance"])
def test_wrong_typed_chat_fields_pass_through_and_never_crash(
    proxy: RunningProxy, ranking: str
) -> None:
    proxy.add_skill("support", "returns", RULE)
    settings = proxy.admin("PATCH", "/skillbooks/support/settings", json={"ranking": ranking})
    assert settings.status_code == 200, settings.text
    time.sleep(0.2)  # the cache polls for the new settings
    for body in WRONG_TYPED_CHATS:
        response = httpx.post(proxy.sb("support") + "/chat/completions", json=body)
        assert response.status_code < 500, (body, response.text)
        if response.status_code == 400 and "X-Trace-Id" in response.headers:
            openai_error(response.content)


WRONG_TYPED_OTHERS: list[tuple[str, Any]] = [
    ("messages", {"model": "c", "system": [{"type": ["text"], "text": "x"}], "messages": []}),
    ("messages", {"model": "c", "system": 5, "messages": [{"role": ["user"], "content": [7]}]}),
    ("messages", {"model": "c", "system": [1, "x", None], "messages": "hi"}),
    ("messages", {"model": "c", "messages": [{"role": "user", "content": [{"type": [1]}]}]}),
    ("responses", {"model": "m", "instructions": ["x"], "input": [{"role": ["user"]}]}),
    ("responses", {"model": "m", "input": [{"role": "user", "content": [{"type": {}}]}]}),
    ("responses", {"model": "m", "input": {"role": "user"}, "tools": "all"}),
]


@pytest.mark.parametrize(("route", "body"), WRONG_TYPED_OTHERS)
def test_wrong_typed_fields_of_the_other_formats_never_crash(
    proxy: RunningProxy, route: str, body: Any
) -> None:
    proxy.add_skill("support", "returns", RULE)
    proxy.admin("PATCH", "/skillbooks/support/settings", json={"ranking": "relevance"})
    time.sleep(0.2)
    response = httpx.post(proxy.sb("support") + ROUTES[route][3:], json=body)
    assert response.status_code < 500, response.text


# --------------------------------------------------------------------------- 1d/1e gzip


@pytest.mark.parametrize("route", ["chat", "messages", "embeddings"])
def test_an_invalid_gzip_body_is_400_in_the_callers_format(proxy: RunningProxy, route: str) -> None:
    target = ROUTES.get(route, "/v1/embeddings")
    status, headers, body = raw_request(
        proxy, target, b"\x1f\x8b\x08\x00garbage, not deflate" * 10, Content_Encoding="gzip"
    )
    assert status == 400
    if route == "messages":
        assert anthropic_error(body)["type"] == "invalid_request_error"
    else:
        assert openai_error(body)["code"] == "invalid_body_encoding"
    assert "x-trace-id" in headers
    assert proxy.provider.received == []


def test_an_invalid_gzip_body_closes_the_connection_quietly(
    proxy: RunningProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp would otherwise go on reading the broken body, fail, and log that as its own."""
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=5) as sock:
        garbage = b"not gzip at all" * 100
        head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
        sock.sendall(f"{head}Content-Length: {len(garbage)}\r\n\r\n".encode() + garbage)
        assert _read_response(sock, time.monotonic() + 5)[0] == 400
        assert _closed(sock, 2)
    time.sleep(0.1)
    assert not [r for r in caplog.records if r.name == "aiohttp.server"]


@pytest.mark.parametrize("route", ["chat", "messages"])
def test_a_deflate_body_that_stops_short_is_400_after_the_body_timeout(
    make_proxy: Callable[..., RunningProxy], route: str
) -> None:
    """aiohttp never ends such a body when it comes after the headers (its parser's error waits
    for a next request): the body timeout bounds the wait, and since every byte did arrive it
    is a 400, not a 408. (In the same read as the headers, aiohttp answers the request itself,
    a text/plain 400, before any handler.)"""
    proxy = make_proxy(server={"body_timeout_s": 0.5})
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=5) as sock:
        sock.sendall(
            f"POST {ROUTES[route]} HTTP/1.1\r\nHost: x\r\nContent-Encoding: deflate\r\n"
            "Content-Length: 1\r\n\r\n".encode()
        )
        time.sleep(0.05)
        sock.sendall(b"\x05")
        status, _, body = _read_response(sock, time.monotonic() + 5)
    assert status == 400
    assert time.monotonic() - started < 5
    if route == "messages":
        assert anthropic_error(body)["type"] == "invalid_request_error"
    else:
        assert openai_error(body)["code"] == "invalid_body_encoding"
    assert proxy.provider.received == []


@pytest.mark.parametrize("target", ["/sb/..x/v1/chat/completions", "/v1/../x"])
def test_a_request_refused_before_its_broken_body_arrives_is_closed_cleanly(
    proxy: RunningProxy, caplog: pytest.LogCaptureFixture, target: str
) -> None:
    """Refused before the body is read; the body then fails to inflate. Left to aiohttp, that
    failure would come after a keep-alive answer and reset the connection the client reuses."""
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=5) as sock:
        garbage = b"\x1f\x8b\x08\x00 not gzip" * 50
        sock.sendall(
            f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
            f"Content-Length: {len(garbage)}\r\n\r\n".encode()
        )
        status, headers, body = _read_response(sock, time.monotonic() + 5)
        assert status == 400 and headers["connection"] == "close"
        assert openai_error(body)["code"] in ("invalid_skillbook", "invalid_path")
        sock.sendall(garbage)
        assert _closed(sock, 3)
    time.sleep(0.1)
    assert not [r for r in caplog.records if r.name == "aiohttp.server"]
    assert httpx.post(proxy.v1 + "/chat/completions", json={"model": "m"}).status_code == 200


def test_an_empty_gzip_body_does_not_change_how_later_bodies_are_read(proxy: RunningProxy) -> None:
    """aiohttp marks its shared empty-body reader as decompressed after one of these."""
    for headers in ({"Content-Encoding": "gzip"}, {}):
        response = httpx.post(proxy.v1 + "/chat/completions", content=b"", headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_json"
    assert httpx.post(proxy.v1 + "/chat/completions", json={"model": "m"}).status_code == 200
    assert proxy.provider.last.header("Content-Encoding") is None


@pytest.mark.parametrize("encoding", ["x-gzip", "compress", "gzip, gzip", "identity, br"])
def test_an_encoding_the_proxy_cannot_read_is_415_where_it_must_read_the_body(
    proxy: RunningProxy, encoding: str
) -> None:
    body = gzip.compress(b'{"model": "m"}')
    response = httpx.post(
        proxy.v1 + "/chat/completions", content=body, headers={"Content-Encoding": encoding}
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_content_encoding"
    response = httpx.post(
        proxy.v1 + "/messages", content=body, headers={"Content-Encoding": encoding}
    )
    assert response.status_code == 415
    assert anthropic_error(response.content)["type"] == "invalid_request_error"
    assert proxy.provider.received == []
    response = httpx.post(proxy.v1 + "/files", content=body, headers={"Content-Encoding": encoding})
    assert response.status_code == 404  # passed through as sent: the provider's to judge
    assert proxy.provider.last.body == body
    assert proxy.provider.last.header("Content-Encoding") == encoding


def test_identity_is_read_as_is(proxy: RunningProxy) -> None:
    response = httpx.post(
        proxy.v1 + "/chat/completions",
        content=b'{"model": "m"}',
        headers={"Content-Encoding": "identity"},
    )
    assert response.status_code == 200


def test_several_content_encoding_headers_with_gzip_are_400(proxy: RunningProxy) -> None:
    body = gzip.compress(b'{"model": "m"}')
    for values in (["gzip", "identity"], ["identity", "gzip"], ["gzip", "gzip"]):
        response = httpx.post(
            proxy.v1 + "/embeddings",
            content=body,
            headers=[("Content-Encoding", value) for value in values],
        )
        assert response.status_code == 400, values
        assert response.json()["error"]["code"] == "invalid_body_encoding"
    assert proxy.provider.received == []


def test_a_gzip_body_is_forwarded_inflated_and_injected(proxy: RunningProxy) -> None:
    proxy.add_skill("support", "returns", RULE)
    plain = _body("chat", '"I want to return my shoes."')
    response = httpx.post(
        proxy.sb("support") + "/chat/completions",
        content=gzip.compress(plain),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    sent = proxy.provider.last
    assert sent.header("Content-Encoding") is None
    assert sent.header("Content-Length") == str(len(sent.body))
    assert RULE in json.loads(sent.body)["messages"][0]["content"]
    # the trace keeps the inflated body the client meant
    assert proxy.trace(response.headers["X-Trace-Id"])["request_json"]["model"] == "gpt-4o-mini"


def test_a_gzip_body_on_a_pass_through_route_is_forwarded_inflated(proxy: RunningProxy) -> None:
    plain = b'{"model": "text-embedding-3-small", "input": "hello"}'
    response = httpx.post(
        proxy.v1 + "/embeddings",
        content=gzip.compress(plain),
        headers={"Content-Encoding": "GZip", "Content-Type": "application/json"},
    )
    assert response.status_code == 404  # relayed from the fake, which has no embeddings
    sent = proxy.provider.last
    assert sent.body == plain
    assert sent.header("Content-Encoding") is None
    assert sent.header("Content-Length") == str(len(plain))


def test_an_unknown_content_encoding_is_forwarded_as_sent(proxy: RunningProxy) -> None:
    body = b"opaque bytes"
    response = httpx.post(
        proxy.v1 + "/embeddings", content=body, headers={"Content-Encoding": "x-custom"}
    )
    assert response.status_code == 404
    assert proxy.provider.last.body == body
    assert proxy.provider.last.header("Content-Encoding") == "x-custom"


@pytest.mark.parametrize("route", ["chat", "messages"])
def test_a_gzip_body_that_inflates_beyond_the_limit_is_413(
    make_proxy: Callable[..., RunningProxy], route: str
) -> None:
    proxy = make_proxy(server={"max_body_bytes": 10_000})
    bomb = gzip.compress(_body(route, '"' + "a" * 2_000_000 + '"'))
    assert len(bomb) < 10_000
    status, _, body = raw_request(proxy, ROUTES[route], bomb, Content_Encoding="gzip")
    assert status == 413
    if route == "messages":
        assert anthropic_error(body)["type"] == "request_too_large"
    else:
        assert openai_error(body)["code"] == "request_too_large"
    assert proxy.provider.received == []


# --------------------------------------------------------------------------- 2 slow senders


def _start_slow_request(
    proxy: RunningProxy, target: str, *, chunked: bool = False
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(proxy)), timeout=5)
    framing = "Transfer-Encoding: chunked" if chunked else "Content-Length: 1000"
    head = (
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    )
    sock.sendall(head.encode() + (b'5\r\n{"mod\r\n' if chunked else b'{"mod'))
    return sock


@pytest.mark.parametrize("route", ["chat", "messages", "embeddings"])
def test_a_slow_sender_gets_408_and_is_disconnected(
    make_proxy: Callable[..., RunningProxy], route: str
) -> None:
    proxy = make_proxy(server={"body_timeout_s": 0.5})
    target = ROUTES.get(route, "/v1/embeddings")
    sock = _start_slow_request(proxy, target)
    started = time.monotonic()
    received = b""
    try:
        while time.monotonic() - started < 5:  # one byte every 0.1 s, reading what comes back
            try:
                sock.sendall(b"x")
            except OSError:
                break
            sock.settimeout(0.1)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:  # our bytes kept coming after the proxy closed
                break
            if not chunk:
                break
            received += chunk
        elapsed = time.monotonic() - started
        assert received.startswith(b"HTTP/1.1 408 "), received
        assert 0.4 < elapsed < 3
        _, _, body = received.partition(b"\r\n\r\n")
        if route == "messages":
            assert anthropic_error(body)["type"] == "timeout_error"
        else:
            assert openai_error(body)["code"] == "request_timeout"
        assert _closed(sock, 2)
    finally:
        sock.close()
    assert proxy.provider.received == []
    assert httpx.post(proxy.v1 + "/chat/completions", json={"model": "m"}).status_code == 200


def test_64_stalled_bodies_are_all_answered_408_and_closed(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(server={"body_timeout_s": 0.5})
    socks = [
        _start_slow_request(proxy, "/v1/chat/completions", chunked=i % 2 == 1) for i in range(64)
    ]
    try:
        deadline = time.monotonic() + 5
        statuses = [_read_response(sock, deadline)[0] for sock in socks]
        assert statuses == [408] * 64
        assert all(_closed(sock, 2) for sock in socks)  # the answer ends with a FIN
        time.sleep(1.5)  # and the proxy's side is gone soon after: writing meets a reset
        assert all(_reset_on_write(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()
    assert proxy.provider.received == []
    assert httpx.post(proxy.v1 + "/chat/completions", json={"model": "m"}).status_code == 200


def test_a_body_that_arrives_in_time_is_not_cut_off(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(server={"body_timeout_s": 2})
    body = b'{"model": "m", "messages": []}'

    def slowly() -> Any:
        for i in range(0, len(body), 10):
            time.sleep(0.05)
            yield body[i : i + 10]

    response = httpx.post(proxy.v1 + "/chat/completions", content=slowly())
    assert response.status_code == 200
    assert proxy.provider.last.body == body


# --------------------------------------------------------------------------- 3 dot segments


@pytest.mark.parametrize(
    "target",
    [
        "/v1/../../secret",
        "/v1/../admin/skillbooks",
        "/v1/a/%2e%2e/b",
        "/v1/a/%2E%2E/b",
        "/v1/%2e./models",
        "/v1/.%2E/models",
        "/v1/./models",
        "/v1/models/..",
        "/v1/models/%2e",
        "/v1/..%2f..%2fadmin",
        "/v1/..%2F..%2Fadmin",
        "/v1/..%5c..%5cadmin",
        "/v1/models/..?after=1",
        "/sb/x/v1/..%2f..%2fadmin",
        "/sb/x/v1/chat/../../../admin",
        "/sb/x/v1/%2e%2e/%2e%2e/healthz",
    ],
)
def test_dot_segments_in_the_tail_are_400_and_never_forwarded(
    proxy: RunningProxy, target: str
) -> None:
    for method in ("GET", "POST"):
        status, _headers, body = raw_request(proxy, target, b"{}", method=method)
        assert status == 400, (method, target, body)
        assert openai_error(body)["code"] == "invalid_path"
    assert proxy.provider.received == []


def test_dot_segments_on_an_anthropic_route_are_400_in_anthropic_shape(proxy: RunningProxy) -> None:
    status, _, body = raw_request(proxy, "/v1/messages/../../admin", b"{}")
    assert status == 400
    assert anthropic_error(body)["type"] == "invalid_request_error"
    assert proxy.provider.received == []


@pytest.mark.parametrize(
    "target", ["/v1/models/a..b", "/v1/files/...", "/v1/models/.hidden", "/v1/models?q=../x"]
)
def test_dots_that_are_not_segments_are_forwarded(proxy: RunningProxy, target: str) -> None:
    status, _, _ = raw_request(proxy, target, method="GET")
    assert status in (200, 404)
    assert proxy.provider.last.path == target


def test_a_skillbook_named_v1_forwards_the_right_tail(proxy: RunningProxy) -> None:
    status, _, _ = raw_request(proxy, "/sb/v1/v1/models", method="GET")
    assert status == 200
    assert proxy.provider.last.path == "/v1/models"


def test_an_absolute_form_request_target_is_forwarded(proxy: RunningProxy) -> None:
    target = f"http://127.0.0.1:{_port(proxy)}/sb/x/v1/chat/completions?a=1"
    status, _, _ = raw_request(proxy, target, b'{"model": "m"}')
    assert status == 200
    assert proxy.provider.last.path == "/v1/chat/completions?a=1"
    status, _, body = raw_request(proxy, target.replace("chat/", "../"), b"{}")
    assert status == 400 and openai_error(body)["code"] == "invalid_path"


def test_an_encoded_v1_prefix_is_400_not_a_crash(proxy: RunningProxy) -> None:
    status, _, body = raw_request(proxy, "/%76%31/models", method="GET")
    assert status in (400, 404), body
    if status == 400:
        assert openai_error(body)["code"] == "invalid_path"
    assert proxy.provider.received == []


# --------------------------------------------------------------------------- 4 client keys


KEYS = {"server": {"client_keys": ["sk-proxy-one", "sk-proxy-two"]}}


def test_client_keys_refuse_a_missing_or_wrong_key_in_openai_shape(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(**KEYS)
    with pytest.raises(openai.AuthenticationError) as caught:
        proxy.openai(key="sk-wrong").chat.completions.create(model="m", messages=[])
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    for headers in ({}, {"Authorization": "Bearer sk-proxy-on"}, {"x-api-key": "sk-proxy-one2"}):
        response = httpx.post(proxy.v1 + "/chat/completions", json={}, headers=headers)
        assert response.status_code == 401
        assert openai_error(response.content)["code"] == "invalid_api_key"
    response = httpx.get(proxy.sb("x") + "/models", headers={"Authorization": "sk-proxy-one"})
    assert response.status_code == 401  # a key must come as a bearer token
    assert proxy.provider.received == []


def test_client_keys_refuse_a_wrong_key_in_anthropic_shape(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(**KEYS)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        proxy.anthropic(key="sk-wrong").messages.create(
            model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert proxy.provider.received == []


def test_client_keys_let_a_valid_key_through_to_the_provider(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(**KEYS)
    reply = proxy.openai(key="sk-proxy-two").chat.completions.create(model="m", messages=[])
    assert reply.choices[0].message.content == "ok"
    assert proxy.provider.last.header("Authorization") == "Bearer sk-proxy-two"
    message = proxy.anthropic(key="sk-proxy-one").messages.create(
        model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content
    assert proxy.provider.last.header("Authorization") == "Bearer sk-proxy-one"  # this SDK's way
    response = httpx.post(
        proxy.v1 + "/messages",
        json={"model": "c", "max_tokens": 5, "messages": []},
        headers={"x-api-key": "sk-proxy-one", "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200
    assert proxy.provider.last.header("x-api-key") == "sk-proxy-one"
    response = httpx.get(proxy.v1 + "/models", headers={"x-api-key": "sk-proxy-two"})
    assert response.status_code == 200


def test_client_keys_with_an_upstream_key_send_only_the_upstream_key(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(**KEYS, upstream={"api_key": "sk-upstream"})
    proxy.openai(key="sk-proxy-one").chat.completions.create(model="m", messages=[])
    assert proxy.provider.last.header("Authorization") == "Bearer sk-upstream"


def test_without_client_keys_any_key_or_none_is_forwarded(proxy: RunningProxy) -> None:
    assert httpx.post(proxy.v1 + "/chat/completions", json={"model": "m"}).status_code == 200


# --------------------------------------------------------------------------- 5 duplicate keys


@pytest.mark.parametrize(
    ("path", "duplicated"),
    [
        ("/v1/chat/completions", "x-api-key"),
        ("/v1/chat/completions", "Authorization"),
        ("/v1/messages", "Authorization"),
        ("/v1/messages", "x-api-key"),
    ],
)
def test_a_duplicated_client_credential_never_reaches_the_provider_with_an_upstream_key(
    make_proxy: Callable[..., RunningProxy], path: str, duplicated: str
) -> None:
    received: list[list[tuple[str, str]]] = []
    lock = threading.Lock()

    with socket.socket() as listener:  # see every header copy: the fake keeps only one each
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                lines = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
                with lock:
                    received.append(
                        [
                            (k.strip(), v.strip())
                            for k, _, v in (line.partition(":") for line in lines)
                        ]
                    )
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        proxy = make_proxy(
            upstream={
                "api_key": "sk-up",
                "anthropic_api_key": "sk-ant-up",
                "openai_base_url": f"http://127.0.0.1:{port}/v1",
                "anthropic_base_url": f"http://127.0.0.1:{port}",
            }
        )
        value = "Bearer sk-client" if duplicated == "Authorization" else "sk-client"
        response = httpx.post(
            proxy.url + path,
            content=b"{}",
            headers=[(duplicated, value + "-1"), (duplicated, value + "-2")],
        )
        thread.join(5)
    assert response.status_code == 200
    (headers,) = received
    credentials = [
        (k.lower(), v) for k, v in headers if k.lower() in ("authorization", "x-api-key")
    ]
    if path == "/v1/messages":
        assert credentials == [("x-api-key", "sk-ant-up")]
    else:
        assert credentials == [("authorization", "Bearer sk-up")]


def test_a_refused_path_quotes_no_query_in_its_error(proxy: RunningProxy) -> None:
    """The error body is stored with the trace: a key in the query must not ride along."""
    answer = httpx.get(proxy.v1 + "/a/%2e%2e/models?key=sk-SECRET-9")  # httpx keeps %2e
    assert answer.status_code == 400 and "SECRET" not in answer.text
    trace = proxy.trace(answer.headers["X-Trace-Id"])
    assert "SECRET" not in json.dumps(trace)


def test_a_client_refused_for_its_key_names_no_skillbook(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(server={"client_keys": ["sk-team"]})
    for n in range(3):
        refused = httpx.post(
            proxy.v1 + "/chat/completions",
            json={"model": "m", "messages": []},
            headers={"Authorization": "Bearer wrong", "X-Skillbook": f"spam{n}"},
        )
        assert refused.status_code == 401
    proxy.traces(3)
    books = [b["name"] for b in proxy.admin("GET", "/skillbooks").json()["data"]]
    assert not any(name.startswith("spam") for name in books)


def test_feedback_bodies_are_read_like_the_proxys(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(server={"max_body_bytes": 1000, "body_timeout_s": 0.5})
    bad_gzip = httpx.post(
        proxy.v1 + "/feedback", content=b"not gzip", headers={"Content-Encoding": "gzip"}
    )
    assert bad_gzip.status_code == 400
    assert bad_gzip.json()["error"]["code"] == "invalid_body_encoding"
    too_big = httpx.post(proxy.v1 + "/feedback", content=b"x" * 2000)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]


def test_an_undecodable_admin_token_is_refused_not_a_500(proxy: RunningProxy) -> None:
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"GET /admin/skillbooks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer caf\xe9\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:80]
    assert b'"invalid_token"' in answer
