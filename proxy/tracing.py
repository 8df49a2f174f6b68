"""What the proxy remembers of one exchange, and how it becomes a `traces` row.

The hot path only fills a `TraceRecord` with what it already has in hand (raw bytes, times,
ids). Everything costly (decompressing, folding a stream into the final response, reading the
usage) happens in `row_values`, which runs in the trace sink process after the client has
its answer.
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import time
import zlib
from dataclasses import dataclass, field, fields
from typing import Any

from core import jsonio
from core.formats import FORMATS
from core.formats.base import Usage

MAX_TRACE_BODY_BYTES = 4 * 1024 * 1024
"""Bodies larger than this are not kept in full; the trace says how large they were."""


_PROCESS_TAG = os.urandom(3).hex()
_SEQUENCE = itertools.count()


def new_trace_id() -> str:
    """Time-ordered and unique across processes sharing a database, without a syscall.

    Milliseconds, then a random tag drawn once per process, then a per-process counter.
    """
    return f"tr_{int(time.time() * 1000):012x}{_PROCESS_TAG}{next(_SEQUENCE) & 0xFFFFFFFF:08x}"


@dataclass(slots=True)
class TraceRecord:
    id: str
    created_at: float
    skillbook: str
    method: str
    path: str
    format: str | None = None
    model: str | None = None
    stream: bool = False
    request_body: bytes = b""
    request_content_type: str = ""
    status: int | None = None
    latency_ms: float | None = None
    ttfb_ms: float | None = None
    key_fingerprint: str | None = None
    error: str | None = None
    client_disconnected: bool = False
    session_id: str | None = None
    skillbook_version: int | None = None
    injected_skill_ids: tuple[str, ...] = ()
    skill_tokens: int | None = None
    response_chunks: list[bytes] = field(default_factory=list)
    response_bytes: int = 0
    response_content_type: str = ""
    response_encoding: str = ""

    def keep_chunk(self, chunk: bytes) -> None:
        """Keep a response chunk for the trace, up to the size cap."""
        if self.response_bytes + len(chunk) <= MAX_TRACE_BODY_BYTES:
            self.response_chunks.append(chunk)
        self.response_bytes += len(chunk)


RECORD_FIELDS = tuple(f.name for f in fields(TraceRecord))
_values = operator.attrgetter(*RECORD_FIELDS)


def record_values(record: TraceRecord) -> tuple[Any, ...]:
    """The record as a tuple of plain values, in field order: what crosses to the trace sink."""
    values: tuple[Any, ...] = _values(record)
    return values


def record_from_values(values: tuple[Any, ...]) -> TraceRecord:
    return TraceRecord(*values)


_PLAIN = (str, bytes, int, float, bool, type(None))


def plain(value: Any) -> Any:
    """`value` as the exact built-in types marshal accepts (a str subclass becomes a str)."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, tuple):
        return tuple(map(plain, value))
    if isinstance(value, list):
        return list(map(plain, value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def row_values(record: TraceRecord) -> tuple[Any, ...]:
    """The full row, in `TRACE_COLUMNS` order: bodies as JSON text, a stream folded into its
    final response, usage read. A tuple, as the insert takes it: building a dict per row and
    reading it back cost the trace sink about 3 us a row."""
    response_text, response = _response(record)
    usage = FORMATS[record.format].usage(response) if record.format and response else None
    request = record.request_body
    request_text = _body_text(request, record.request_content_type, len(request))
    return _columns(record, record.error, usage, request_text, response_text)


def base_values(record: TraceRecord, error: str) -> tuple[Any, ...]:
    """The row of what the proxy knew without parsing any body, with `error` saying why:
    enough to record an exchange whose bodies could not be made into a row."""
    return _columns(record, error, None, None, None)


def _columns(
    record: TraceRecord,
    error: str | None,
    usage: Usage | None,
    request_json: str | None,
    response_json: str | None,
) -> tuple[Any, ...]:
    """The one place that knows the `TRACE_COLUMNS` order."""
    return (
        record.id,
        record.created_at,
        record.skillbook,
        record.format,
        record.method,
        record.path,
        record.model,
        int(record.stream),
        record.status,
        record.latency_ms,
        record.ttfb_ms,
        usage.input_tokens if usage else None,
        usage.output_tokens if usage else None,
        record.key_fingerprint,
        error,
        int(record.client_disconnected),
        record.session_id,
        None,  # episode_id: the learner's grouping fills it in
        record.skillbook_version,
        jsonio.dumps(record.injected_skill_ids).decode(),
        record.skill_tokens,
        request_json,
        response_json,
    )


def _response(record: TraceRecord) -> tuple[str | None, dict[str, Any] | None]:
    """The response as JSON text for the store, and parsed when the format needs it."""
    if record.response_bytes > MAX_TRACE_BODY_BYTES:
        return _omitted(record.response_content_type, record.response_bytes), None
    raw = _decompress(b"".join(record.response_chunks), record.response_encoding)
    if raw is None:
        return _omitted(record.response_content_type, record.response_bytes), None
    if "text/event-stream" in record.response_content_type and record.format:
        folded = FORMATS[record.format].fold_stream(raw)
        return jsonio.dumps(folded).decode(), folded
    text = _body_text(raw, record.response_content_type, len(raw))
    if text is None or not record.format or "json" not in record.response_content_type:
        return text, None
    try:
        parsed = jsonio.loads(raw)
    except ValueError:
        return text, None
    return text, parsed if isinstance(parsed, dict) else None


def _body_text(raw: bytes, content_type: str, size: int) -> str | None:
    if not raw:
        return None
    if size > MAX_TRACE_BODY_BYTES:
        return _omitted(content_type, size)
    if "json" in content_type or "text/" in content_type or raw[:1] in (b"{", b"["):
        text = raw.decode("utf-8", errors="replace")
        return text if raw[:1] in (b"{", b"[") else json.dumps(text, ensure_ascii=False)
    return _omitted(content_type, size)


def _omitted(content_type: str, size: int) -> str:
    return json.dumps({"skillproxy_omitted": True, "content_type": content_type, "bytes": size})


def _decompress(raw: bytes, encoding: str) -> bytes | None:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return raw
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            return zlib.decompress(raw, wbits=47)  # 47: gzip or zlib header, detected
        except zlib.error:
            try:
                return zlib.decompress(raw, wbits=-15)  # raw deflate, as some servers send
            except zlib.error:
                return None
    return None  # br, zstd: relayed to the client as they came, not kept in the trace
