"""Property-based fuzzing of the proxied routes: whatever a client sends, the proxy answers.

Bodies are JSON of any shape (wrong types in every field the adapters read, deep nesting, huge
numbers, lone surrogates, NaN) or not JSON at all (non-UTF-8 bytes, truncations, gzip that is
and is not gzip); headers are odd `X-Skillbook`, `X-Session-Id`, `X-Skillproxy-Inject` and
`Content-Type` values. The properties, for every request:

- the answer is either the provider's, relayed (the fake provider received the request), or
  the proxy's own, which is then a 4xx in the caller's error shape (Anthropic's on
  `/v1/messages...`, OpenAI's elsewhere) with an `X-Trace-Id`;
- no 5xx is the proxy's own doing (a relayed provider 5xx is the provider's business);
- the proxy still serves a normal request afterwards.

Each test runs one proxy (`make_proxy`) for all its examples, with skills approved in
two skillbooks so that bodies go through injection, one of them ranked by relevance so the
latest user text is read too. Covers proxy/handlers.py, proxy/body.py, core/formats/.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import RunningProxy

RULE = "When a customer asks to return an item, verify the return window first."
SKILLBOOKS = ("default", "fuzz")
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROXY_FAILURES = frozenset(
    {"upstream_unreachable", "upstream_timeout", "upstream_connect_timeout", "internal_error"}
)

# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def fuzzed(make_proxy: Callable[..., RunningProxy]) -> RunningProxy:
    """A proxy with a skill to inject in both skillbooks ("fuzz" ranked by relevance), and a
    short body timeout: a deflate body that stops short is only ended by it (aiohttp)."""
    proxy = make_proxy(server={"body_timeout_s": 0.5})
    for skillbook in SKILLBOOKS:
        proxy.add_skill(skillbook, "returns", RULE)
    settings_changed = proxy.admin(
        "PATCH", "/skillbooks/fuzz/settings", json={"ranking": "relevance"}
    )
    assert settings_changed.status_code == 200, settings_changed.text
    deadline = time.monotonic() + 5
    while True:  # until the cache has both: the fuzzing must go through injection
        counts = [
            httpx.post(proxy.sb(name) + "/chat/completions", json={"model": "m"}).headers.get(
                "X-Skills-Injected"
            )
            for name in SKILLBOOKS
        ]
        if counts == ["1", "1"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert counts == ["1", "1"]
    return proxy


@pytest.fixture
def client(fuzzed: RunningProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzzed.url, timeout=20) as session:
        yield session


# --------------------------------------------------------------------------- strategies

ODD_STRINGS = ["", "\ud83d", "\udc00\ud800", "\x00", "\u2028", "caf\u00e9", "\U0001f600", "system"]
text = st.text(st.characters(), max_size=12) | st.sampled_from(ODD_STRINGS)  # surrogates too
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()  # NaN and infinities included: the standard library's path
    | text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=16,
)
part = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["text", "input_text", "image_url", "tool_result"]) | json_values,
        "text": text | json_values,
        "cache_control": json_values,
    },
)
content = text | st.lists(part | json_values, max_size=3) | json_values
message = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]) | json_values,
        "content": content,
        "tool_calls": json_values,
        "type": st.sampled_from(["message", "function_call"]) | json_values,
    },
)
request_body = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["gpt-4o-mini", "claude-sonnet-4-5", "o3", ""]) | json_values,
        "messages": st.lists(message | json_values, max_size=4) | json_values,
        "system": content,
        "instructions": text | json_values,
        "input": text | st.lists(message, max_size=3) | json_values,
        "stream": st.booleans() | json_values,
        "tools": json_values,
        "max_tokens": st.integers() | json_values,
        "metadata": json_values,
    },
)


def _header_bytes(raw: bytes) -> bytes:
    """What a client can put in a header value at all: no CR, LF, NUL or other controls."""
    return bytes(c for c in raw if c == 0x09 or (c >= 0x20 and c != 0x7F)).strip(b" \t")


header_value = st.binary(max_size=24).map(_header_bytes)
headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Skillbook": st.sampled_from([b"fuzz", b"default", b"../x", b"a" * 65, b"\xff"])
        | header_value,
        "X-Session-Id": header_value,
        "X-Skillproxy-Inject": st.sampled_from([b"off", b"on", b"OFF", b"0"]) | header_value,
        "Content-Type": st.sampled_from(
            [
                b"application/json",
                b"application/json; charset=utf-16",
                b"text/plain",
                b"multipart/form-data; boundary=x",
                b"application/x-www-form-urlencoded",
                b"",
            ]
        )
        | header_value,
    },
)
routes = st.sampled_from(
    [
        ("POST", "chat/completions"),
        ("POST", "chat/completions/"),
        ("POST", "responses"),
        ("POST", "messages"),
        ("POST", "messages/count_tokens"),
        ("POST", "embeddings"),
        ("GET", "models"),
        ("GET", "chat/completions"),
    ]
)
prefixes = st.sampled_from(["/v1/", "/sb/fuzz/v1/", "/sb/default/v1/", "/sb/..x/v1/"])


def _deep(depth: int) -> bytes:
    return b'{"model":"m","messages":[{"role":"user","content":' + (
        b"[" * depth + b"]" * depth + b"}]}"
    )


raw_bodies = st.one_of(
    st.binary(max_size=64),  # not JSON, often not UTF-8
    request_body.map(lambda b: json.dumps(b).encode()[:-1]),  # truncated
    request_body.map(lambda b: json.dumps(b, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    request_body.map(lambda b: json.dumps(b).encode().replace(b'"', b'\xff"', 1)),
    st.integers(min_value=1, max_value=20_000).map(_deep),
    st.integers(min_value=1, max_value=6_000).map(
        lambda n: b'{"model":"m","max_tokens":1' + b"0" * n + b"}"  # huge integers
    ),
    st.sampled_from([b'{"model":"m","temperature":1e400}', b'{"model":NaN}', b"[]", b"null"]),
)

# --------------------------------------------------------------------------- properties


def _answer_is_acceptable(
    path: str, response: httpx.Response, forwarded: bool, *, truncated_deflate: bool = False
) -> None:
    tail = path.split("/v1/", 1)[1]
    anthropic = tail == "messages" or tail.startswith("messages/")
    status = response.status_code
    if forwarded:  # the provider's answer, relayed: never a failure of the proxy's own
        if status >= 500:
            try:
                code = response.json()["error"].get("code")
            except (ValueError, KeyError, TypeError, AttributeError):
                code = None
            assert code not in PROXY_FAILURES, response.text
        return
    assert 400 <= status < 500, (status, response.text)
    if truncated_deflate and status == 400 and response.content == b"deflate":
        return  # aiohttp's own answer, before any handler: its parser drops a request whose
        # deflate body stops short when the body came in the same read as the headers
    assert response.headers.get("X-Trace-Id", "").startswith("tr_")
    document = response.json()
    if anthropic:
        assert document["type"] == "error", document
        error = document["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str)
    else:
        error = document["error"]
        assert isinstance(error["message"], str) and isinstance(error["type"], str)
        assert isinstance(error["code"], str)


def _send(
    proxy: RunningProxy,
    client: httpx.Client,
    method: str,
    path: str,
    body: bytes,
    sent_headers: dict[str, bytes],
    *,
    truncated_deflate: bool = False,
) -> None:
    before = len(proxy.provider.received)
    raw_headers = {name.encode(): value for name, value in sent_headers.items()}
    response = client.request(method, path, content=body or None, headers=raw_headers)
    forwarded = len(proxy.provider.received) > before
    _answer_is_acceptable(path, response, forwarded, truncated_deflate=truncated_deflate)
    normal = client.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert normal.status_code == 200, normal.text


def _encode(body: Any, ascii_only: bool) -> bytes:
    """JSON as a client would send it; lone surrogates become invalid UTF-8 unless escaped."""
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@FUZZ
@given(
    route=routes,
    prefix=prefixes,
    body=request_body | json_values,
    ascii_only=st.booleans(),
    sent_headers=headers,
)
def test_fuzzed_json_bodies_get_an_answer(
    fuzzed: RunningProxy,
    client: httpx.Client,
    route: tuple[str, str],
    prefix: str,
    body: Any,
    ascii_only: bool,
    sent_headers: dict[str, bytes],
) -> None:
    method, tail = route
    _send(fuzzed, client, method, prefix + tail, _encode(body, ascii_only), sent_headers)


@FUZZ
@given(
    route=routes,
    prefix=prefixes,
    body=raw_bodies,
    encoding=st.sampled_from(
        ["", "gzip", "gzip-garbage", "deflate", "deflate-garbage", "identity", "x-gzip"]
    ),
    sent_headers=headers,
)
def test_fuzzed_raw_bodies_get_an_answer(
    fuzzed: RunningProxy,
    client: httpx.Client,
    route: tuple[str, str],
    prefix: str,
    body: bytes,
    encoding: str,
    sent_headers: dict[str, bytes],
) -> None:
    method, tail = route
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)
    if encoding:
        sent_headers = {**sent_headers, "Content-Encoding": encoding.split("-")[0].encode()}
    garbage = encoding == "deflate-garbage"
    _send(fuzzed, client, method, prefix + tail, body, sent_headers, truncated_deflate=garbage)


@FUZZ
@given(
    route=routes,
    prefix=prefixes,
    name=header_value,
    session=header_value,
    auth=header_value,
    body=request_body,
)
def test_fuzzed_headers_get_an_answer(
    fuzzed: RunningProxy,
    client: httpx.Client,
    route: tuple[str, str],
    prefix: str,
    name: bytes,
    session: bytes,
    auth: bytes,
    body: Any,
) -> None:
    method, tail = route
    sent = {"X-Skillbook": name, "X-Session-Id": session, "Authorization": auth, "x-api-key": auth}
    _send(fuzzed, client, method, prefix + tail, _encode(body, True), sent)


def test_every_fuzzed_exchange_is_traced(fuzzed: RunningProxy, client: httpx.Client) -> None:
    """Odd values must not cost the trace: a few of the worst, then all of them stored."""
    sent: list[tuple[dict[bytes, bytes], bytes]] = [
        ({b"X-Session-Id": b"\xff\xfe"}, b'{"model":"\\ud83d","messages":[]}'),
        ({b"X-Skillbook": b"fuzz"}, _deep(5_000)),
        ({b"Content-Type": b"text/plain"}, b"\xff\xfe\x00"),
        ({}, b'{"model":"m","messages":[{"role":["system"],"content":{"x":1}}]}'),
    ]
    ids = []
    for extra, body in sent:
        response = client.post("/v1/chat/completions", content=body, headers=extra)
        ids.append(response.headers["X-Trace-Id"])
    db = fuzzed.db()
    try:
        deadline = time.monotonic() + 10
        while True:
            stored = {row[0] for row in db.execute("SELECT id FROM traces")}
            if set(ids) <= stored or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        db.conn.close()
    assert set(ids) <= stored
