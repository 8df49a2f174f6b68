"""Hardening of the trace path: no exchange costs another its trace, bodies cannot blow the
sink's memory, `lost` counts only what is not stored, secrets in query strings are masked, a
deleted or replaced store file is noticed and made afresh, and personal data is redacted
before the traces of the skillbooks that ask for it are stored.

Covers proxy/trace_sink.py, proxy/trace_writer.py, proxy/tracing.py, store/sqlite/traces.py
and store/sqlite/watched.py, with real proxies, a real sink process and real sockets."""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from proxy.trace_sink import TraceSink
from proxy.tracing import MAX_TRACE_BODY_BYTES, TraceRecord, inflate, new_trace_id, row_values
from skillproxy.app import create_app
from store import TRACE_COLUMNS, open_store
from tests.fakes import replies
from tests.fakes.provider import FakeProvider
from tests.fakes.server_thread import ServerThread
from tests.harness import RunningProxy, proxy_config, sink_pid, wait_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def health(proxy: RunningProxy) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(proxy.url + "/healthz").json()["traces"]
    return stats


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., RunningProxy]]:
    """`start_proxy(provider_url, provider, **sections)`: a real proxy in front of any upstream."""
    started: list[RunningProxy] = []

    def start(
        provider_url: str, provider: FakeProvider, **sections: dict[str, Any]
    ) -> RunningProxy:
        config = proxy_config(tmp_path, provider_url, **sections)

        async def build() -> web.Application:
            return create_app(config)

        server = ServerThread(build, handler_cancellation=True).start()
        running = RunningProxy(server, config, provider, provider_url)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.server.stop()


@pytest.fixture
def configured(
    start_proxy: Callable[..., RunningProxy], fake_provider: tuple[FakeProvider, ServerThread]
) -> Callable[..., RunningProxy]:
    provider, server = fake_provider
    return functools.partial(start_proxy, server.url, provider)


# -- 1. poisoned values ------------------------------------------------------------------------


async def _send_all(proxy: RunningProxy, good: int) -> tuple[list[str], dict[str, str]]:
    """`good` ordinary requests at once with the poisoned ones among them; trace ids by kind."""
    poisoned: dict[str, dict[str, Any]] = {
        "surrogate model": {"content": b'{"model": "\\ud800", "messages": []}'},
        "0xFF session": {"json": CHAT, "headers": [(b"X-Session-Id", b"a\xffb")]},
        "both": {
            "content": b'{"model": "x\\udcff", "messages": []}',
            "headers": [(b"X-Session-Id", b"\xff\xfe")],
        },
    }

    async def one(client: httpx.AsyncClient, kw: dict[str, Any]) -> str:
        response = await client.post(proxy.v1 + "/chat/completions", **kw)
        assert response.status_code == 200, response.text
        return response.headers["X-Trace-Id"]

    async with httpx.AsyncClient(timeout=30) as client:
        kinds = list(poisoned)
        calls = [one(client, {"json": CHAT}) for _ in range(good)]
        calls[good // 2 : good // 2] = [one(client, poisoned[k]) for k in kinds]
        ids = await asyncio.gather(*calls)
    bad = dict(zip(kinds, ids[good // 2 : good // 2 + len(kinds)], strict=True))
    return [i for i in ids if i not in bad.values()], bad


def test_poisoned_values_cost_no_other_request_its_trace(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(traces={"flush_interval_ms": 300})  # one batch for all of them
    proxy.provider.default = replies.text("ok", model="fake-model")  # not an echo of "\ud800"
    good, bad = asyncio.run(_send_all(proxy, 80))
    stored = {t["id"]: t for t in proxy.traces(len(good) + len(bad))}
    assert set(good) <= stored.keys()
    assert stored[bad["surrogate model"]]["model"] == "\\ud800"  # kept, escaped
    assert stored[bad["0xFF session"]]["session_id"] == "a\\xffb"
    assert stored[bad["both"]]["model"] == "x\\xff"
    assert stored[bad["both"]]["session_id"] == "\\xff\\xfe"
    stats = health(proxy)
    assert stats["lost"] == 0 and stats["written"] == len(good) + len(bad)


def test_a_row_the_store_refuses_is_kept_without_the_refused_field(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    """Whatever a store refuses in one row (here a trigger refusing a model name), the batch
    goes in row by row, and that row goes in without the value, its `error` saying so."""
    proxy = make_proxy(traces={"flush_interval_ms": 300})
    db = proxy.db()
    db.execute(
        "CREATE TRIGGER no_such_model BEFORE INSERT ON traces WHEN NEW.model = 'refused' "
        "BEGIN SELECT RAISE(ABORT, 'this model is refused'); END"
    )
    db.conn.close()

    async def send() -> list[str]:
        async with httpx.AsyncClient(timeout=30) as client:
            bodies = [CHAT] * 20 + [{**CHAT, "model": "refused"}] + [CHAT] * 20
            answers = await asyncio.gather(
                *(client.post(proxy.v1 + "/chat/completions", json=b) for b in bodies)
            )
        return [a.headers["X-Trace-Id"] for a in answers]

    ids = asyncio.run(send())
    stored = {t["id"]: t for t in proxy.traces(len(ids))}
    assert set(ids) <= stored.keys()
    refused = stored[ids[20]]
    assert refused["model"] is None
    assert "trace field model not storable" in refused["error"]
    assert "this model is refused" in refused["error"]
    assert refused["request_json"]["model"] == "refused"  # the rest of the row is all there
    assert all(stored[i]["model"] == "m" and stored[i]["error"] is None for i in ids[:20])
    stats = health(proxy)
    assert (stats["unstorable"], stats["lost"]) == (1, 0)


# -- 2. compressed bodies ----------------------------------------------------------------------


@functools.cache
def bomb(inflated_mib: int) -> bytes:
    """A JSON-looking gzip body that inflates to `inflated_mib` MiB (about 1,000:1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    parts = [packer.compress(b"{")]
    parts += [packer.compress(block) for _ in range(inflated_mib)]
    return b"".join([*parts, packer.compress(b"}"), packer.flush()])


def bomb_provider(inflated_mib: int) -> web.Application:
    """An upstream whose chat answers are gzip bombs (and a small gzip answer for `small`)."""

    async def chat(request: web.Request) -> web.Response:
        payload = await request.json()
        if payload.get("model") == "small":
            body = gzip.compress(json.dumps({"id": "c", "choices": [], "usage": {}}).encode())
        else:
            body = bomb(inflated_mib)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def test_a_gzip_bomb_costs_the_sink_no_more_than_the_body_cap(
    start_proxy: Callable[..., RunningProxy],
) -> None:
    inflated_mib = 256
    with ServerThread(bomb_provider(inflated_mib)) as upstream:
        proxy = start_proxy(upstream.url, FakeProvider())
        small = httpx.post(proxy.v1 + "/chat/completions", json={**CHAT, "model": "small"})
        proxy.trace(small.headers["X-Trace-Id"])
        pid = sink_pid(proxy)
        before = peak_rss_kib(pid)
        with httpx.stream("POST", proxy.v1 + "/chat/completions", json=CHAT) as answer:
            relayed = b"".join(answer.iter_raw())  # the client gets the bytes as sent
            trace_id = answer.headers["X-Trace-Id"]
        assert relayed == bomb(inflated_mib)
        trace = proxy.trace(trace_id, timeout=60)
        grown_mib = (peak_rss_kib(pid) - before) / 1024
    assert grown_mib < 48, f"the sink's peak memory grew by {grown_mib:.0f} MiB"
    assert trace["response_json"] == {
        "skillproxy_omitted": True,
        "content_type": "application/json",
        "bytes": len(relayed),
        "truncated": True,
        "inflated_bytes_over": MAX_TRACE_BODY_BYTES,
    }


@pytest.mark.parametrize(
    "wbits", [31, 15, -15], ids=["gzip", "deflate (zlib)", "deflate (raw, as some servers send)"]
)
def test_inflate_stops_at_the_cap(wbits: int) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    raw = packer.compress(b"x" * (3 * MAX_TRACE_BODY_BYTES)) + packer.flush()
    encoding = "gzip" if wbits == 31 else "deflate"
    body, truncated = inflate(raw, encoding)
    assert truncated and body == b"x" * MAX_TRACE_BODY_BYTES
    assert inflate(raw, encoding, limit=3 * MAX_TRACE_BODY_BYTES) == (
        b"x" * (3 * MAX_TRACE_BODY_BYTES),
        False,
    )
    assert inflate(raw[: len(raw) // 2], encoding, limit=10 * MAX_TRACE_BODY_BYTES) == (None, False)


# -- 3. the lost counter -----------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["row refused", "store failing"])
def test_lost_counts_only_what_is_not_stored(
    make_proxy: Callable[..., RunningProxy], failure: str
) -> None:
    """230 traces in one batch: two frames (200 + 30), the last trace of skillbook `doomed`.
    A row the store refuses whatever is left out of it costs only itself; a store failing
    (an SQL error) on the second frame costs that frame, never the first, which is stored."""
    proxy = make_proxy(traces={"flush_interval_ms": 4000})
    action = "SELECT RAISE(ABORT, 'refused')" if failure == "row refused" else "SELECT json('x')"
    db = proxy.db()
    db.execute(
        f"CREATE TRIGGER doomed BEFORE INSERT ON traces WHEN NEW.skillbook = 'doomed' "
        f"BEGIN {action}; END"
    )
    db.conn.close()

    async def send() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(
                *(client.post(proxy.v1 + "/chat/completions", json=CHAT) for _ in range(229))
            )
            while (await client.get(proxy.url + "/healthz")).json()["traces"]["queued"] < 229:
                await asyncio.sleep(0.01)  # the doomed one comes last
            await client.post(proxy.sb("doomed") + "/chat/completions", json=CHAT)

    asyncio.run(send())
    wait_for(lambda: health(proxy)["lost"] + health(proxy)["written"] == 230, timeout=30)
    stats = health(proxy)
    store = open_store(proxy.config.store.url)
    try:
        stored = store.traces.count()
    finally:
        store.close()
    assert (stats["written"], stats["lost"]) == (stored, 230 - stored)
    if failure == "row refused":
        assert stored == 229
    else:  # the doomed trace's frame (the last 30, unless the batch was cut elsewhere)
        assert 0 < 230 - stored <= 200


# -- 4. secrets in query strings ---------------------------------------------------------------


def test_query_secrets_are_masked_before_the_trace_is_stored(proxy: RunningProxy) -> None:
    # stored as the client sent it (raw), with names compared percent-decoded
    query = "key=AIzaSECRET1&alt=sse&%256Bey=SECRET2&API-KEY=SECRET3&Signature=SECRET4&a=keep"
    answer = httpx.post(
        f"{proxy.v1}/chat/completions?{query}",
        json=CHAT,
        headers={"X-Session-Id": "s1;token=SECRET5"},
    )
    trace = proxy.trace(answer.headers["X-Trace-Id"])
    assert proxy.provider.last.path.endswith(query)  # the provider still gets them
    assert trace["path"] == (
        "/v1/chat/completions?key=***&alt=sse&%256Bey=***&API-KEY=***&Signature=***&a=keep"
    )
    assert trace["session_id"] == "s1;token=***"
    listed = proxy.admin("GET", "/traces").text + proxy.admin("GET", f"/traces/{trace['id']}").text
    assert "SECRET" not in listed


def test_an_encoded_ampersand_inside_a_secret_does_not_leave_part_of_it(
    proxy: RunningProxy,
) -> None:
    answer = httpx.post(f"{proxy.v1}/chat/completions?key=SECRETa%26SECRETb&x=1", json=CHAT)
    trace = proxy.trace(answer.headers["X-Trace-Id"])
    assert trace["path"] == "/v1/chat/completions?key=***&x=1"


def test_the_names_masked_come_from_traces_redact_params(
    configured: Callable[..., RunningProxy],
) -> None:
    proxy = configured(traces={"redact_params": ["Tenant"], "flush_interval_ms": 10})
    answer = httpx.post(f"{proxy.v1}/chat/completions?tenant=acme&key=visible", json=CHAT)
    trace = proxy.trace(answer.headers["X-Trace-Id"])
    assert trace["path"] == "/v1/chat/completions?tenant=***&key=visible"


# -- 5. the store file deleted or replaced -----------------------------------------------------


@pytest.mark.parametrize("trouble", ["deleted", "replaced"])
def test_a_deleted_or_replaced_store_file_is_made_afresh_and_nothing_after_is_lost(
    make_proxy: Callable[..., RunningProxy],
    tmp_path: Path,
    trouble: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    proxy = make_proxy()  # started here, so the sink's stderr is the one capfd reads
    first = httpx.post(proxy.v1 + "/chat/completions", json=CHAT).headers["X-Trace-Id"]
    proxy.trace(first)
    path = Path(proxy.config.store.location.path)
    if trouble == "deleted":
        path.unlink()  # as `rm skillproxy.db` would; the proxy's own connection keeps the WAL
    else:
        other = tmp_path / "restored.db"
        store = open_store(str(other))
        store.migrate()
        store.close()
        os.replace(other, path)
    logged = ""

    def reopened() -> bool:
        nonlocal logged
        logged += capfd.readouterr().err
        return "opened a fresh trace store" in logged

    wait_for(reopened, timeout=10)  # while idle: no request needed to notice
    assert f"ERROR skillproxy.traces: the trace store {path} was {trouble}" in logged
    ids = [
        httpx.post(proxy.v1 + "/chat/completions", json=CHAT).headers["X-Trace-Id"]
        for _ in range(3)
    ]
    stored = [t["id"] for t in proxy.traces(3)]
    assert stored == ids  # in the fresh file at the store's path, and only those
    stats = health(proxy)
    assert (stats["store_reopened"], stats["lost"], stats["written"]) == (1, 0, 4)


def test_a_store_file_deleted_between_two_batches_gets_the_second(tmp_path: Path) -> None:
    """Checked before each frame (and after its commit), not only while idle: the batch right
    after the delete goes into a fresh, migrated file."""
    url = str(tmp_path / "t.db")
    store = open_store(url)
    store.migrate()
    store.close()

    def record() -> TraceRecord:
        return TraceRecord(new_trace_id(), time.time(), "default", "GET", "/v1/models")

    async def write() -> tuple[list[str], dict[str, int]]:
        sink = TraceSink(url)
        await sink.start()
        try:
            await sink.write([record()])
            Path(url).unlink()
            batch = [record() for _ in range(3)]
            await sink.write(batch)
            return [r.id for r in batch], sink.counts
        finally:
            await sink.close()

    ids, counts = asyncio.run(write())
    fresh = open_store(url)
    try:
        assert [fresh.traces.exists(i) for i in ids] == [True] * 3
        assert fresh.traces.count() == 3
    finally:
        fresh.close()
    assert counts["reopened"] == 1 and counts["lost"] == 0


# -- 6. personal data in stored traces ---------------------------------------------------------


def test_listed_skillbooks_are_stored_redacted_and_others_as_they_were(
    configured: Callable[..., RunningProxy],
) -> None:
    proxy = configured(privacy={"stored_skillbooks": ["private"]})
    said = "Reach me at jane.doe@example.com or +44 20 7946 0958; order 123456789."
    reply = "Thanks! We'll write to jane.doe@example.com about order 123456789."
    body = {"model": "m", "messages": [{"role": "user", "content": said}], "user": "x@y.org"}
    traces = {}
    for book in ("private", "public"):
        proxy.provider.enqueue(replies.text(reply))
        answer = httpx.post(proxy.sb(book) + "/chat/completions", json=body)
        assert answer.json()["choices"][0]["message"]["content"] == reply  # clients unaffected
        traces[book] = proxy.trace(answer.headers["X-Trace-Id"])
    private, public = traces["private"], traces["public"]
    assert private["request_json"]["messages"][0]["content"] == (
        "Reach me at [EMAIL] or [PHONE]; order 123456789."
    )
    assert private["request_json"]["user"] == "[EMAIL]"
    assert private["response_json"]["choices"][0]["message"]["content"] == (
        "Thanks! We'll write to [EMAIL] about order 123456789."
    )
    assert "@" not in json.dumps(private)
    assert public["request_json"] == body
    assert public["response_json"]["choices"][0]["message"]["content"] == reply
    assert health(proxy)["redacted"] == 4


def test_a_star_redacts_every_skillbooks_stream(configured: Callable[..., RunningProxy]) -> None:
    proxy = configured(privacy={"stored_skillbooks": ["*"], "detect": ["card"]})
    proxy.provider.enqueue(
        replies.text("Card 4111 1111 1111 1111 is on file, a@b.io", chunk_delay=0)
    )
    with httpx.stream(
        "POST", proxy.v1 + "/chat/completions", json={**CHAT, "stream": True}
    ) as answer:
        trace_id = answer.headers["X-Trace-Id"]
        assert b"4111" in b"".join(answer.iter_bytes())
    folded = proxy.trace(trace_id)["response_json"]
    assert folded["choices"][0]["message"]["content"] == "Card [CARD] is on file, a@b.io"


def test_a_request_body_over_the_trace_cap_is_kept_as_its_size(proxy: RunningProxy) -> None:
    """The record holds no more than the cap while it waits in the queue; the row says what
    was there."""
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    data = json.dumps(big).encode()
    answer = httpx.post(
        proxy.v1 + "/chat/completions", content=data, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200
    sent = proxy.provider.last
    assert len(sent.body) == len(data)  # the provider got all of it
    trace = proxy.trace(answer.headers["X-Trace-Id"])
    assert trace["request_json"] == {
        "skillproxy_omitted": True,
        "content_type": "application/json",
        "bytes": len(data),
    }
    assert trace["model"] == "m"


def test_a_record_keeps_no_request_body_over_the_cap() -> None:
    record = TraceRecord("t", 0.0, "b", "POST", "/v1/x", request_bytes=MAX_TRACE_BODY_BYTES + 1)
    row = dict(zip(TRACE_COLUMNS, row_values(record), strict=True))
    assert json.loads(row["request_json"])["bytes"] == MAX_TRACE_BODY_BYTES + 1
