"""Which conversation a request belongs to, from the request alone: what the proxy can know
while it decides what to inject, before any grouping has run.

`session_key` is the conversation id a client named: the `X-Session-Id` header, else the
body's `metadata.session_id` / `metadata.conversation_id`, a Responses `conversation`, or the
session Claude Code writes into `metadata.user_id`. The learner's grouping reads it too
(`learner.conversation_keys` re-exports it). `assignment_key` adds a fallback for clients that
name none: the conversation's first user message, with the client's key fingerprint, which
stays the same on every turn of a conversation (agents resend the whole history), so a
conversation keeps its canary arm from its first turn to its last. A request with neither (no
session, no user text) has no key: it gets every canary's control arm.
"""

from __future__ import annotations

import re
from typing import Any

from core import jsonio
from core.formats.base import as_list, text_of

_CLAUDE_SESSION = re.compile(r"session_([0-9A-Za-z-]+)")
_USER_TEXT = frozenset({"text", "input_text"})


def session_key(session_id: str | None, request: dict[str, Any]) -> str | None:
    """The conversation id a client named, if any (see the module docstring for the order)."""
    if session_id:
        return session_id
    metadata = request.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    for name in ("session_id", "conversation_id"):
        value = metadata.get(name)
        if isinstance(value, str) and value:
            return value
    conversation = request.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if isinstance(conversation, str) and conversation:
        return conversation
    user_id = metadata.get("user_id")
    if not isinstance(user_id, str):
        return None
    if user_id.startswith("{"):
        parsed = json_object(user_id)
        value = parsed.get("session_id") if parsed else None
        return value if isinstance(value, str) and value else None
    match = _CLAUDE_SESSION.search(user_id)
    return match.group(1) if match else None


def first_user_text(request: dict[str, Any]) -> str:
    """The text of the first user message of a Chat, Messages or Responses body ("" if none)."""
    items = request.get("messages")
    if items is None:
        given = request.get("input")
        if isinstance(given, str):
            return given
        items = given
    for item in as_list(items):
        if isinstance(item, dict) and item.get("role") == "user":
            text = text_of(item.get("content"), _USER_TEXT)
            if text:
                return text
    return ""


def assignment_key(
    session_id: str | None, request: dict[str, Any], tenant: str | None
) -> str | None:
    """What a canary hashes to choose a request's arm; None when nothing identifies it."""
    named = session_key(session_id, request)
    if named:
        return f"s\0{named}"
    first = first_user_text(request)
    if first:
        return f"c\0{tenant or ''}\0{first}"
    return None


def json_object(text: Any) -> dict[str, Any] | None:
    """A stored body as an object; None for absent, non-JSON or size-capped bodies. Parsed
    with orjson: grouping reads every trace's body, and the standard library's parse was a
    tenth of its time."""
    if not isinstance(text, str):
        return None
    try:
        value = jsonio.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("skillproxy_omitted"):
        return None
    return value
