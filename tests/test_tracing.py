"""proxy/tracing.py: trace ids, trace records, and the `traces` row built from a record."""

from __future__ import annotations

import enum
import gzip
import json
import marshal
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from proxy.tracing import (
    MAX_TRACE_BODY_BYTES,
    RECORD_FIELDS,
    TraceRecord,
    base_values,
    new_trace_id,
    plain,
    record_from_values,
    record_values,
    row_values,
)
from store.columns import TRACE_COLUMNS

TRACE_ID = re.compile(r"tr_([0-9a-f]{12})([0-9a-f]{6})([0-9a-f]{8})")
REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi é"}]}
CHAT_RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}
CHAT_STREAM = (
    b'data: {"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"Hel"}}]}\n\n'
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}'
    b"\n\n"
    b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)


def record(**overrides: Any) -> TraceRecord:
    values: dict[str, Any] = {
        "id": new_trace_id(),
        "created_at": 1_700_000_000.25,
        "skillbook": "support-bot",
        "method": "POST",
        "path": "/v1/chat/completions",
        "format": "chat",
        "model": "gpt-4o-mini",
        "request_body": json.dumps(REQUEST, ensure_ascii=False).encode(),
        "request_content_type": "application/json",
        "status": 200,
        "latency_ms": 12.5,
        "ttfb_ms": 3.0,
        "key_fingerprint": "fp_0123456789ab",
        "session_id": "sess-1",
        "skillbook_version": 4,
        "injected_skill_ids": ("returns-00001", "tone-00002"),
        "skill_tokens": 57,
        "response_content_type": "application/json",
    }
    values.update(overrides)
    return TraceRecord(**values)


def with_response(trace: TraceRecord, *chunks: bytes) -> TraceRecord:
    for chunk in chunks:
        trace.keep_chunk(chunk)
    return trace


def row(trace: TraceRecord) -> dict[str, Any]:
    values = row_values(trace)
    assert len(values) == len(TRACE_COLUMNS)
    return dict(zip(TRACE_COLUMNS, values, strict=True))


# trace ids


def test_trace_ids_have_the_documented_shape_and_time() -> None:
    before = int(time.time() * 1000)
    trace_id = new_trace_id()
    after = int(time.time() * 1000)
    match = TRACE_ID.fullmatch(trace_id)
    assert match is not None
    assert before <= int(match.group(1), 16) <= after


def test_trace_ids_are_unique_and_sort_in_the_order_they_were_made() -> None:
    ids = [new_trace_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids


def test_trace_ids_made_later_sort_later() -> None:
    first = new_trace_id()
    time.sleep(0.002)
    assert new_trace_id() > first


def test_one_process_shares_one_tag_and_counts_up() -> None:
    matches = [TRACE_ID.fullmatch(new_trace_id()) for _ in range(3)]
    assert all(m is not None for m in matches)
    tags = {m.group(2) for m in matches if m}
    counters = [int(m.group(3), 16) for m in matches if m]
    assert len(tags) == 1
    assert counters == [counters[0], counters[0] + 1, counters[0] + 2]


def test_another_process_draws_another_tag() -> None:
    script = "from proxy.tracing import new_trace_id; print(new_trace_id())"
    root = Path(__file__).resolve().parent.parent
    other = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    ours, theirs = TRACE_ID.fullmatch(new_trace_id()), TRACE_ID.fullmatch(other)
    assert ours is not None and theirs is not None
    assert ours.group(2) != theirs.group(2)


# records


def test_chunks_are_kept_up_to_the_cap_and_all_bytes_are_counted() -> None:
    trace = record()
    trace.keep_chunk(b"a" * 10)
    trace.keep_chunk(b"b" * (MAX_TRACE_BODY_BYTES - 10))  # exactly at the cap: kept
    trace.keep_chunk(b"c")
    assert trace.response_chunks == [b"a" * 10, b"b" * (MAX_TRACE_BODY_BYTES - 10)]
    assert trace.response_bytes == MAX_TRACE_BODY_BYTES + 1


def test_a_chunk_that_alone_exceeds_the_cap_is_counted_not_kept() -> None:
    trace = record()
    trace.keep_chunk(b"x" * (MAX_TRACE_BODY_BYTES + 1))
    assert trace.response_chunks == []
    assert trace.response_bytes == MAX_TRACE_BODY_BYTES + 1


def test_record_values_are_its_fields_in_order_and_rebuild_it() -> None:
    trace = with_response(record(stream=True), b"part one", b"part two")
    values = record_values(trace)
    assert len(values) == len(RECORD_FIELDS)
    assert values == tuple(getattr(trace, name) for name in RECORD_FIELDS)
    assert record_from_values(values) == trace


def test_record_values_survive_marshal() -> None:
    trace = with_response(record(), b"{}")
    assert record_from_values(marshal.loads(marshal.dumps(record_values(trace)))) == trace


class Label(str):
    pass


class Level(enum.IntEnum):
    HIGH = 3


def test_plain_makes_what_marshal_refuses_into_exact_builtin_types() -> None:
    trace = record(skillbook=Label("support-bot"), injected_skill_ids=(Label("s-1"),))
    values = record_values(trace)
    with pytest.raises(ValueError):
        marshal.dumps(values)
    converted = plain(values)
    assert type(converted) is tuple
    assert converted[RECORD_FIELDS.index("skillbook")].__class__ is str
    assert type(converted[RECORD_FIELDS.index("injected_skill_ids")][0]) is str
    assert record_from_values(marshal.loads(marshal.dumps(converted))) == trace


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Label("x"), "x"),
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"cd"), b"cd"),
        (Level.HIGH, 3),
        ([Label("a"), (Label("b"), 1)], ["a", ("b", 1)]),
        (None, None),
        (1.5, 1.5),
        (True, True),
    ],
)
def test_plain_values(value: Any, expected: Any) -> None:
    converted = plain(value)
    assert converted == expected
    assert type(converted) is type(expected)
    marshal.dumps(converted)


# rows


def test_a_json_response_becomes_a_row_in_column_order() -> None:
    response = json.dumps(CHAT_RESPONSE).encode()
    trace = with_response(record(client_disconnected=True), response)
    out = row(trace)
    assert out["id"] == trace.id
    assert out["created_at"] == trace.created_at
    assert (out["skillbook"], out["format"], out["method"]) == ("support-bot", "chat", "POST")
    assert (out["path"], out["model"], out["status"]) == (
        "/v1/chat/completions",
        "gpt-4o-mini",
        200,
    )
    assert (out["latency_ms"], out["ttfb_ms"]) == (12.5, 3.0)
    assert (out["input_tokens"], out["output_tokens"]) == (9, 2)
    assert out["key_fingerprint"] == "fp_0123456789ab"
    assert out["error"] is None
    assert out["stream"] == 0 and out["client_disconnected"] == 1
    assert out["session_id"] == "sess-1"
    assert out["episode_id"] is None
    assert (out["skillbook_version"], out["skill_tokens"]) == (4, 57)
    assert json.loads(out["injected_skill_ids"]) == ["returns-00001", "tone-00002"]
    assert out["request_json"] == trace.request_body.decode()
    assert out["response_json"] == response.decode()


def test_a_stream_is_folded_into_its_final_response() -> None:
    trace = with_response(
        record(stream=True, response_content_type="text/event-stream; charset=utf-8"),
        CHAT_STREAM[:50],
        CHAT_STREAM[50:],
    )
    out = row(trace)
    assert out["stream"] == 1
    folded = json.loads(out["response_json"])
    assert folded["choices"][0]["message"]["content"] == "Hello"
    assert (out["input_tokens"], out["output_tokens"]) == (9, 2)


def test_anthropic_usage_is_read_with_its_cache_tokens() -> None:
    response = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "Hi"}],
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
            "output_tokens": 7,
        },
    }
    trace = with_response(
        record(format="messages", path="/v1/messages"), json.dumps(response).encode()
    )
    out = row(trace)
    assert (out["input_tokens"], out["output_tokens"]) == (115, 7)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-15)),
        (" GZIP ", gzip.compress),
        ("identity", lambda data: data),
    ],
)
def test_a_compressed_response_is_stored_decompressed(encoding: str, compress: Any) -> None:
    response = json.dumps(CHAT_RESPONSE).encode()
    trace = with_response(record(response_encoding=encoding), compress(response))
    out = row(trace)
    assert json.loads(out["response_json"]) == CHAT_RESPONSE
    assert out["output_tokens"] == 2


def omitted(text: str | None) -> dict[str, Any]:
    assert text is not None
    value: dict[str, Any] = json.loads(text)
    assert value["skillproxy_omitted"] is True
    return value


@pytest.mark.parametrize("encoding", ["br", "zstd"])
def test_a_response_in_an_encoding_not_kept_is_marked_omitted(encoding: str) -> None:
    trace = with_response(record(response_encoding=encoding), b"\x1b\x00compressed")
    out = row(trace)
    assert omitted(out["response_json"]) == {
        "skillproxy_omitted": True,
        "content_type": "application/json",
        "bytes": len(b"\x1b\x00compressed"),
    }
    assert out["input_tokens"] is None and out["output_tokens"] is None


def test_a_corrupt_compressed_response_is_marked_omitted() -> None:
    trace = with_response(record(response_encoding="gzip"), b"definitely not gzip")
    assert omitted(row(trace)["response_json"])["bytes"] == len(b"definitely not gzip")


def test_a_response_over_the_cap_is_marked_omitted_with_its_size() -> None:
    trace = with_response(record(), b"{" + b" " * MAX_TRACE_BODY_BYTES, b"}")
    out = row(trace)
    assert omitted(out["response_json"])["bytes"] == MAX_TRACE_BODY_BYTES + 2
    assert out["input_tokens"] is None


def test_a_request_over_the_cap_is_marked_omitted_with_its_size() -> None:
    body = b"{" + b" " * MAX_TRACE_BODY_BYTES + b"}"
    out = row(with_response(record(request_body=body), json.dumps(CHAT_RESPONSE).encode()))
    assert omitted(out["request_json"])["bytes"] == len(body)
    assert out["output_tokens"] == 2


def test_a_text_response_is_stored_as_a_json_string() -> None:
    trace = with_response(
        record(format=None, response_content_type="text/plain; charset=utf-8"),
        "upstream said no: é".encode(),
    )
    out = row(trace)
    assert json.loads(out["response_json"]) == "upstream said no: é"
    assert out["input_tokens"] is None


def test_a_binary_response_is_not_stored() -> None:
    trace = with_response(
        record(format=None, response_content_type="application/octet-stream"), b"\x00\x01\x02"
    )
    assert omitted(row(trace)["response_json"]) == {
        "skillproxy_omitted": True,
        "content_type": "application/octet-stream",
        "bytes": 3,
    }


def test_a_json_looking_body_is_kept_whatever_its_content_type() -> None:
    trace = with_response(record(format=None, response_content_type=""), b'{"ok": true}')
    assert row(trace)["response_json"] == '{"ok": true}'


def test_invalid_json_is_kept_as_text_without_usage() -> None:
    trace = with_response(record(), b'{"usage": {"prompt_tokens": 9')
    out = row(trace)
    assert out["response_json"] == '{"usage": {"prompt_tokens": 9'
    assert out["input_tokens"] is None and out["output_tokens"] is None


def test_a_json_array_response_has_no_usage() -> None:
    trace = with_response(record(), b"[1, 2]")
    out = row(trace)
    assert out["response_json"] == "[1, 2]"
    assert out["input_tokens"] is None


def test_without_a_format_no_usage_is_read() -> None:
    trace = with_response(
        record(format=None, path="/v1/models"), json.dumps(CHAT_RESPONSE).encode()
    )
    out = row(trace)
    assert json.loads(out["response_json"]) == CHAT_RESPONSE
    assert out["input_tokens"] is None and out["output_tokens"] is None


def test_empty_bodies_are_null() -> None:
    out = row(record(request_body=b"", method="GET", format=None))
    assert out["request_json"] is None
    assert out["response_json"] is None


def test_no_injected_skills_is_an_empty_list() -> None:
    assert json.loads(row(record(injected_skill_ids=()))["injected_skill_ids"]) == []


def test_base_values_record_what_was_known_and_why_the_rest_is_missing() -> None:
    trace = with_response(record(error="upstream timeout"), json.dumps(CHAT_RESPONSE).encode())
    values = base_values(trace, "trace row not built: ValueError: bad")
    assert len(values) == len(TRACE_COLUMNS)
    out = dict(zip(TRACE_COLUMNS, values, strict=True))
    assert out["error"] == "trace row not built: ValueError: bad"
    assert out["request_json"] is None and out["response_json"] is None
    assert out["input_tokens"] is None and out["output_tokens"] is None
    full = row(trace)
    assert full["error"] == "upstream timeout"
    for name in ("id", "created_at", "skillbook", "status", "session_id", "injected_skill_ids"):
        assert out[name] == full[name]
