"""Every import reader, fed its own fixture lines with one value swapped for any JSON value,
raises nothing but `LineError`: a malformed line is that line's failure, never the batch's.

Covers the readers of skillproxy/trace_import.py and skillproxy/import_formats/. A value is
picked anywhere in a line, including inside the JSON text some formats nest in a string
(Langfuse's `input`, an OTLP attribute's messages), and replaced."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skillproxy.import_formats.turns import LineError
from skillproxy.trace_import import LINE_FORMATS, ImportFormat, grouped, parse_line

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "import"
FILES: dict[ImportFormat, Path] = {
    "openai-jsonl": FIXTURES / "openai-chat.jsonl",
    "anthropic-jsonl": FIXTURES / "anthropic-messages.jsonl",
    "claude-code": FIXTURES / "claude-code-sessions.jsonl",
    "langfuse": FIXTURES / "langfuse-export.jsonl",
    "otlp-json": FIXTURES / "otlp-genai.jsonl",
}
FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
TEXT = "<json text>"
"""A path step into a string that holds JSON text."""

Path_ = tuple[Any, ...]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)  # fmt: skip


def _nested(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return None


def paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every position in `value`, containers and leaves, into nested JSON text too."""
    found = [prefix]
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    elif (inner := _nested(value)) is not None:
        return found + paths(inner, (*prefix, TEXT))
    for key, item in items:
        found += paths(item, (*prefix, key))
    return found


def replaced(value: Any, path: Path_, new: Any) -> Any:
    if not path:
        return new
    step, rest = path[0], path[1:]
    if step == TEXT:
        return json.dumps(replaced(json.loads(value), rest, new))
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[step] = replaced(value[step], rest, new)
    return copy


def read_all(kind: ImportFormat, raws: list[bytes]) -> None:
    """The reader over these lines: any exception but `LineError` escapes."""
    if kind in LINE_FORMATS:
        for raw in raws:
            with contextlib.suppress(LineError):
                parse_line(kind, raw)
        return
    reader = grouped(kind)
    for number, raw in enumerate(raws, 1):
        with contextlib.suppress(LineError):
            reader.feed(number, raw)
    for _, outcome in reader.finish():
        assert isinstance(outcome, LineError) or outcome.turns


def _lines(kind: ImportFormat) -> list[Any]:
    return [json.loads(t) for t in FILES[kind].read_text().splitlines() if t.strip()]


def _fuzz(kind: ImportFormat) -> Any:
    lines = _lines(kind)
    positions = [(n, p) for n, line in enumerate(lines) for p in paths(line)]

    @FUZZ
    @given(st.sampled_from(positions), json_values)
    def check(position: tuple[int, Path_], value: Any) -> None:
        number, path = position
        changed = [replaced(line, path, value) if n == number else line
                   for n, line in enumerate(lines)]  # fmt: skip
        read_all(kind, [json.dumps(line).encode() for line in changed])

    return check


def test_openai_jsonl_raises_only_line_errors() -> None:
    _fuzz("openai-jsonl")()


def test_anthropic_jsonl_raises_only_line_errors() -> None:
    _fuzz("anthropic-jsonl")()


def test_claude_code_raises_only_line_errors() -> None:
    _fuzz("claude-code")()


def test_langfuse_raises_only_line_errors() -> None:
    _fuzz("langfuse")()


def test_otlp_json_raises_only_line_errors() -> None:
    _fuzz("otlp-json")()
