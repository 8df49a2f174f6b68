"""What every import format builds its traces from, so each format is only its own reading.

A trace of an imported turn is what the proxy would have logged: the request and the
response in a wire format's own JSON (`chat`: a Chat Completions request and a
`chat.completion`; `messages`: a Messages request and a `message`). Everything here checks
what goes into the store as it is (text must be UTF-8, feedback must pass the rules of
`POST /v1/feedback`) and raises `LineError` with the words the import's report shows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from core.formats.messages import MESSAGES
from core.prices import cost_usd
from proxy.feedback import Feedback, Refusal, parse_feedback
from store.records import ImportedConversation, ImportedTurn

MAX_CONVERSATION_BYTES = 64 * 1024 * 1024
"""What one conversation's traces may hold in all. Each turn's request repeats the
conversation before it (as an agent resends it, and the proxy would store it), so a
conversation of many long turns grows quadratically; past this it is refused rather than held
in memory."""
MAX_SESSION_ID = 200

log = logging.getLogger("skillproxy.import")


class LineError(ValueError):
    """Why a line (or a conversation, reported at its first line) cannot be imported; the
    message is what the report shows for it."""


def unexpected(what: str) -> LineError:
    """The last line of defence, called in an `except Exception` around reading one line,
    span or conversation: an error no check foresaw (a bug) is logged with its traceback and
    becomes that one's `LineError`, so the rest of the import goes on."""
    log.exception("import: reading %s failed", what)
    return LineError("an internal error while reading it (the proxy's log has the traceback)")


def json_object(raw: bytes) -> dict[str, Any]:
    """One line as a JSON object, or `LineError` saying what it is instead."""
    try:
        value: Any = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise LineError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise LineError(f"not JSON: {exc}") from None
    except RecursionError:
        raise LineError("not JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise LineError(f"not a JSON object but {kind_of(value)}")
    return value


def kind_of(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
    return names.get(type(value), json.dumps(value))


def storable(text: str, where: str) -> str:
    """`text`, which goes into the store as it is: a lone surrogate (JSON can spell one,
    UTF-8 cannot) would fail the whole batch, so it fails only its line."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LineError(f"{where}: holds an unpaired surrogate (\\ud800-\\udfff)") from None
    return text


def identifier(value: Any, where: str, *, longest: int = 128) -> str:
    """A format's own id (a session's, a trace's): a non-empty string, storable, not long."""
    if not isinstance(value, str) or not 1 <= len(value) <= longest:
        raise LineError(f"{where}: a string of 1 to {longest} characters is required")
    return storable(value, where)


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII as is; escaped where a lone surrogate (which JSON can
    spell, but UTF-8 and so the store cannot) would make it unstorable."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text


def digest(parts: Iterable[str]) -> str:
    """16 hex digits naming these parts in this order: a grouped conversation's source id
    carries the digest of its members, so the same lines are the same conversation."""
    hashed = hashlib.sha256()
    for part in parts:
        hashed.update(part.encode("utf-8", "surrogatepass") + b"\x00")
    return hashed.hexdigest()[:16]


def verdict(session: str, score: Any = None, label: Any = None) -> Feedback | None:
    """A score and label, refused exactly as `POST /v1/feedback` would refuse them."""
    given = {key: value for key, value in (("score", score), ("label", label)) if value is not None}
    if not given:
        return None
    checked = parse_feedback(json.dumps({"session_id": session, **given}).encode())
    if isinstance(checked, Refusal):
        raise LineError(checked.message.removeprefix("Invalid feedback: "))
    return checked


def conversation(
    kind: str,
    source_id: str,
    session: str,
    turns: Iterable[ImportedTurn],
    feedback: Feedback | None = None,
    *,
    source: str | None = None,
) -> ImportedConversation:
    """The store's record of one conversation, checked against `MAX_CONVERSATION_BYTES`."""
    held = tuple(turns)
    within_cap(held)
    return ImportedConversation(
        source=source or f"import:{kind}",
        source_id=storable(source_id, "the source id"),
        session_id=storable(session, "the session id"),
        turns=held,
        score=feedback.score if feedback else None,
        label=feedback.label if feedback else None,
    )


def within_cap(turns: Iterable[ImportedTurn]) -> None:
    held = list(turns)
    if stored_size(held) > MAX_CONVERSATION_BYTES:
        raise LineError(
            f"its {len(held)}+ turns would store over {MAX_CONVERSATION_BYTES} bytes (each "
            "request repeats the conversation before it); split the conversation"
        )


def stored_size(turns: Iterable[ImportedTurn]) -> int:
    """About what the traces take: the bodies, which are nearly all of a row."""
    return sum(len(t.request_json) + len(t.response_json) for t in turns)


def checked_messages(
    value: Any, roles: frozenset[str], where: str = "messages"
) -> list[dict[str, Any]]:
    """`value` as a non-empty list of messages whose roles are all in `roles`."""
    if not isinstance(value, list) or not value:
        raise LineError(f"{where}: a non-empty array of messages is required")
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise LineError(f"{where}[{index}]: a message is an object, not {kind_of(message)}")
        role = message.get("role")
        if not isinstance(role, str) or role not in roles:
            given = repr(role[:40]) if isinstance(role, str) else kind_of(role)
            raise LineError(
                f"{where}[{index}].role: {given} is not one of {', '.join(sorted(roles))}"
            )
    return value


def parsed_if_json(value: Any) -> Any:
    """A value that formats write either structured or as its JSON text (OpenTelemetry's
    content attributes, Langfuse's blob export): structured either way; other text as is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def count(value: Any) -> int | None:
    """A token count, if `value` is one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def chat_turn(
    request: dict[str, Any],
    message: dict[str, Any],
    model: str | None,
    turn: int,
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
) -> ImportedTurn:
    """A Chat Completions trace: `request` answered by the assistant `message`."""
    answer = {"role": "assistant", "content": message.get("content"), **message}
    response: dict[str, Any] = {
        "id": f"chatcmpl-import-{turn}",
        "object": "chat.completion",
        "model": model or "",
        "choices": [
            {
                "index": 0,
                "message": answer,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
    }
    if input_tokens is not None and output_tokens is not None:
        response["usage"] = {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
    return ImportedTurn(
        "chat", "/v1/chat/completions", model, input_tokens, output_tokens,
        dumps(request), dumps(response), cost_usd(model, input_tokens, output_tokens),
    )  # fmt: skip


def messages_turn(
    request: dict[str, Any], response: dict[str, Any], model: str | None
) -> ImportedTurn:
    """A Messages trace: `request` answered by the `message` `response` (its usage counted)."""
    used = MESSAGES.usage(response)  # input counting cache reads and writes, as when proxied
    answered_by = response.get("model")
    model = answered_by if isinstance(answered_by, str) and answered_by else model
    tokens_in, tokens_out = count(used.input_tokens), count(used.output_tokens)
    return ImportedTurn(
        "messages", "/v1/messages", model, tokens_in, tokens_out,
        dumps(request), dumps(response), cost_usd(model, tokens_in, tokens_out),
    )  # fmt: skip
