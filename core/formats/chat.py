"""OpenAI Chat Completions (`/v1/chat/completions`), and every server that copies it.

The skillbook section joins the client's leading system (or developer) message rather than
adding a message of its own when one exists: a prompt made of one system message stays one,
and the client's text keeps its place at the very start of the prompt, where provider prompt
caches key. Streams are folded leniently because OpenAI-compatible servers differ: Azure opens
with an empty-id filter chunk, vLLM may repeat usage on every chunk, some omit `index` on tool
call deltas or repeat the function name in every fragment.
"""

from __future__ import annotations

import json
from typing import Any

from core.formats.base import Message, ToolCall, Usage, as_list, int_or_none, text_of
from core.formats.sse import iter_events, json_data

__all__ = ["CHAT", "ChatFormat", "openai_error_body"]

_SYSTEM_ROLES = ("system", "developer")
"""A tuple, not a set: a client's `role` may be a list or an object, which `in` a tuple simply
does not match (a set would raise, unhashable), and two comparisons cost what a hash does."""
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
# Delta fields that arrive as string fragments. `reasoning_content` (DeepSeek, vLLM) and
# `reasoning` (OpenRouter) are not OpenAI's but are worth keeping in the trace.
_TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
_META_FIELDS = ("id", "created", "model", "system_fingerprint", "service_tier")


def openai_error_body(message: str, type_: str, code: str | None) -> bytes:
    """OpenAI's error envelope, shared by Chat Completions and Responses."""
    error = {"message": message, "type": type_, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


def json_text(value: Any) -> str:
    """Tool arguments as JSON text; a few compatible servers send an object, not a string."""
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _with_section(content: Any, section: str) -> str | list[Any] | None:
    """The system message's content with `section` after it; None for content that is not
    text, parts or absent, which replacing would lose."""
    if isinstance(content, list):
        return [*content, {"type": "text", "text": section}]
    if isinstance(content, str):
        return f"{content}\n\n{section}" if content else section
    return section if content is None else None


class _ToolCallAcc:
    __slots__ = ("arguments", "id", "name", "type")

    def __init__(self) -> None:
        self.id = ""
        self.type = ""
        self.name = ""
        self.arguments: list[str] = []

    def add(self, delta: dict[str, Any]) -> None:
        # id, type and name come once; servers that repeat them must not get them doubled.
        self.id = self.id or str(delta.get("id") or "")
        self.type = self.type or str(delta.get("type") or "")
        function = delta.get("function")
        if isinstance(function, dict):
            self.name = self.name or str(function.get("name") or "")
            arguments = function.get("arguments")
            if arguments:
                self.arguments.append(json_text(arguments))

    def build(self) -> dict[str, Any]:
        function = {"name": self.name, "arguments": "".join(self.arguments)}
        return {"id": self.id, "type": self.type or "function", "function": function}


class _ChoiceAcc:
    __slots__ = ("finish_reason", "logprobs", "role", "texts", "tool_calls")

    def __init__(self) -> None:
        self.role = "assistant"
        self.texts: dict[str, list[str]] = {}
        self.tool_calls: dict[int, _ToolCallAcc] = {}
        self.finish_reason: Any = None
        self.logprobs: dict[str, list[Any]] | None = None

    def add(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if isinstance(delta.get("role"), str):
                self.role = delta["role"]
            for field in _TEXT_FIELDS:
                text = delta.get(field)
                if isinstance(text, str):
                    self.texts.setdefault(field, []).append(text)
            for tool_delta in as_list(delta.get("tool_calls")):
                if isinstance(tool_delta, dict):
                    self._tool_slot(tool_delta).add(tool_delta)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            acc = self.logprobs if self.logprobs is not None else {}
            self.logprobs = acc
            for key in ("content", "refusal"):
                if isinstance(logprobs.get(key), list):
                    acc.setdefault(key, []).extend(logprobs[key])

    def _tool_slot(self, delta: dict[str, Any]) -> _ToolCallAcc:
        index = delta.get("index")
        if not isinstance(index, int):  # no index: a new id starts a new call
            last = max(self.tool_calls, default=-1)
            new_id = delta.get("id")
            fresh = last < 0 or (new_id and new_id != self.tool_calls[last].id)
            index = len(self.tool_calls) if fresh else last
        if index not in self.tool_calls:
            self.tool_calls[index] = _ToolCallAcc()
        return self.tool_calls[index]

    def build(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role}
        for field in _TEXT_FIELDS:
            parts = self.texts.get(field)
            if parts is not None:
                message[field] = "".join(parts)
            elif field in ("content", "refusal"):
                message[field] = None
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i].build() for i in sorted(self.tool_calls)]
        return {
            "index": index,
            "message": message,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


def _message(raw: Any, default_role: str | None = None) -> Message | None:
    if not isinstance(raw, dict):
        return None
    role = raw.get("role") or default_role
    role = _ROLES.get(role) if isinstance(role, str) else None
    if role is None:
        return None
    content = raw.get("content")
    if type(content) is not str:  # the usual plain string skips the parts walk
        content = text_of(content)
    if not content and isinstance(raw.get("refusal"), str):
        content = raw["refusal"]
    tool_call_id = raw.get("tool_call_id") if role == "tool" else None
    tool_call_id = str(tool_call_id) if tool_call_id else None
    if "tool_calls" not in raw and "function_call" not in raw:  # most messages: no calls
        return Message(role, content, (), tool_call_id)
    calls: list[ToolCall] = []
    for call in as_list(raw.get("tool_calls")):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            name, arguments = function.get("name"), json_text(function.get("arguments"))
            calls.append(ToolCall(str(call.get("id") or ""), str(name or ""), arguments))
    legacy = raw.get("function_call")
    if isinstance(legacy, dict):
        arguments = json_text(legacy.get("arguments"))
        calls.append(ToolCall("", str(legacy.get("name") or ""), arguments))
    return Message(role, content, tuple(calls), tool_call_id)


class ChatFormat:
    name = "chat"

    def system_text(self, body: dict[str, Any]) -> str:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return ""
        texts = (
            text_of(m.get("content"))
            for m in messages
            if isinstance(m, dict) and m.get("role") in _SYSTEM_ROLES
        )
        return "\n\n".join(t for t in texts if t)

    def inject(self, body: dict[str, Any], section: str) -> dict[str, Any] | None:
        messages = body.get("messages")
        if messages is None:  # absent, as a missing system message is: it is added
            return {**body, "messages": [{"role": "system", "content": section}]}
        if not isinstance(messages, list):
            return None
        target = -1
        for i, message in enumerate(messages):
            if not (isinstance(message, dict) and message.get("role") in _SYSTEM_ROLES):
                break
            target = i
        out = list(messages)
        if target < 0:
            out.insert(0, {"role": "system", "content": section})
        else:
            message = messages[target]
            content = _with_section(message.get("content"), section)
            if content is None:
                return None
            out[target] = {**message, "content": content}
        return {**body, "messages": out}

    def latest_user_text(self, body: dict[str, Any]) -> str:
        messages = body.get("messages")
        for message in reversed(as_list(messages)):
            if isinstance(message, dict) and message.get("role") == "user":
                text = text_of(message.get("content"))
                if text:
                    return text
        return ""

    def fold_stream(self, raw: bytes) -> dict[str, Any]:
        folded: dict[str, Any] = {"object": "chat.completion"}
        choices: dict[int, _ChoiceAcc] = {}
        usage: Any = None
        done = False
        for event in iter_events(raw):
            if event.data.strip() == "[DONE]":
                done = True
                break
            chunk = json_data(event)
            if chunk is None:
                continue
            if chunk.get("error") is not None:
                folded["error"] = chunk["error"]
                continue
            for field in _META_FIELDS:
                if chunk.get(field):  # Azure's first chunk has id "" and created 0
                    folded[field] = chunk[field]
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in as_list(chunk.get("choices")):
                if isinstance(choice, dict):
                    index = choice.get("index")
                    index = index if isinstance(index, int) else 0
                    acc = choices.get(index)
                    if acc is None:
                        acc = choices[index] = _ChoiceAcc()
                    acc.add(choice)
        folded["choices"] = [choices[i].build(i) for i in sorted(choices)]
        if usage is not None:
            folded["usage"] = usage
        if not done:
            folded["incomplete"] = True
        return folded

    def usage(self, response: dict[str, Any]) -> Usage:
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return Usage()
        return Usage(
            int_or_none(usage.get("prompt_tokens")), int_or_none(usage.get("completion_tokens"))
        )

    def conversation(
        self, request: dict[str, Any], response: dict[str, Any] | None
    ) -> list[Message]:
        messages = request.get("messages")
        out = [m for m in map(_message, as_list(messages)) if m]
        choices = response.get("choices") if response else None
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            answer = _message(choices[0].get("message"), default_role="assistant")
            if answer is not None:
                out.append(answer)
        return out

    def error_body(self, status: int, message: str, type_: str, code: str | None) -> bytes:
        return openai_error_body(message, type_, code)


CHAT = ChatFormat()
