"""OTLP/HTTP's two encodings, in and out, for the trace receiver (`skillproxy.otlp_receiver`).

https://opentelemetry.io/docs/specs/otlp/#otlphttp: a request is an
`ExportTraceServiceRequest`, binary protobuf (`application/x-protobuf`) or OTLP/JSON
(`application/json`); the answer is an `ExportTraceServiceResponse` in the request's own
encoding, and a failure's body a `google.rpc.Status`, in that encoding too. A binary request
is decoded with opentelemetry-proto's classes and read back through protobuf's JSON mapping,
so both encodings reach `skillproxy.import_formats.otlp_json` as one shape (ids then base64,
as that mapping writes bytes). opentelemetry-proto is imported on first use, so a proxy that
never receives protobuf never loads it.

`google.rpc.Status` is written here by hand: it is two fields (code = 1, message = 2), and
writing them spares a dependency for one message.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from skillproxy.import_formats.otlp_json import IdEncoding
from skillproxy.import_formats.turns import LineError

Encoding = Literal["json", "protobuf"]
CONTENT_TYPES: dict[Encoding, str] = {
    "json": "application/json",
    "protobuf": "application/x-protobuf",
}
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 413: 8, 415: 3, 500: 13, 503: 14}
"""The `google.rpc.Code` each HTTP status we answer stands for."""


def decode(body: bytes, encoding: Encoding) -> tuple[dict[str, Any], IdEncoding]:
    """The request as an OTLP/JSON-shaped document, and how its ids are spelled; `LineError`
    says why it is not an `ExportTraceServiceRequest`."""
    if encoding == "json":
        try:
            document = json.loads(body)
        except UnicodeDecodeError as exc:
            raise LineError(f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
        except (ValueError, RecursionError) as exc:
            raise LineError(f"the body is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise LineError("the body is not an ExportTraceServiceRequest object")
        return document, "hex"
    from google.protobuf.json_format import MessageToDict
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise LineError(f"the body is not a protobuf ExportTraceServiceRequest: {exc}") from None
    read: dict[str, Any] = MessageToDict(request, use_integers_for_enums=True)
    read.setdefault("resourceSpans", [])
    return read, "base64"


def export_response(encoding: Encoding, rejected: int, message: str) -> bytes:
    """`ExportTraceServiceResponse`: empty when every span was taken, else `partial_success`."""
    if encoding == "json":
        partial = {"rejectedSpans": str(rejected), "errorMessage": message}
        return json.dumps({"partialSuccess": partial} if rejected or message else {}).encode()
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    data: bytes = response.SerializeToString()
    return data


def status(encoding: Encoding, http_status: int, message: str) -> bytes:
    """A `google.rpc.Status` for a failed request."""
    code = GRPC_CODES.get(http_status, 2)  # 2: UNKNOWN
    if encoding == "json":
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode("utf-8")
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)
