"""`otlp-json`: a file of OTLP/JSON trace exports, as the collector's file exporter writes it.

One `ExportTraceServiceRequest` document per line (the `file` exporter's default,
https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/exporter/fileexporter),
or one document pretty-printed over the whole file. Spans are read by `otlp_json`, turned
into turns by `genai_spans`, and held by trace until the file ends, since a trace's spans
may be in any document; each trace is then one conversation.

A line is reported when it is not a document, or when some of its spans cannot be used (the
message says how many, and why the first could not); its usable spans are imported all the
same, as the OTLP receiver accepts the good spans of a request. A file whose first line is
is a lone `{` (as `jq` and `json.dumps(indent=...)` begin) is read as one pretty-printed
document, held up to `MAX_DOCUMENT_BYTES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from skillproxy.import_formats.genai_spans import SpanTurn, span_turn, trace_conversation
from skillproxy.import_formats.grouping import Finished, Group, Groups, finished
from skillproxy.import_formats.otlp_json import BadSpan, Span, spans
from skillproxy.import_formats.turns import LineError, json_object, unexpected
from store.records import ImportedConversation

KIND = "otlp-json"
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
"""A pretty-printed document is parsed whole at the end, so it is held whole until then."""


class OtlpFile:
    """The traces of one file of OTLP/JSON documents; see the module docstring."""

    def __init__(self) -> None:
        self._groups: Groups[SpanTurn] = Groups()
        self._pretty: bytearray | None = None
        self._first = True
        self._overflowed = False  # a pretty-printed document past the cap: reported once

    def feed(self, number: int, raw: bytes) -> None:
        if self._overflowed:
            return
        if self._pretty is not None:
            self._hold(raw)
            return
        first, self._first = self._first, False
        if first and raw.strip() == b"{":
            self._pretty = bytearray()
            self._hold(raw)
            return
        self._document(number, raw)

    def held(self) -> int:
        return len(self._groups)

    def finish(self) -> Iterator[Finished]:
        if self._pretty is not None:
            text, self._pretty = bytes(self._pretty), None
            try:
                self._document(1, text)
            except LineError as exc:
                yield 1, LineError(f"the file is one document, and {exc}")
        for group in self._groups.drain():
            yield finished(group, f"trace {group.key}", _conversation)

    def _hold(self, raw: bytes) -> None:
        assert self._pretty is not None
        if len(self._pretty) + len(raw) > MAX_DOCUMENT_BYTES:
            self._pretty, self._overflowed = None, True
            raise LineError(
                f"the file reads as one pretty-printed document over {MAX_DOCUMENT_BYTES} "
                "bytes, so none of it is imported; write one document per line (the "
                "collector's file exporter does)"
            )
        self._pretty += raw + b"\n"

    def _document(self, number: int, raw: bytes) -> None:
        document = json_object(raw)
        turns, problems = read_turns(spans(document))
        self._groups.check({t.trace_id for t in turns}, len(raw))
        for turn in turns:
            size = len(turn.turn.request_json) + len(turn.turn.response_json)
            self._groups.add(number, turn.trace_id, turn, size)
        if problems:
            kept = f"the other {len(turns)} kept" if turns else "none kept"
            raise LineError(f"{len(problems)} spans refused ({kept}): {problems[0]}")


def _conversation(group: Group[SpanTurn]) -> ImportedConversation:
    return trace_conversation(KIND, group.key, group.items)


def read_turns(found: Iterable[Span | BadSpan]) -> tuple[list[SpanTurn], list[str]]:
    """The usable turns of some spans, and why each unusable one is not (spans that are no
    model call are neither)."""
    turns: list[SpanTurn] = []
    problems: list[str] = []
    for span in found:
        if isinstance(span, BadSpan):
            problems.append(f"{span.where}: {span.error}")
            continue
        try:
            turn = span_turn(span)
        except LineError as exc:
            problems.append(str(exc))
            continue
        except Exception:
            problems.append(f"span {span.span_id}: {unexpected(f'span {span.span_id}')}")
            continue
        if turn is not None:
            turns.append(turn)
    return turns, problems
