"""`claude-code`: Claude Code's session transcripts, as the traces its API calls would be.

Claude Code keeps one JSONL file per session under `~/.claude/projects/<cwd>/<session>.jsonl`
(Anthropic publishes no schema: the shape read here is what the files hold, and what the
hooks documentation names, https://docs.anthropic.com/en/docs/claude-code/hooks: a
`transcript_path` whose lines carry the `session_id`). A line is a record with a `type`:
`user` and `assistant` lines carry `sessionId`, `uuid`, `parentUuid`, `isSidechain` and a
`message` in the Messages API's shape; `summary`, `system`, `file-history-snapshot`,
`progress` and the like are the tool's own bookkeeping and are skipped.

One session is one conversation (one episode), its turns in the Messages wire format: each
assistant reply is a trace whose request is the conversation before it. What the model saw
is rebuilt as the API received it: a reply the tool wrote over several lines (one content
block each, one `message.id`) is one message; tool results that follow each other are one
user message; a subagent's lines (`isSidechain`) are its own conversation, not this one's, and
are skipped, as are the tool's stand-in replies (model `<synthetic>`). The system prompt and
tool definitions are not in the transcript, so the requests carry none (nor `max_tokens`).

A session's source id is its `sessionId` with a digest of its line ids, so importing the same
file again adds nothing, and importing it again after it grew imports the longer session as
a new episode.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from skillproxy.import_formats.grouping import Finished, Group, Groups, finished
from skillproxy.import_formats.turns import (
    LineError,
    conversation,
    digest,
    identifier,
    json_object,
    messages_turn,
    within_cap,
)
from store.records import ImportedConversation, ImportedTurn

KIND = "claude-code"
CONVERSATION_TYPES = frozenset({"user", "assistant"})
SYNTHETIC_MODEL = "<synthetic>"
"""The model Claude Code names on replies it made up itself (an API error shown as a reply)."""


@dataclass(frozen=True, slots=True)
class _Line:
    uuid: str
    message: dict[str, Any]


class ClaudeCodeSessions:
    """The sessions of one file (or of several files concatenated); see the module docstring."""

    def __init__(self) -> None:
        self._groups: Groups[_Line] = Groups()

    def feed(self, number: int, raw: bytes) -> None:
        line = json_object(raw)
        kind = line.get("type")
        if not isinstance(kind, str):
            raise LineError("type: every transcript line names its type (user, assistant, ...)")
        if kind not in CONVERSATION_TYPES or line.get("isSidechain") is True:
            return
        session = identifier(line.get("sessionId"), "sessionId")
        message = _message(line, kind)
        if message is None:
            return
        uuid = identifier(line.get("uuid"), "uuid")
        self._groups.check({session}, len(raw))
        self._groups.add(number, session, _Line(uuid, message), len(raw))

    def held(self) -> int:
        return len(self._groups)

    def finish(self) -> Iterator[Finished]:
        for group in self._groups.drain():
            yield finished(group, f"session {group.key}", _session)


def _session(group: Group[_Line]) -> ImportedConversation:
    turns = _turns([item.message for item in group.items])
    if not turns:
        raise LineError("no assistant reply: nothing the model said to learn from")
    lines = digest(item.uuid for item in group.items)
    return conversation(
        KIND, f"{KIND}:{group.key}:{lines}", f"{KIND}-{group.key}-{lines[:8]}", turns
    )


def _message(line: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The line's message, checked; None for a reply the tool made up itself."""
    message = line.get("message")
    if not isinstance(message, dict):
        raise LineError(f"message: a {kind} line carries a Messages API message object")
    if message.get("role") != kind:
        raise LineError(f"message.role: {message.get('role')!r} on a {kind} line")
    content = message.get("content")
    if not isinstance(content, str | list):
        raise LineError("message.content: a string or an array of content blocks")
    if kind == "assistant":
        if not isinstance(content, list):
            raise LineError("message.content: an assistant message holds an array of blocks")
        if message.get("model") == SYNTHETIC_MODEL:
            return None
    return message


def _turns(lines: list[dict[str, Any]]) -> list[ImportedTurn]:
    """One trace per reply, each asked with the conversation before it."""
    turns: list[ImportedTurn] = []
    history: list[dict[str, Any]] = []
    for message in _merged(lines):
        if message["role"] == "assistant":
            model = message.get("model") if isinstance(message.get("model"), str) else None
            request = {"model": model or "", "messages": list(history)}
            turns.append(messages_turn(request, _response(message), model))
            within_cap(turns)
        history.append({"role": message["role"], "content": message["content"]})
    return turns


def _merged(lines: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The messages as the API had them: one reply's blocks together, and user lines that
    follow each other (a tool result each) as one user message."""
    current: dict[str, Any] | None = None
    for message in lines:
        if current is not None and _continues(current, message):
            current = {**message, "content": _blocks(current) + _blocks(message)}
            continue
        if current is not None:
            yield current
        current = message
    if current is not None:
        yield current


def _continues(current: dict[str, Any], message: dict[str, Any]) -> bool:
    if current["role"] != message["role"]:
        return False
    if message["role"] == "user":
        return True
    return current.get("id") is not None and current.get("id") == message.get("id")


def _blocks(message: dict[str, Any]) -> list[Any]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _response(message: dict[str, Any]) -> dict[str, Any]:
    """The `message` the API answered with, in its published shape."""
    uses_tool = any(isinstance(b, dict) and b.get("type") == "tool_use" for b in message["content"])
    return {
        "id": message.get("id") or "msg_import",
        "type": "message",
        "role": "assistant",
        "model": message.get("model") or "",
        "content": message["content"],
        "stop_reason": message.get("stop_reason") or ("tool_use" if uses_tool else "end_turn"),
        "stop_sequence": message.get("stop_sequence"),
        "usage": message.get("usage") if isinstance(message.get("usage"), dict) else {},
    }
