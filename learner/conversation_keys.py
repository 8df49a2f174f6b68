"""How a trace is recognised as part of a conversation: its session key and message hashes.

Kept apart from the grouping itself (`learner.episodes`) because these are pure functions of one
exchange: which explicit session it names, and a hash for every prefix of its messages, encoded
so that no two different messages (or sequences of them) can collide; `head_keys` gives the
ones a trace looks up and the ones it leaves. The grouping hashes with
`conversation_hasher(tenant)`, keyed with the client's key fingerprint, so that two tenants'
identical conversations never hash alike; the other head keys name the tenant too. A tenant of
None means the keys grouping wrote before tenants were told apart, which it still reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from hashlib import blake2b
from typing import Any, NamedTuple

from core.formats import Message, WireFormat
from core.sessions import json_object, session_key

__all__ = ["json_object", "session_key"]  # read from here by the grouping and its tests
_CONTENT_HASH = re.compile(r"[0-9a-f]{32}")


class LegacyKeys:
    """A trace's lookups as grouping wrote them before tenants were told apart, hashed only
    when first asked for. Grouping needs them only when the tenant's own keys found nothing
    (a conversation's first turn, or one begun before the upgrade); hashing every prefix a
    second time for every trace cost about a tenth of grouping."""

    __slots__ = ("_encoded", "_ends", "_keys", "_previous")

    def __init__(self, previous: str | None, encoded: list[bytes], ends: list[int]) -> None:
        self._previous, self._encoded, self._ends = previous, encoded, ends
        self._keys: list[str] | None = None

    def keys(self) -> list[str]:
        """Best first, as `HeadKeys.lookups`: the Responses id, then the longest prefix."""
        if self._keys is None:
            keys = [response_key(None, self._previous)] if self._previous else []
            plain, prefixes, done = conversation_hasher(None), [], 0
            for end in self._ends:
                for encoded in self._encoded[done : end + 1]:
                    plain.update(encoded)
                done = end + 1
                prefixes.append(plain.hexdigest())
            keys.extend(reversed(prefixes))
            self._keys, self._encoded = keys, []
        return self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


class HeadKeys(NamedTuple):
    lookups: list[str]  # head keys to try, best first
    legacy: LegacyKeys  # the same, as grouping wrote them before tenants were told apart
    heads: list[str]  # head keys the trace leaves for the turns after it


def head_keys(
    wire: WireFormat,
    request: dict[str, Any],
    response: dict[str, Any] | None,
    tenant: str,
    canonical: dict[str, str],
) -> HeadKeys | None:
    """A trace's head keys (`response` None: it leaves none), or None for a request without
    messages. Only prefixes ending at an assistant message are looked up: heads end with one."""
    asked, full, shared = _normalise(wire, request, response)
    if not asked:
        return None
    lookups: list[str] = []
    previous = request.get("previous_response_id")
    previous = previous if isinstance(previous, str) and previous else None
    if previous:
        lookups.append(response_key(tenant, previous))
    hasher = conversation_hasher(tenant)
    prefixes: list[str] = []
    encoded_all: list[bytes] = []
    ends: list[int] = []
    for position, message in enumerate(asked):
        encoded = encode_message(message, canonical)
        hasher.update(encoded)
        encoded_all.append(encoded)
        if message.role == "assistant":
            prefixes.append(hasher.hexdigest())
            ends.append(position)
    lookups.extend(reversed(prefixes))
    legacy = LegacyKeys(previous, encoded_all, ends)
    heads: list[str] = []
    if response is not None:
        if full and full[-1].role == "assistant":
            rest = full[len(asked) :]
            if not shared:
                hasher, rest = conversation_hasher(tenant), full
            for message in rest:
                hasher.update(encode_message(message, canonical))
            heads.append(hasher.hexdigest())
        if wire.name == "responses" and isinstance(response.get("id"), str):
            heads.append(response_key(tenant, response["id"]))
    return HeadKeys(lookups, legacy, heads)


def _normalise(
    wire: WireFormat, request: dict[str, Any], response: dict[str, Any] | None
) -> tuple[list[Message], list[Message], bool]:
    """Request messages, full conversation, and whether the first starts the second.

    The long request is normalised once: the answer normalised alone is the tail of the full
    conversation, unless a format folded it into the request's last message (a Responses
    function call after an assistant message); only then is the request normalised again.
    """
    if response is None:
        asked = wire.conversation(request, None)
        return asked, asked, True
    full = wire.conversation(request, response)
    answer = wire.conversation({}, response)
    cut = len(full) - len(answer)
    if cut >= 0 and full[cut:] == answer:
        return full[:cut], full, True
    return wire.conversation(request, None), full, False


def response_key(tenant: str | None, response_id: str) -> str:
    """The head key of a Responses id, for `previous_response_id` to find."""
    return f"resp:{response_id}" if tenant is None else f"resp@{tenant}:{response_id}"


def session_head(tenant: str, session: str) -> str:
    """The head key of a tenant's episode for a session it named."""
    return f"session@{tenant}:{session}"


def claim_keys(tenant: str, episode_id: str) -> tuple[str, str]:
    """The marks that `tenant`, and that some tenant, claimed an episode grouped before tenants
    were told apart."""
    return f"claim@{tenant}:{episode_id}", f"claim:{episode_id}"


def is_content_hash(key: str) -> bool:
    """Whether a head key is a conversation's hash, which several episodes may share."""
    return _CONTENT_HASH.fullmatch(key) is not None


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


def conversation_hasher(tenant: str | None) -> blake2b:
    """A message hasher private to `tenant` (a key fingerprint, "" for no key): BLAKE2b keyed
    with it. None gives the plain hash grouping used before tenants were told apart."""
    if tenant is None:
        return blake2b(digest_size=16)
    key = f"tenant:{tenant}".encode()
    if len(key) > 64:  # BLAKE2b's longest key
        key = blake2b(key).digest()
    return blake2b(digest_size=16, key=key)


def prefix_hashes(messages: Sequence[Message], canonical: dict[str, str]) -> list[str]:
    hasher = blake2b(digest_size=16)
    out: list[str] = []
    for message in messages:
        hasher.update(encode_message(message, canonical))
        out.append(hasher.hexdigest())
    return out
