"""OTLP trace data, as OTLP/JSON spells it, read into plain spans.

The encoding (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding, the
`ExportTraceServiceRequest` of open-telemetry/opentelemetry-proto) is proto3's JSON mapping
with OTLP's deviations: `traceId` and `spanId` are hex strings (case-insensitive), not
base64; enums are integers; 64-bit integers (`startTimeUnixNano`, `intValue`) are decimal
strings, though numbers are accepted too; unknown fields are ignored. An attribute is
`{"key", "value": AnyValue}` and an AnyValue holds one of `stringValue`, `boolValue`,
`intValue`, `doubleValue`, `arrayValue {values}`, `kvlistValue {values}`, `bytesValue`
(base64): read here into the Python value it stands for, so the GenAI conventions' readers
see `"chat"`, `100` and lists of dicts, whatever spelling the sender chose.

`id_encoding="base64"` reads the same document as protobuf's own JSON mapping writes it
(`MessageToDict` of a decoded binary request), so the receiver's protobuf path and the JSON
path are one.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from skillproxy.import_formats.turns import LineError, kind_of, unexpected

IdEncoding = Literal["hex", "base64"]
TRACE_ID_BYTES, SPAN_ID_BYTES = 16, 8
STATUS_ERROR = 2


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Span:
    """One span, ids as lower-case hex, times in Unix nanoseconds, attributes as values."""

    trace_id: str
    span_id: str
    name: str
    start_ns: int
    status_code: int
    attributes: dict[str, Any]
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class BadSpan:
    """A span that could not be read, and why (the receiver counts it as rejected)."""

    where: str
    error: str


def spans(document: dict[str, Any], id_encoding: IdEncoding = "hex") -> Iterator[Span | BadSpan]:
    """Every span of an `ExportTraceServiceRequest`; a malformed one as `BadSpan`. A document
    that is not one at all raises `LineError`."""
    resource_spans = document.get("resourceSpans")
    if not isinstance(resource_spans, list):
        raise LineError('resourceSpans: an OTLP trace export is {"resourceSpans": [...]}')
    for r, resource in enumerate(resource_spans):
        for s, scope in enumerate(_list(resource, "scopeSpans", f"resourceSpans[{r}]")):
            where = f"resourceSpans[{r}].scopeSpans[{s}]"
            for n, span in enumerate(_list(scope, "spans", where)):
                try:
                    yield _span(span, id_encoding)
                except LineError as exc:
                    yield BadSpan(f"{where}.spans[{n}]", str(exc))
                except Exception:
                    yield BadSpan(f"{where}.spans[{n}]", str(unexpected(f"{where}.spans[{n}]")))


def _list(parent: Any, key: str, where: str) -> list[Any]:
    if not isinstance(parent, dict):
        raise LineError(f"{where}: an object, not {kind_of(parent)}")
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise LineError(f"{where}.{key}: an array")
    return value


def _span(span: Any, id_encoding: IdEncoding) -> Span:
    if not isinstance(span, dict):
        raise LineError(f"a span is an object, not {kind_of(span)}")
    status: dict[str, Any] = span["status"] if isinstance(span.get("status"), dict) else {}
    name = span.get("name")
    events = span.get("events", [])
    if not isinstance(events, list):
        raise LineError("events: an array")
    return Span(
        trace_id=_id(span.get("traceId"), TRACE_ID_BYTES, "traceId", id_encoding),
        span_id=_id(span.get("spanId"), SPAN_ID_BYTES, "spanId", id_encoding),
        name=name if isinstance(name, str) else "",
        start_ns=_int(span.get("startTimeUnixNano", 0), "startTimeUnixNano"),
        status_code=_int(status.get("code", 0), "status.code"),
        attributes=attributes(span.get("attributes", []), "attributes"),
        events=tuple(_event(e, i) for i, e in enumerate(events)),
    )


def _event(event: Any, index: int) -> Event:
    if not isinstance(event, dict) or not isinstance(event.get("name", ""), str):
        raise LineError(f"events[{index}]: an object with a name")
    return Event(event.get("name", ""), attributes(event.get("attributes", []), "event attributes"))


def _id(value: Any, size: int, where: str, encoding: IdEncoding) -> str:
    """A trace or span id as lower-case hex; all zeros is invalid, as OTLP says."""
    if not isinstance(value, str):
        raise LineError(f"{where}: a {'hex' if encoding == 'hex' else 'base64'} string")
    try:
        raw = bytes.fromhex(value) if encoding == "hex" else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise LineError(f"{where}: {value[:40]!r} is not {encoding}") from None
    if len(raw) != size or not any(raw):
        raise LineError(f"{where}: {value[:40]!r} is not a valid {size}-byte id")
    return raw.hex()


def _int(value: Any, where: str) -> int:
    """An int64 as OTLP/JSON writes it: a decimal string, or a number."""
    if isinstance(value, bool):
        raise LineError(f"{where}: an integer, not {value}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise LineError(f"{where}: an integer (a decimal string in OTLP/JSON), not {value!r}")


def attributes(values: Any, where: str) -> dict[str, Any]:
    """A list of KeyValue as a dict of Python values (a later duplicate key wins)."""
    if not isinstance(values, list):
        raise LineError(f"{where}: an array of {{key, value}}")
    found: dict[str, Any] = {}
    for item in values:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise LineError(f'{where}: each is {{"key": string, "value": AnyValue}}')
        found[item["key"]] = any_value(item.get("value"), f"{where}[{item['key']}]")
    return found


def any_value(value: Any, where: str) -> Any:
    """An AnyValue as the Python value it holds (None when it holds none)."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise LineError(f"{where}: an AnyValue object, not {kind_of(value)}")
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return _int(value["intValue"], where)
    if "doubleValue" in value:
        return _double(value["doubleValue"], where)
    if "arrayValue" in value:
        items = _container(value["arrayValue"], "arrayValue", where)
        return [any_value(v, where) for v in items] if isinstance(items, list) else []
    if "kvlistValue" in value:
        return attributes(_container(value["kvlistValue"], "kvlistValue", where), where)
    if "bytesValue" in value:
        return str(value["bytesValue"])
    raise LineError(f"{where}: an AnyValue holds one of stringValue, intValue, ...")


def _container(value: Any, kind: str, where: str) -> Any:
    """The `values` of an `ArrayValue` or `KeyValueList` (an empty one may be null)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise LineError(f'{where}: {kind} is {{"values": [...]}}, not {kind_of(value)}')
    return value.get("values", [])


def _double(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):  # proto3 JSON spells the special values as strings
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if not math.isnan(number):
                return number
    raise LineError(f"{where}: a number, not {value!r}")
