"""Spans that follow OpenTelemetry's GenAI semantic conventions, as proxied turns.

https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ (now developed in
open-telemetry/semantic-conventions-genai). An inference span (`gen_ai.operation.name`
`chat`, `text_completion` or `generate_content`; or, from an instrumentation older than that
attribute, a span that names a provider, `gen_ai.provider.name` or `gen_ai.system` before
v1.37, and carries messages) is one call to a model: it becomes one Chat Completions trace,
its request the messages the model was sent, its response the message it answered. The
messages are read from whichever form the instrumentation wrote, newest first:

- `gen_ai.input.messages`, `gen_ai.output.messages` and `gen_ai.system_instructions`
  (v1.37 on): messages of typed `parts` (`text`, `tool_call`, `tool_call_response` with
  `result`, or `response` as the newer repository names it), structured or as JSON text;
- `gen_ai.prompt` / `gen_ai.completion` JSON text, as attributes or on the
  `gen_ai.content.prompt` / `gen_ai.content.completion` events (v1.26-v1.27), and their
  indexed flat form `gen_ai.prompt.0.role`, `gen_ai.prompt.0.content` (OpenLLMetry's);
- the per-message events `gen_ai.system.message`, `gen_ai.user.message`,
  `gen_ai.assistant.message`, `gen_ai.tool.message` and `gen_ai.choice` (v1.28-v1.36), their
  body as attributes (`content`, `role`, `tool_calls`, `id`, `message`) or JSON text in
  `gen_ai.event.content`.

Other spans (HTTP, tools, agents, embeddings) are not model calls and are passed over, as
is a span without `gen_ai.operation.name` that carries no messages. A `chat` span whose
content was not recorded (instrumentations record it only when asked) is refused, saying so;
a failed call (status ERROR) that has no answer is passed over. Parts that carry no text
(images, reasoning) are left out. A trace's verdict is the first `gen_ai.evaluation.result`
event whose `gen_ai.evaluation.score.value` is from 0 to 1, or whose
`gen_ai.evaluation.score.label` is one of our labels.

A trace is one conversation: `trace_conversation` takes its turns in start-time order, each
span once, under the session `otlp-<trace id>`, and names it by the trace id and a digest of
its span ids, so the same spans sent again (a retried export, a file imported twice) add
nothing; spans of a trace sent apart are conversations of one session, hence one episode.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from proxy.feedback import Feedback
from skillproxy.import_formats.otlp_json import STATUS_ERROR, Span
from skillproxy.import_formats.turns import (
    LineError,
    chat_turn,
    conversation,
    count,
    digest,
    parsed_if_json,
    storable,
    verdict,
)
from store.feedback_labels import is_known
from store.records import ImportedConversation, ImportedTurn

INFERENCE = frozenset({"chat", "text_completion", "generate_content"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MESSAGE_EVENTS = {
    "gen_ai.system.message": "system", "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool",
}  # fmt: skip
NO_CONTENT = (
    "no messages recorded on this chat span: GenAI instrumentations record content only "
    "when asked (e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true)"
)
CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.prompt",
                "gen_ai.completion")  # fmt: skip
CONTENT_EVENTS = frozenset(
    {*MESSAGE_EVENTS, "gen_ai.choice", "gen_ai.content.prompt", "gen_ai.content.completion"}
)
_INDEXED = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(\w+)$")


@dataclass(frozen=True, slots=True)
class SpanTurn:
    """An inference span read as a turn, with what orders and names it in its trace."""

    trace_id: str
    span_id: str
    start_ns: int
    turn: ImportedTurn
    verdict: tuple[float | None, str | None] | None = None


def span_turn(span: Span) -> SpanTurn | None:
    """The span as a turn; None for a span that is no model call (or a failed one with no
    answer); `LineError` for an inference span whose messages cannot be read."""
    attrs = span.attributes
    if not _is_inference(span):
        return None
    where = f"span {span.span_id}"
    asked, answer = _input(span), _output(span)
    if answer is None and span.status_code == STATUS_ERROR:
        return None
    if not asked or answer is None:
        missing = "no output message" if asked else "no input messages"
        raise LineError(f"{where}: {NO_CONTENT if not asked and answer is None else missing}")
    model = _text(attrs.get("gen_ai.response.model")) or _text(attrs.get("gen_ai.request.model"))
    model = storable(model, "gen_ai.request.model") if model else None
    request: dict[str, Any] = {"model": model or "", "messages": asked}
    tools = _tools(attrs.get("gen_ai.tool.definitions"))
    if tools:
        request["tools"] = tools
    used_in = attrs.get("gen_ai.usage.input_tokens", attrs.get("gen_ai.usage.prompt_tokens"))
    used_out = attrs.get("gen_ai.usage.output_tokens", attrs.get("gen_ai.usage.completion_tokens"))
    turn = chat_turn(request, answer, model, 0, input_tokens=count(used_in),
                     output_tokens=count(used_out))  # fmt: skip
    return SpanTurn(span.trace_id, span.span_id, span.start_ns, turn, _evaluation(span))


def _is_inference(span: Span) -> bool:
    """A model call: its operation says so, or (an instrumentation older than
    `gen_ai.operation.name`) it names a provider and carries messages."""
    attrs = span.attributes
    operation = attrs.get("gen_ai.operation.name")
    if operation is not None:
        return isinstance(operation, str) and operation in INFERENCE
    if attrs.get("gen_ai.provider.name") is None and attrs.get("gen_ai.system") is None:
        return False
    return any(key.startswith(CONTENT_KEYS) for key in attrs) or any(
        event.name in CONTENT_EVENTS for event in span.events
    )


def trace_conversation(
    kind: str, trace_id: str, turns: Iterable[SpanTurn], *, source: str | None = None
) -> ImportedConversation:
    """One trace's turns as one conversation; see the module docstring."""
    unique = {t.span_id: t for t in turns}
    ordered = sorted(unique.values(), key=lambda t: (t.start_ns, t.span_id))
    session = f"otlp-{trace_id}"
    verdicts = [t.verdict for t in ordered if t.verdict is not None]
    feedback: Feedback | None = None
    if verdicts:
        score, label = verdicts[0]
        feedback = verdict(session, score) if score is not None else verdict(session, label=label)
    return conversation(
        kind, f"otlp:{trace_id}:{digest(t.span_id for t in ordered)}", session,
        [t.turn for t in ordered], feedback, source=source,
    )  # fmt: skip


# --------------------------------------------------------------------------- the input


def _input(span: Span) -> list[dict[str, Any]]:
    attrs = span.attributes
    system = [
        {"role": "system", "content": text}
        for text in [_joined(_parts(parsed_if_json(attrs.get("gen_ai.system_instructions"))))]
        if text
    ]
    if "gen_ai.input.messages" in attrs:
        return system + _from_parts(
            parsed_if_json(attrs["gen_ai.input.messages"]), "gen_ai.input.messages"
        )
    if "gen_ai.prompt" in attrs:
        return system + _openai(parsed_if_json(attrs["gen_ai.prompt"]), "gen_ai.prompt")
    for event in span.events:
        if event.name == "gen_ai.content.prompt" and "gen_ai.prompt" in event.attributes:
            return system + _openai(
                parsed_if_json(event.attributes["gen_ai.prompt"]), "gen_ai.prompt"
            )
    indexed = _indexed(attrs, "prompt")
    if indexed:
        return system + indexed
    from_events = [_event_message(e.attributes, role) for e in span.events
                   if (role := MESSAGE_EVENTS.get(e.name))]  # fmt: skip
    return system + from_events


def _output(span: Span) -> dict[str, Any] | None:
    attrs = span.attributes
    if "gen_ai.output.messages" in attrs:
        messages = _from_parts(
            parsed_if_json(attrs["gen_ai.output.messages"]), "gen_ai.output.messages"
        )
        return _answer(messages)
    if "gen_ai.completion" in attrs:
        return _answer(_openai(parsed_if_json(attrs["gen_ai.completion"]), "gen_ai.completion"))
    for event in span.events:
        if event.name == "gen_ai.content.completion" and "gen_ai.completion" in event.attributes:
            return _answer(
                _openai(parsed_if_json(event.attributes["gen_ai.completion"]), "gen_ai.completion")
            )
    indexed = _indexed(attrs, "completion")
    if indexed:
        return _answer(indexed)
    for event in span.events:
        if event.name == "gen_ai.choice":
            body = _body(event.attributes)
            message = parsed_if_json(body.get("message")) if "message" in body else body
            if isinstance(message, dict):
                return _answer([_event_message(message, "assistant")])
    return None


def _answer(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    found = next((m for m in messages if m["role"] == "assistant"), None)
    return {k: v for k, v in found.items() if k != "role"} if found is not None else None


# --------------------------------------------------------------------------- the forms


def _from_parts(value: Any, where: str) -> list[dict[str, Any]]:
    """v1.37's `[{role, parts: [...]}]` as Chat Completions messages."""
    if not isinstance(value, list):
        raise LineError(f"{where}: an array of messages (as JSON text or structured)")
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or _role(message.get("role")) is None:
            raise LineError(f"{where}[{index}]: a message with a role ({', '.join(sorted(ROLES))})")
        parts = _parts(message.get("parts"))
        results = [p for p in parts if p.get("type") == "tool_call_response"]
        for part in results:
            answer = part.get("result", part.get("response"))
            text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
            messages.append({"role": "tool", "tool_call_id": str(part.get("id", "")),
                             "content": text})  # fmt: skip
        calls = [_tool_call(p) for p in parts if p.get("type") == "tool_call"]
        text = _joined(parts)
        if results and not text and not calls:
            continue
        chat: dict[str, Any] = {"role": message["role"], "content": text or None}
        if calls:
            chat["tool_calls"] = calls
        messages.append(chat)
    return messages


def _parts(value: Any) -> list[dict[str, Any]]:
    return [p for p in value if isinstance(p, dict)] if isinstance(value, list) else []


def _joined(parts: list[dict[str, Any]]) -> str:
    return "\n".join(str(p.get("content", "")) for p in parts if p.get("type") == "text")


def _tool_call(part: dict[str, Any]) -> dict[str, Any]:
    arguments = part.get("arguments")
    text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return {"id": str(part.get("id", "")), "type": "function",
            "function": {"name": str(part.get("name", "")), "arguments": text}}  # fmt: skip


def _openai(value: Any, where: str) -> list[dict[str, Any]]:
    """The older forms' OpenAI-shaped messages (one message, or an array of them)."""
    value = [value] if isinstance(value, dict) else value
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise LineError(f"{where}: messages as JSON text")
    found: list[dict[str, Any]] = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise LineError(f"{where}[{index}]: a message is an object")
        found.append(
            _event_message(message, "assistant" if where.endswith("completion") else "user")
        )
    return found


def _indexed(attrs: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """`gen_ai.prompt.0.role`, `gen_ai.prompt.0.content`, ... as messages, by index."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        match = _INDEXED.match(key)
        if match and match[1] == kind and match[3] in ("role", "content"):
            found.setdefault(int(match[2]), {})[match[3]] = value
    default = "assistant" if kind == "completion" else "user"
    return [_event_message(found[i], default) for i in sorted(found)]


def _body(attributes: dict[str, Any]) -> dict[str, Any]:
    body = parsed_if_json(attributes.get("gen_ai.event.content"))
    return body if isinstance(body, dict) else attributes


def _event_message(attributes: dict[str, Any], role: str) -> dict[str, Any]:
    """An event body (or an older form's message) `{content, role?, tool_calls?, id?}`."""
    body = _body(attributes)
    given = body.get("role")
    message: dict[str, Any] = {"role": _role(given) or role}
    content = body.get("content")
    if not (content is None or isinstance(content, str | list)):
        content = json.dumps(content, ensure_ascii=False)
    message["content"] = content
    calls = parsed_if_json(body.get("tool_calls"))
    if isinstance(calls, list) and calls:
        message["tool_calls"] = [_chat_call(c) for c in calls if isinstance(c, dict)]
    if message["role"] == "tool":
        message["tool_call_id"] = str(body.get("id", body.get("tool_call_id", "")))
    return message


def _chat_call(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call in Chat Completions' shape, its arguments JSON text (events may hold them
    structured)."""
    function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
    arguments = function.get("arguments", call.get("arguments"))
    return _tool_call({"id": call.get("id"), "name": function.get("name", call.get("name")),
                       "arguments": arguments})  # fmt: skip


def _tools(value: Any) -> list[dict[str, Any]]:
    """`gen_ai.tool.definitions` as Chat Completions tools."""
    value = parsed_if_json(value)
    if not isinstance(value, list):
        return []
    tools: list[dict[str, Any]] = []
    for tool in value:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            tools.append(tool)
        elif isinstance(tool, dict) and isinstance(tool.get("name"), str):
            described = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
            tools.append({"type": "function", "function": described})
    return tools


def _evaluation(span: Span) -> tuple[float | None, str | None] | None:
    for event in span.events:
        if event.name != "gen_ai.evaluation.result":
            continue
        value = event.attributes.get("gen_ai.evaluation.score.value")
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value), None
        label = event.attributes.get("gen_ai.evaluation.score.label")
        if isinstance(label, str) and is_known(label):
            return None, label
    return None


def _role(value: Any) -> str | None:
    return value if isinstance(value, str) and value in ROLES else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
