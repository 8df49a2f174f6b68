"""Server-sent events, parsed the way the WHATWG spec says (and a little more leniently).

Two entry points share one line parser: `iter_events` for a stream already held whole (folding a
trace copy), and `SSEDecoder` for bytes arriving at arbitrary boundaries (relaying). Lines end in
LF, CRLF or a lone CR; a CR at the very end of a chunk is held back until the next byte shows
whether it starts a CRLF. UTF-8 is decoded incrementally, so a character split across chunks is
never mangled. Unlike the spec, a final event without its closing blank line is still delivered:
a cut-off stream should lose as little of the trace as possible.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import Any, NamedTuple

from core import jsonio

__all__ = ["SSEDecoder", "SSEEvent", "iter_events", "json_data"]

_BOM = "\ufeff"


class SSEEvent(NamedTuple):
    """A tuple, not a frozen dataclass: folding makes one per chunk, and a frozen dataclass's
    `__init__` (one `object.__setattr__` per field) costs several times as much."""

    event: str | None
    data: str


class _LineParser:
    """Accumulates `event:`/`data:` fields until a blank line dispatches them."""

    __slots__ = ("_data", "_event")

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def line(self, line: str) -> SSEEvent | None:
        if not line:
            return self.dispatch()
        if line[0] == ":":
            return None
        field, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value or None
        return None

    def dispatch(self) -> SSEEvent | None:
        # The spec dispatches nothing for a block without data, and resets the event type.
        event, data = self._event, self._data
        self._event, self._data = None, []
        return SSEEvent(event, "\n".join(data)) if data else None


def _split_lines(text: str) -> list[str]:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def iter_events(data: bytes) -> Iterator[SSEEvent]:
    """Every event of a complete stream, including a last one cut off before its blank line.

    Events are the blocks between blank lines. Nearly every provider sends each one as a single
    `data: ...` line; those are taken whole, the rest go through the line parser (the events
    of a 13-chunk chat stream: 14 -> 8 µs).
    """
    text = data.decode("utf-8", errors="replace")
    if text.startswith(_BOM):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    parser = _LineParser()
    for block in text.split("\n\n"):
        if block.startswith("data: ") and "\n" not in block:
            yield SSEEvent(None, block[6:])
            continue
        for line in block.split("\n"):
            event = parser.line(line)
            if event is not None:
                yield event
        last = parser.dispatch()
        if last is not None:
            yield last


class SSEDecoder:
    """Incremental parser: `feed` chunks as they arrive, `flush` once the stream has ended."""

    __slots__ = ("_parser", "_pending", "_started", "_utf8")

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parser = _LineParser()
        self._pending: list[str] = []  # text of the current line, its terminator not yet seen
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._text(self._utf8.decode(chunk))

    def flush(self) -> list[SSEEvent]:
        """Deliver whatever the stream left unterminated (a last line, a last event)."""
        self._pending.append(self._utf8.decode(b"", final=True))
        text = "".join(self._pending)
        self._pending = []
        events: list[SSEEvent] = []
        for line in _split_lines(text) if text else ():
            event = self._parser.line(line)
            if event is not None:
                events.append(event)
        last = self._parser.dispatch()
        if last is not None:
            events.append(last)
        return events

    def _text(self, text: str) -> list[SSEEvent]:
        if not self._started and text:
            self._started = True
            if text.startswith(_BOM):
                text = text[1:]
        if "\n" not in text and "\r" not in text:
            if text:
                self._pending.append(text)  # no line ends here: no join, no rescan
            return []
        self._pending.append(text)
        buffered = "".join(self._pending)
        hold_cr = buffered.endswith("\r")
        if hold_cr:
            buffered = buffered[:-1]
        lines = _split_lines(buffered)
        tail = lines.pop()
        self._pending = [tail + "\r"] if hold_cr else ([tail] if tail else [])
        events: list[SSEEvent] = []
        for line in lines:
            event = self._parser.line(line)
            if event is not None:
                events.append(event)
        return events


def json_data(event: SSEEvent) -> dict[str, Any] | None:
    """The event's data as a JSON object, or None for sentinels (`[DONE]`) and broken payloads."""
    data = event.data
    if not data or data[0] not in "{ \t\n":
        return None
    try:
        value = jsonio.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
