"""How a trace is recognised as part of a conversation: its session key and message hashes.

Kept apart from the grouping itself (`learner.episodes`) because these are pure functions of one
request: which explicit session it names, and a hash for every prefix of its messages, encoded
so that no two different messages (or sequences of them) can collide.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

from core.formats import Message

_CLAUDE_SESSION = re.compile(r"session_([0-9A-Za-z-]+)")


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


def encode_message(message: Message, canonical: dict[str, str]) -> bytes:
    """Length-prefixed fields, so no two different messages (or sequences) encode alike.

    Tool arguments are compared as JSON values: clients that parse them and serialise them
    back (LangChain does) change the spacing, not the call. Call ids are left out. Every turn
    resends every earlier call, so `canonical` keeps the arguments already rewritten.
    """
    role, content, calls = message.role, message.content, message.tool_calls
    call_id = message.tool_call_id or ""
    text = f"{len(role)}:{role}{len(content)}:{content}{len(call_id)}:{call_id}{len(calls)}:"
    for call in calls:
        arguments = canonical.get(call.arguments)
        if arguments is None:
            arguments = canonical[call.arguments] = canonical_json(call.arguments)
        text += f"{len(call.name)}:{call.name}{len(arguments)}:{arguments}"
    return text.encode()


def canonical_json(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prefix_hashes(messages: Sequence[Message], canonical: dict[str, str]) -> list[str]:
    hasher = blake2b(digest_size=16)
    out: list[str] = []
    for message in messages:
        hasher.update(encode_message(message, canonical))
        out.append(hasher.hexdigest())
    return out


def json_object(text: Any) -> dict[str, Any] | None:
    """A stored body as an object; None for absent, non-JSON or size-capped bodies."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("skillproxy_omitted"):
        return None
    return value
