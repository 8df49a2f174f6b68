"""Conversations people already have, read as the traces the proxy would have logged for them.

Pure functions, one file line in, one `ImportedConversation` (or the reason it is refused)
out; the admin handler streams the file through them and hands batches to the store.

A conversation becomes one trace per assistant turn: the request is the conversation up to
that turn, the response is that turn, both in the wire format's own JSON (a Chat Completions
request and `chat.completion` for `openai-jsonl`, a Messages request and `message` for
`anthropic-jsonl`). Each request then extends the previous one by its answer, which is exactly
how the grouping chains proxied turns, and every trace of a line shares one session id (the
line's `session_id`, else one derived from its source id), so a line is one episode.

Formats read one line at a time (a line is a conversation):

- `openai-jsonl`: `{"messages": [...], "tools"?, "parallel_tool_calls"?}` per line, as
  OpenAI's chat fine-tuning files have it (the `FineTuneChatRequestInput` of
  https://platform.openai.com/docs/api-reference/fine-tuning/chat-input; `weight` on an
  assistant message is dropped: it is a training switch, not part of the conversation).
- `anthropic-jsonl`: a Messages request `{"system"?, "messages", "tools"?, ...}`, optionally
  with `"response": {message}`; or a Message Batches line `{"custom_id", "params": {...},
  "result"?: {"type": "succeeded", "message": {...}}}` (https://docs.anthropic.com/en/api/messages,
  https://docs.anthropic.com/en/api/creating-message-batches).

Both take our own optional keys beside the format's: `session_id`, `model` (openai-jsonl:
fine-tuning lines carry none), and `score` (0..1) and/or `label`, checked by the same rules as
`POST /v1/feedback` and stored as feedback on the line's session.

Formats whose conversations span lines (`claude-code`, `langfuse`, `otlp-json`) live in
`skillproxy.import_formats`, one module each; `grouped(kind)` gives the reader of one file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from proxy.feedback import Feedback
from skillproxy.import_formats.claude_code import ClaudeCodeSessions
from skillproxy.import_formats.grouping import GroupedFormat
from skillproxy.import_formats.langfuse import DEFAULT_SCORE_NAMES, LangfuseTraces
from skillproxy.import_formats.otlp_file import OtlpFile
from skillproxy.import_formats.turns import (
    MAX_SESSION_ID,
    LineError,
    chat_turn,
    checked_messages,
    conversation,
    json_object,
    messages_turn,
    storable,
    stored_size,
    verdict,
    within_cap,
)
from store.records import ImportedConversation, ImportedTurn

__all__ = ["LineError"]

ImportFormat = Literal["openai-jsonl", "anthropic-jsonl", "claude-code", "langfuse", "otlp-json"]
IMPORT_FORMATS: tuple[ImportFormat, ...] = (
    "openai-jsonl", "anthropic-jsonl", "claude-code", "langfuse", "otlp-json",
)  # fmt: skip
LINE_FORMATS: frozenset[ImportFormat] = frozenset({"openai-jsonl", "anthropic-jsonl"})
"""The formats of one conversation per line; the others are `grouped`."""
MAX_LINE_BYTES = 4 * 1024 * 1024
"""A longer line is refused (its number reported): the proxy keeps no body larger either."""
MAX_DOCUMENT_LINE_BYTES = 32 * 1024 * 1024
"""An `otlp-json` line is a whole export request (a collector batches thousands of spans, each
with its messages): its cap is the OTLP receiver's body cap, `server.max_body_bytes`' default."""
OUR_KEYS = ("session_id", "score", "label", "model")
"""Keys a line may carry beside its format's own; none of them goes into a request."""
OPENAI_REQUEST_KEYS = ("tools", "parallel_tool_calls", "functions")
"""What a fine-tuning line carries beside its messages that a Chat Completions request takes."""
ANTHROPIC_ROLES = frozenset({"user", "assistant"})
OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class TooLong:
    """A line over its format's cap (`line_limit`), seen only up to it (the rest skipped)."""

    def __init__(self, size: int, limit: int = MAX_LINE_BYTES) -> None:
        self.size, self.limit = size, limit


class LineSplitter:
    """Bytes in any chunks to numbered lines, holding at most `limit` bytes of one line.

    The request body is never read whole: a line over the limit is dropped as it streams and
    reported as `TooLong`, and the lines after it are read as usual. Blank lines are skipped
    (their numbers still count, so reports match an editor's)."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._skipping = 0  # bytes of an overlong line dropped so far; 0: not in one
        self._number = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes | TooLong]]:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            yield from self._end_line(chunk[start:end])
            start = end + 1
        self._add(chunk[start:])

    def close(self) -> Iterator[tuple[int, bytes | TooLong]]:
        """The last line, when the body does not end with a newline."""
        if self._buffer or self._skipping:
            yield from self._end_line(b"")

    def _add(self, part: bytes) -> None:
        if self._skipping:
            self._skipping += len(part)
        elif len(self._buffer) + len(part) > self._limit:
            self._skipping = len(self._buffer) + len(part)
            self._buffer.clear()
        else:
            self._buffer += part

    def _end_line(self, tail: bytes) -> Iterator[tuple[int, bytes | TooLong]]:
        self._add(tail)
        self._number += 1
        if self._skipping:
            yield self._number, TooLong(self._skipping, self._limit)
        elif self._buffer.strip():
            yield self._number, bytes(self._buffer)
        self._buffer.clear()
        self._skipping = 0


def parse_line(kind: ImportFormat, raw: bytes) -> ImportedConversation:
    """One line of a `kind` file as a conversation; `LineError` says why it is not one."""
    line = json_object(raw)
    source_id = _source_id(kind, line)
    turns = _openai_turns(line) if kind == "openai-jsonl" else _anthropic_turns(line)
    if not turns:
        raise LineError("no assistant turn: nothing the model said to learn from")
    session = _session_id(line, source_id)
    return conversation(kind, source_id, session, turns, _verdict(line, session))


def grouped(kind: ImportFormat, *, score_names: Sequence[str] | None = None) -> GroupedFormat:
    """The reader of one file of a format whose conversations span lines; `score_names`:
    the Langfuse scores taken as feedback (None: `DEFAULT_SCORE_NAMES`)."""
    if kind == "langfuse":
        return LangfuseTraces(DEFAULT_SCORE_NAMES if score_names is None else score_names)
    readers: dict[str, type[GroupedFormat]] = {
        "claude-code": ClaudeCodeSessions, "otlp-json": OtlpFile,
    }  # fmt: skip
    return readers[kind]()


def stored_bytes(imported: ImportedConversation) -> int:
    """About what its traces take: the bodies, which are nearly all of a row."""
    return stored_size(imported.turns)


def line_limit(kind: ImportFormat) -> int:
    return MAX_DOCUMENT_LINE_BYTES if kind == "otlp-json" else MAX_LINE_BYTES


def too_long_error(line: TooLong) -> str:
    return f"the line is over {line.limit} bytes (at least {line.size}); split it"


# --------------------------------------------------------------------------- the line


def _source_id(kind: ImportFormat, line: dict[str, Any]) -> str:
    """The line's own id where its format has one (a batch's `custom_id`), else a hash of its
    canonical JSON: the same conversation is the same line whatever its key order."""
    custom = line.get("custom_id")
    if kind == "anthropic-jsonl" and "params" in line:
        if not isinstance(custom, str) or not custom:
            raise LineError("custom_id: a Message Batches line needs a non-empty string")
        return f"{kind}:{storable(custom, 'custom_id')}"
    canonical = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}:{digest[:16]}"


def _session_id(line: dict[str, Any], source_id: str) -> str:
    session = line.get("session_id")
    if session is None:
        return "import-" + hashlib.sha256(source_id.encode()).hexdigest()[:24]
    if not isinstance(session, str) or not 1 <= len(session) <= MAX_SESSION_ID:
        raise LineError(f"session_id: a string of 1 to {MAX_SESSION_ID} characters")
    return storable(session, "session_id")


def _verdict(line: dict[str, Any], session: str) -> Feedback | None:
    """The line's score and label, refused exactly as `POST /v1/feedback` would refuse them."""
    return verdict(session, line.get("score"), line.get("label"))


def _model(line: dict[str, Any], *, where: str = "model") -> str | None:
    model = line.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise LineError(f"{where}: a non-empty string")
    return None if model is None else storable(model, where)


# --------------------------------------------------------------------------- openai-jsonl


def _openai_turns(line: dict[str, Any]) -> list[ImportedTurn]:
    messages = [_without_weight(m) for m in checked_messages(line.get("messages"), OPENAI_ROLES)]
    model = _model(line)
    extras: dict[str, Any] = {k: line[k] for k in OPENAI_REQUEST_KEYS if k in line}
    if "tools" in extras and not isinstance(extras["tools"], list):
        raise LineError("tools: an array of tools")
    turns: list[ImportedTurn] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        named: dict[str, Any] = {"model": model} if model else {}
        request: dict[str, Any] = {**named, "messages": messages[:index], **extras}
        turns.append(chat_turn(request, message, model, len(turns)))
        within_cap(turns)
    return turns


def _without_weight(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "weight"}


# --------------------------------------------------------------------------- anthropic-jsonl


def _anthropic_turns(line: dict[str, Any]) -> list[ImportedTurn]:
    request, response = _anthropic_pair(line)
    messages = checked_messages(request.get("messages"), ANTHROPIC_ROLES, _where(line, "messages"))
    model = _model(request, where=_where(line, "model"))
    turns: list[ImportedTurn] = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            asked = {**request, "messages": messages[:index]}
            turns.append(messages_turn(asked, _message(message, model, len(turns)), model))
            within_cap(turns)
    if response is not None:
        turns.append(messages_turn(request, response, model))
        within_cap(turns)
    return turns


def _anthropic_pair(line: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The request and its response (None: the line carries none) of either shape."""
    if "params" in line:
        params = line["params"]
        if not isinstance(params, dict):
            raise LineError("params: a Messages request object")
        return params, _batch_result(line.get("result"))
    request = {k: v for k, v in line.items() if k not in ("response", *OUR_KEYS) or k == "model"}
    response = line.get("response")
    if response is not None and not isinstance(response, dict):
        raise LineError("response: a Messages response object")
    return request, _checked_response(response, "response") if response is not None else None


def _batch_result(result: Any) -> dict[str, Any] | None:
    if result is None:
        return None
    if not isinstance(result, dict):
        raise LineError("result: an object")
    if result.get("type") != "succeeded":
        raise LineError(
            f"result.type: {result.get('type')!r}, not 'succeeded': the request failed, "
            "so there is no answer to import"
        )
    return _checked_response(result.get("message"), "result.message")


def _checked_response(response: Any, where: str) -> dict[str, Any]:
    if not isinstance(response, dict):
        raise LineError(f"{where}: a Messages response object")
    if response.get("role", "assistant") != "assistant":
        raise LineError(f"{where}.role: {response.get('role')!r} is not assistant")
    if not isinstance(response.get("content"), list):
        raise LineError(f"{where}.content: an array of content blocks")
    return response


def _where(line: dict[str, Any], key: str) -> str:
    return f"params.{key}" if "params" in line else key


def _message(message: dict[str, Any], model: str | None, turn: int) -> dict[str, Any]:
    """The Messages response that would have carried the assistant `message`."""
    content = message.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list):
        raise LineError("an assistant message's content is a string or an array of blocks")
    uses_tool = any(isinstance(b, dict) and b.get("type") == "tool_use" for b in blocks)
    return {
        "id": f"msg_import_{turn}",
        "type": "message",
        "role": "assistant",
        "model": model or "",
        "content": blocks,
        "stop_reason": "tool_use" if uses_tool else "end_turn",
        "stop_sequence": None,
    }
