"""What the proxy remembers of one exchange, and how it becomes a `traces` row.

The hot path only fills a `TraceRecord` with what it already has in hand (raw bytes, times,
ids). Everything costly (decompressing, folding a stream into the final response, reading the
usage, masking secrets in the query string, redacting personal data for the skillbooks that
ask for it: a `StoragePolicy`) happens in `row_values`, which runs in the trace sink process
after the client has its answer. Every row it builds is storable whatever the client sent: a
text holding a lone surrogate is escaped, and a compressed body is inflated only up to the cap.
"""

from __future__ import annotations

import codecs
import itertools
import json
import operator
import os
import time
import zlib
from dataclasses import dataclass, field, fields
from typing import Any

from core import jsonio
from core.config import PrivacyConfig, TracesConfig
from core.formats import FORMATS
from core.formats.base import Usage
from core.redaction import (
    Counts,
    Redactor,
    param_names,
    redact_header,
    redact_json,
    redact_query,
    redact_urls,
    redactor_for,
)

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
    """Empty when the body was over `MAX_TRACE_BODY_BYTES`: only its size is kept then, so a
    queue of large uploads costs no more memory than the cap allows."""
    request_bytes: int = 0
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


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    """What the sink changes in a row before it is stored.

    `params`: names (lower case) of query parameters, and parameters in stored header values,
    whose values become `***` (`traces.redact_params`). `redactor` and `skillbooks`: personal
    data in the bodies of these skillbooks' traces is replaced (`[privacy]`); `everyone` for
    `stored_skillbooks = ["*"]`.
    """

    params: frozenset[str] = param_names(TracesConfig().redact_params)
    redactor: Redactor | None = None
    skillbooks: frozenset[str] = frozenset()
    everyone: bool = False

    @classmethod
    def of(cls, traces: TracesConfig, privacy: PrivacyConfig) -> StoragePolicy:
        listed = frozenset(privacy.stored_skillbooks)
        redactor = redactor_for(privacy)
        return cls(
            params=param_names(traces.redact_params),
            redactor=redactor if listed and redactor.active else None,
            skillbooks=listed - {"*"},
            everyone="*" in listed,
        )

    def redacts(self, skillbook: str) -> Redactor | None:
        if self.redactor is None or not (self.everyone or skillbook in self.skillbooks):
            return None
        return self.redactor


DEFAULT_POLICY = StoragePolicy()


def row_values(
    record: TraceRecord, policy: StoragePolicy = DEFAULT_POLICY, counts: Counts | None = None
) -> tuple[Any, ...]:
    """The full row, in `TRACE_COLUMNS` order: bodies as JSON text, a stream folded into its
    final response, usage read, `policy` applied (redactions counted into `counts`). A tuple,
    as the insert takes it: building a dict per row and reading it back cost the trace sink
    about 3 us a row."""
    response_text, response = _response(record)
    usage = FORMATS[record.format].usage(response) if record.format and response else None
    request = record.request_body
    size = max(record.request_bytes, len(request))
    request_text = _body_text(request, record.request_content_type, size)
    redactor = policy.redacts(record.skillbook)
    if redactor is not None:
        tally: Counts = {} if counts is None else counts
        request_text = _redacted_body(request_text, redactor, tally)
        response_text = _redacted_body(response_text, redactor, tally)
    return _columns(record, policy, record.error, usage, request_text, response_text)


def base_values(
    record: TraceRecord, error: str, policy: StoragePolicy = DEFAULT_POLICY
) -> tuple[Any, ...]:
    """The row of what the proxy knew without parsing any body, with `error` saying why:
    enough to record an exchange whose bodies could not be made into a row."""
    return _columns(record, policy, error, None, None, None)


def _columns(
    record: TraceRecord,
    policy: StoragePolicy,
    error: str | None,
    usage: Usage | None,
    request_json: str | None,
    response_json: str | None,
) -> tuple[Any, ...]:
    """The one place that knows the `TRACE_COLUMNS` order. Every text a client or provider
    chose is made storable here (`storable_text`); the bodies already are (decoded with
    replacement, or serialised by `json_text`)."""
    params = policy.params
    session = record.session_id
    return (
        record.id,
        record.created_at,
        storable_text(record.skillbook),
        storable_text(record.format),
        storable_text(record.method),
        storable_text(redact_query(record.path, params)),
        storable_text(record.model),
        int(record.stream),
        _storable_int(record.status),
        record.latency_ms,
        record.ttfb_ms,
        _storable_int(usage.input_tokens) if usage else None,
        _storable_int(usage.output_tokens) if usage else None,
        storable_text(record.key_fingerprint),
        storable_text(redact_urls(error, params) if error else error),
        int(record.client_disconnected),
        storable_text(redact_header(session, params) if session else session),
        None,  # episode_id: the learner's grouping fills it in
        _storable_int(record.skillbook_version),
        json_text(record.injected_skill_ids),
        _storable_int(record.skill_tokens),
        request_json,
        response_json,
    )


def _escape(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a byte the client sent that is not UTF-8 (decoded by aiohttp as a
    lone surrogate U+DC80..U+DCFF) becomes `\\xNN`; any other lone surrogate `\\uNNNN`."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    escaped = "".join(
        f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}"
        for c in bad
    )
    return escaped, exc.end


codecs.register_error("skillproxy.escape", _escape)


def storable_text(value: Any) -> Any:
    """`value`, with any text SQLite (or any UTF-8 store) cannot take escaped: a lone surrogate
    (JSON `"\\ud800"`, or a header byte that was not UTF-8) made a whole batch's insert fail.
    ASCII, the common case, is known without looking at the text."""
    if not isinstance(value, str) or value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "skillproxy.escape").decode("utf-8")
    return value


def _storable_int(value: Any) -> Any:
    """SQLite's integers are 64-bit; a larger one (never sent by a sane provider) is kept as
    text rather than failing the insert."""
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return str(value)
    return value


def json_text(value: Any) -> str:
    """Compact JSON text of `value` that any UTF-8 store takes: a string holding a lone
    surrogate (parsed from a `\\ud800` escape) is written escaped, as `json` writes it."""
    try:
        return jsonio.dumps(value).decode()
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return json.dumps(value, separators=(",", ":"))


def _redacted_body(text: str | None, redactor: Redactor, counts: Counts) -> str | None:
    """A stored body with personal data replaced in every JSON string (keys untouched); a body
    that is not JSON is redacted as text."""
    if not text:
        return text
    try:
        parsed = jsonio.loads(text)
    except ValueError:
        return redactor.text(text, counts)
    before = sum(counts.values())
    redacted = redact_json(parsed, redactor, counts)
    return json_text(redacted) if sum(counts.values()) != before else text


def _response(record: TraceRecord) -> tuple[str | None, dict[str, Any] | None]:
    """The response as JSON text for the store, and parsed when the format needs it."""
    if record.response_bytes > MAX_TRACE_BODY_BYTES:
        return _omitted(record.response_content_type, record.response_bytes), None
    raw, truncated = inflate(b"".join(record.response_chunks), record.response_encoding)
    if raw is None or truncated:
        extra = {"truncated": True, "inflated_bytes_over": MAX_TRACE_BODY_BYTES}
        shown = _omitted(record.response_content_type, record.response_bytes, truncated and extra)
        return shown, None
    if "text/event-stream" in record.response_content_type and record.format:
        folded = FORMATS[record.format].fold_stream(raw)
        return json_text(folded), folded
    text = _body_text(raw, record.response_content_type, len(raw))
    if text is None or not record.format or "json" not in record.response_content_type:
        return text, None
    try:
        parsed = jsonio.loads(raw)
    except ValueError:
        return text, None
    return text, parsed if isinstance(parsed, dict) else None


def _body_text(raw: bytes, content_type: str, size: int) -> str | None:
    if size > MAX_TRACE_BODY_BYTES:
        return _omitted(content_type, size)
    if not raw:
        return None
    if "json" in content_type or "text/" in content_type or raw[:1] in (b"{", b"["):
        text = raw.decode("utf-8", errors="replace")
        return text if raw[:1] in (b"{", b"[") else json.dumps(text, ensure_ascii=False)
    return _omitted(content_type, size)


def _omitted(content_type: str, size: int, extra: dict[str, Any] | bool = False) -> str:
    shown = {"skillproxy_omitted": True, "content_type": content_type, "bytes": size}
    return json.dumps({**shown, **extra} if isinstance(extra, dict) else shown)


def inflate(
    raw: bytes, encoding: str, limit: int = MAX_TRACE_BODY_BYTES
) -> tuple[bytes | None, bool]:
    """The body decoded from its `Content-Encoding`, and whether it was cut at `limit` bytes.

    Inflated step by step, never beyond `limit` (+1, to know it was exceeded): a 1 MB gzip
    bomb inflating to 1 GB must cost the sink 4 MiB, not the gigabyte. None when the body is
    not in the encoding it claims, is cut short, or is in one not kept (br, zstd: relayed to
    the client as they came, never decoded here).
    """
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return raw, False
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return None, False
    for wbits in (47, -15):  # 47: a gzip or zlib header, detected; -15: raw deflate, as some
        inflater = zlib.decompressobj(wbits)  # servers send for "deflate"
        out = bytearray()
        data = raw
        try:
            while data and not inflater.eof:
                out += inflater.decompress(data, limit + 1 - len(out))
                if len(out) > limit:
                    return bytes(out[:limit]), True
                data = inflater.unconsumed_tail
        except zlib.error:
            continue
        if inflater.eof:
            return bytes(out), False
    return None, False  # not this encoding, or cut short
