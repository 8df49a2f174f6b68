"""The trace queue and writer: every exchange recorded once, and never in a request's way.

Covers proxy/trace_writer.py, proxy/trace_sink.py and store/sqlite/traces.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from proxy.trace_sink import FRAME_RECORDS, SinkFailed, TraceSink
from proxy.tracing import TraceRecord, new_trace_id
from store import open_store
from store.records import as_json
from store.sqlite.db import open_database
from tests.fakes import replies
from tests.harness import RunningProxy, sink_pids


def post(proxy: RunningProxy, **extra: object) -> httpx.Response:
    return httpx.post(
        proxy.v1 + "/chat/completions", json={"model": "m", "messages": [], **extra}, timeout=10
    )


def health(proxy: RunningProxy) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(proxy.url + "/healthz").json()["traces"]
    return stats


def test_one_hundred_concurrent_streams_give_one_hundred_complete_traces(
    proxy: RunningProxy,
) -> None:
    proxy.provider.enqueue(
        *[replies.text(f"answer {i} of many", chunk_delay=0.01) for i in range(100)]
    )

    async def one(client: openai.AsyncOpenAI, i: int) -> tuple[str, str]:
        stream = await client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": f"q{i}"}], stream=True
        )
        text = ""
        async for chunk in stream.parse():
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        return stream.headers["X-Trace-Id"], text

    async def all_of_them() -> list[tuple[str, str]]:
        async with openai.AsyncOpenAI(base_url=proxy.v1, api_key="k", max_retries=0) as client:
            return await asyncio.gather(*(one(client, i) for i in range(100)))

    results = asyncio.run(all_of_them())
    assert sorted(text for _, text in results) == sorted(f"answer {i} of many" for i in range(100))
    traces = {t["id"]: t for t in proxy.traces(100)}
    assert len(traces) == 100
    for trace_id, text in results:
        folded = traces[trace_id]["response_json"]
        assert folded["choices"][0]["message"]["content"] == text
        assert "incomplete" not in folded
        assert traces[trace_id]["request_json"]["stream"] is True


def test_client_leaving_mid_stream_cancels_upstream_and_is_recorded(proxy: RunningProxy) -> None:
    proxy.provider.enqueue(replies.text("this stream never finishes", hang=True))
    with httpx.stream(
        "POST", proxy.v1 + "/chat/completions", json={"model": "m", "stream": True}
    ) as response:
        trace_id = response.headers["X-Trace-Id"]
        next(response.iter_bytes())  # the first event, then walk away
    assert proxy.provider.wait_for_disconnect(5), "the provider never saw the request cancelled"
    trace = proxy.trace(trace_id)
    assert trace["client_disconnected"] is True
    assert trace["error"] == "client disconnected"


def test_client_leaving_before_the_answer_cancels_upstream(proxy: RunningProxy) -> None:
    proxy.provider.enqueue(replies.text("slow", delay=30))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(proxy.v1 + "/chat/completions", json={"model": "m"}, timeout=0.5)
    assert proxy.provider.wait_for_disconnect(5)
    [trace] = proxy.traces(1)
    assert trace["client_disconnected"] is True


def test_store_failure_never_fails_a_request(proxy: RunningProxy) -> None:
    assert post(proxy).status_code == 200
    proxy.traces(1)
    db = proxy.db()
    db.execute("ALTER TABLE traces RENAME TO traces_gone")  # every insert now fails
    db.conn.close()
    for _ in range(5):
        assert post(proxy).status_code == 200
    deadline = time.monotonic() + 5
    while health(proxy)["store_errors"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health(proxy)["store_errors"] >= 1
    db = proxy.db()
    db.execute("ALTER TABLE traces_gone RENAME TO traces")  # the disk recovers: retries land
    db.conn.close()
    proxy.traces(6)
    assert health(proxy)["lost"] == 0


def test_full_queue_drops_and_counts(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(traces={"queue_size": 1, "flush_interval_ms": 1500, "on_full": "drop"})
    for _ in range(6):
        assert post(proxy).status_code == 200
    stats = health(proxy)
    assert stats["dropped"] >= 3
    assert stats["queued"] + stats["dropped"] == 6


def test_full_queue_blocks_briefly_when_configured(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(
        traces={
            "queue_size": 1,
            "flush_interval_ms": 200,
            "on_full": "block",
            "block_timeout_ms": 2000,
        }
    )
    for _ in range(4):
        assert post(proxy).status_code == 200
    proxy.traces(4)
    assert health(proxy)["dropped"] == 0


def test_a_killed_trace_sink_is_restarted_and_loses_nothing(proxy: RunningProxy) -> None:
    assert post(proxy).status_code == 200
    proxy.traces(1)
    [pid] = sink_pids(proxy.config.store.url)
    os.kill(pid, signal.SIGKILL)
    for _ in range(3):
        assert post(proxy).status_code == 200
    proxy.traces(4)
    assert health(proxy)["lost"] == 0
    assert sink_pids(proxy.config.store.url) != [pid]


def test_sink_stores_a_record_whose_values_marshal_refuses(tmp_path: Path) -> None:
    """Records cross to the sink marshalled; a str subclass (which marshal refuses) still lands."""

    class Label(str):
        pass

    async def write() -> None:
        sink = TraceSink(str(tmp_path / "t.db"))
        await sink.start()
        record = TraceRecord(
            id=new_trace_id(),
            created_at=time.time(),
            skillbook="default",
            method="POST",
            path="/v1/chat/completions",
            session_id=Label("session-7"),
        )
        try:
            await sink.write([record])
        finally:
            await sink.close()
        stored = store.traces.get(record.id)
        assert stored is not None and stored.session_id == "session-7"

    store = open_store(str(tmp_path / "t.db"))
    store.migrate()
    asyncio.run(write())
    store.close()


def test_a_batch_retried_after_a_partial_commit_stores_every_row_once(tmp_path: Path) -> None:
    """The sink commits `FRAME_RECORDS` records per frame; when a later frame fails, the writer
    retries the batch, and the frames already committed must not make the retry fail. The
    failure says how much of the batch's start is in, so only the rest need be sent again."""
    store = open_store(str(tmp_path / "t.db"))
    store.migrate()
    db = open_database(tmp_path / "t.db")
    records = [
        TraceRecord(
            id=new_trace_id(), created_at=time.time(), skillbook="default", method="GET", path="/"
        )
        for _ in range(FRAME_RECORDS * 5 // 2)
    ]
    failing = records[FRAME_RECORDS * 3 // 2].id  # in the second frame; hex, safe to inline
    # a failure of the store itself (an SQL error at run time), not a refusal of one row
    db.execute(
        f"CREATE TRIGGER fail_once BEFORE INSERT ON traces WHEN NEW.id = '{failing}' "
        "BEGIN SELECT json('disk full'); END"
    )

    async def write_twice() -> None:
        sink = TraceSink(str(tmp_path / "t.db"))
        await sink.start()
        try:
            with pytest.raises(SinkFailed) as failed:
                await sink.write(records)
            assert store.traces.count() == FRAME_RECORDS  # the first frame is in, not the second
            assert failed.value.stored == FRAME_RECORDS
            db.execute("DROP TRIGGER fail_once")
            await sink.write(records)
        finally:
            await sink.close()

    asyncio.run(write_twice())
    assert store.traces.count() == len(records)
    store.close()
    db.conn.close()


def test_every_record_field_lands_in_its_own_column(tmp_path: Path) -> None:
    """The sink builds rows positionally; each value must reach the column of its name."""
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    answer = {"id": "c1", "object": "chat.completion", "choices": [], "usage": usage}
    good = TraceRecord(
        id=new_trace_id(),
        created_at=1_700_000_000.5,
        skillbook="books",
        method="POST",
        path="/v1/chat/completions",
        format="chat",
        model="gpt-test",
        stream=False,
        request_body=b'{"model":"gpt-test"}',
        request_content_type="application/json",
        status=201,
        latency_ms=12.5,
        ttfb_ms=3.25,
        key_fingerprint="fp_0123456789ab",
        error="an error",
        client_disconnected=True,
        session_id="sess-1",
        skillbook_version=4,
        injected_skill_ids=("a-00001", "b-00002"),
        skill_tokens=42,
        response_content_type="application/json",
    )
    good.keep_chunk(json.dumps(answer).encode())
    broken = TraceRecord(
        id=new_trace_id(), created_at=2.0, skillbook="books", method="POST", path="/v1/x"
    )
    broken.format = "no-such-format"  # reading its usage fails: the row is kept without it
    broken.keep_chunk(b'{"x": 1}')
    broken.response_content_type = "application/json"

    async def write() -> None:
        sink = TraceSink(str(tmp_path / "t.db"))
        await sink.start()
        try:
            await sink.write([good, broken])
        finally:
            await sink.close()

    store = open_store(str(tmp_path / "t.db"))
    store.migrate()
    asyncio.run(write())
    stored = store.traces.get(good.id)
    assert stored is not None
    row = as_json(stored)
    expected = {
        "created_at": 1_700_000_000.5,
        "skillbook": "books",
        "format": "chat",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": "gpt-test",
        "stream": False,
        "status": 201,
        "latency_ms": 12.5,
        "ttfb_ms": 3.25,
        "input_tokens": 11,
        "output_tokens": 7,
        "key_fingerprint": "fp_0123456789ab",
        "error": "an error",
        "client_disconnected": True,
        "session_id": "sess-1",
        "episode_id": None,
        "skillbook_version": 4,
        "injected_skill_ids": ["a-00001", "b-00002"],
        "skill_tokens": 42,
        "request_json": {"model": "gpt-test"},
        "response_json": answer,
    }
    assert {key: row[key] for key in expected} == expected
    kept = store.traces.get(broken.id)
    store.close()
    assert kept is not None and kept.path == "/v1/x" and kept.created_at == 2.0
    assert kept.error is not None and kept.error.startswith("trace row not built: KeyError")
