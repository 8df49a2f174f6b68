"""Episodes: traces grouped into whole conversations, the unit the learner reflects on.

A trace finds its episode by the first of these that applies:

1. An explicit session key: the `X-Session-Id` header (the trace's `session_id` column), else
   `metadata.session_id` or `metadata.conversation_id` in the request body, else a Responses
   `conversation`, else the session inside Claude Code's `metadata.user_id` (the older
   `user_…_account_…_session_<id>` string or the newer JSON text with a `session_id` key). One
   episode per (skillbook, session key). The OpenAI `user` field is deliberately not a session:
   it names an end user, who has many conversations.
2. A Responses `previous_response_id`: the client sends only the new items, so there is no
   prefix to match; the episode is the one of the trace that returned that response.
3. The message prefix. Agents resend the whole conversation every turn, so a trace continues an
   earlier one when its normalised request messages start with that trace's request plus its
   answer. Every trace's full conversation is stored as a head (a rolling hash over a canonical
   encoding of each message); a new trace hashes its request the same way and takes the episode
   of the longest prefix that is a head. Heads end with the answer, so only prefixes ending at
   an assistant message are looked up.

Otherwise the trace starts an episode. Consequences: a retried or regenerated turn joins the
episode it came from, as does a rewrite of history after the first answer; a conversation that
changes the first user message (or the system prompt) is a new episode; two conversations that
are identical so far (same prompt, same answer) cannot be told apart, and the later one wins the
shared head. The system prompt is part of the hash: `request_json` is the client's own body,
before the skillbook section was added, so it does not change when the skillbook does.

Only 2xx traces of a known format with a readable request join an episode. A failed one that
still points at an episode (by session or prefix) marks its `signal`, as do a 2xx trace that
ended in an error or a client hang-up, and negative feedback on any of its traces or its session.
New turns reopen a finished episode: a session key is unique per skillbook, so a resumed
conversation has nowhere else to go, and `reflected_at` tells which traces are new.

Grouping reads traces in (created_at, id) order behind a cursor. A trace is written when its
response ends but ordered by when its request began, so the cursor stays `settle_s` behind the
clock: a request that runs longer than that lands behind the cursor and is never grouped. Bodies
are parsed before anything is written; the store then writes the batch (episodes, trace links,
heads, cursor) as one unit, which it refuses if another process moved the cursor meanwhile.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from core.formats import FORMATS, Message, WireFormat
from learner.conversation_keys import encode_message, json_object, prefix_hashes, session_key
from store.feedback_labels import NEGATIVE_LABELS
from store.interfaces import Store
from store.records import Episode, EpisodeChange, Feedback, GroupingPlan, GroupingTrace, Trace

__all__ = [
    "DEFAULT_SETTLE_S",
    "NEGATIVE_LABELS",
    "EpisodeConversation",
    "GroupingResult",
    "episode_conversation",
    "group_new_traces",
    "session_key",
]

DEFAULT_SETTLE_S = 600.0
"""How far the cursor stays behind the clock; longer than any single request should run."""

_RESPONSE_KEY = "resp:"  # heads named by a Responses id; content hashes are bare hex


@dataclass(frozen=True, slots=True)
class GroupingResult:
    traces_seen: int = 0
    grouped: int = 0
    new_episodes: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class EpisodeConversation:
    """What the reflector reads about one episode.

    `messages` is the longest conversation in it (the latest on a tie): in a plain chain that is
    the last trace's, which holds every earlier turn; in a session that also carries side
    requests (Claude Code's quick checks share its session id) it is the main conversation, not
    whichever call came last. `threads` has every conversation no later trace extended.
    """

    episode: Episode
    messages: list[Message]
    threads: list[list[Message]]
    trace_ids: list[str]
    skill_ids: list[str]
    feedback: list[Feedback]
    signal: bool


@dataclass(slots=True)
class _Trace:
    id: str
    created_at: float
    skillbook: str
    ok: bool  # 2xx: joins an episode; otherwise it can only mark one
    trouble: bool
    session: str | None
    lookups: list[str]  # head keys to try, best first
    heads: list[str]  # head keys this trace leaves for the turns after it


def group_new_traces(
    store: Store,
    *,
    limit: int = 5000,
    settle_s: float = DEFAULT_SETTLE_S,
    now: float | None = None,
) -> GroupingResult:
    """Group up to `limit` traces past the cursor; call again while `traces_seen == limit`."""
    horizon = (time.time() if now is None else now) - settle_s
    while True:
        cursor = store.episodes.cursor()
        rows = store.episodes.traces_after(cursor, horizon=horizon, limit=limit)
        canonical: dict[str, str] = {}
        traces = [t for row in rows if (t := _read(row, canonical)) is not None]
        plan = _plan(store, traces)
        start = cursor or (float("-inf"), "")
        ends = [start, (rows[-1].created_at, rows[-1].id)] if rows else [start]
        if len(rows) < limit:
            ends.append((horizon, ""))  # everything created before the horizon is seen
        if not store.episodes.commit_grouping(plan, read_at=cursor, to=max(ends)):
            continue  # another grouper committed first; read again from its cursor
        grouped = len(plan.links)
        new = sum(e.new for e in plan.episodes.values())
        return GroupingResult(len(rows), grouped, new, len(rows) - grouped)


def episode_conversation(store: Store, episode_id: str) -> EpisodeConversation:
    episode = store.episodes.get(episode_id)
    traces = store.episodes.traces(episode_id)
    skill_ids: dict[str, None] = {}
    by_response: dict[str, list[Message]] = {}
    conversations: list[list[Message]] = []
    for trace in traces:
        injected = trace.injected_skill_ids
        if isinstance(injected, list):
            skill_ids.update((str(s), None) for s in injected)
        messages = _trace_conversation(trace, by_response)
        if messages:
            conversations.append(messages)
    threads = _threads(conversations)
    return EpisodeConversation(
        episode=episode,
        messages=max(reversed(threads), key=len, default=[]),
        threads=threads,
        trace_ids=[t.id for t in traces],
        skill_ids=list(skill_ids),
        feedback=store.episodes.feedback(episode_id),
        signal=episode.signal,
    )


def _read(row: GroupingTrace, canonical: dict[str, str]) -> _Trace | None:
    """A trace's keys from its bodies (parsed once), or None when it cannot be grouped."""
    trace_id, created_at, skillbook, fmt = row.id, row.created_at, row.skillbook, row.format
    status, error, hung_up, column = row.status, row.error, row.client_disconnected, row.session_id
    req, resp = row.request_json, row.response_json
    wire = FORMATS.get(fmt) if fmt else None
    request = json_object(req)
    if wire is None or request is None:
        return None
    ok = isinstance(status, int) and 200 <= status < 300
    response = json_object(resp) if ok else None
    asked, full, shared = _normalise(wire, request, response)
    if not asked:
        return None
    lookups: list[str] = []
    previous = request.get("previous_response_id")
    if isinstance(previous, str) and previous:
        lookups.append(_RESPONSE_KEY + previous)
    hasher = blake2b(digest_size=16)
    prefixes: list[str] = []
    for message in asked:
        hasher.update(encode_message(message, canonical))
        if message.role == "assistant":
            prefixes.append(hasher.hexdigest())
    lookups.extend(reversed(prefixes))
    heads: list[str] = []
    if response is not None:
        if full and full[-1].role == "assistant":
            rest = full[len(asked) :]
            if not shared:
                hasher, rest = blake2b(digest_size=16), full
            for message in rest:
                hasher.update(encode_message(message, canonical))
            heads.append(hasher.hexdigest())
        if fmt == "responses" and isinstance(response.get("id"), str):
            heads.append(_RESPONSE_KEY + response["id"])
    trouble = (isinstance(status, int) and status >= 400) or error is not None or bool(hung_up)
    session = session_key(column, request)
    return _Trace(trace_id, created_at, skillbook, ok, trouble, session, lookups, heads)


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


def _plan(store: Store, traces: list[_Trace]) -> GroupingPlan:
    """Decide every trace's episode in order, with a few batched reads and no writes."""
    heads = _known_heads(store, traces)
    sessions = _known_sessions(store, traces)
    flagged, flagged_sessions = store.episodes.negatively_rated(
        [t.id for t in traces], {t.session for t in traces if t.session is not None}
    )
    plan = GroupingPlan()
    for trace in traces:
        book = trace.skillbook
        if trace.session is not None:
            episode_id = sessions.get((book, trace.session))
        else:
            episode_id = next((e for k in trace.lookups if (e := heads.get((book, k)))), None)
        if episode_id is None and not trace.ok:
            continue
        if episode_id is None:
            episode_id = f"ep_{int(trace.created_at * 1000):012x}{os.urandom(6).hex()}"
            plan.episodes[episode_id] = EpisodeChange(episode_id, book, trace.session, new=True)
            if trace.session is not None:
                sessions[(book, trace.session)] = episode_id
        episode = plan.episodes.get(episode_id)
        if episode is None:
            episode = plan.episodes[episode_id] = EpisodeChange(episode_id, book, None, new=False)
        if trace.trouble or trace.id in flagged or (book, trace.session) in flagged_sessions:
            episode.signal = True
        if not trace.ok:
            continue
        at = trace.created_at
        episode.first_at = at if episode.first_at is None else min(episode.first_at, at)
        episode.last_at = at if episode.last_at is None else max(episode.last_at, at)
        episode.count += 1
        plan.links.append((episode_id, trace.id))
        for key in trace.heads:
            heads[(book, key)] = episode_id
            plan.heads.append((book, key, episode_id))
    return plan


def _known_heads(store: Store, traces: list[_Trace]) -> dict[tuple[str, str], str]:
    """Stored heads for the keys the batch may need: a trace's keys are read from the store
    only up to the first one an earlier trace of this batch will have left."""
    left: dict[tuple[str, str], int] = {}
    for position, trace in enumerate(traces):
        if trace.ok:
            for key in trace.heads:
                left.setdefault((trace.skillbook, key), position)
    wanted: dict[str, set[str]] = {}
    for position, trace in enumerate(traces):
        if trace.session is not None:
            continue
        for key in trace.lookups:
            if left.get((trace.skillbook, key), position) < position:
                break
            wanted.setdefault(trace.skillbook, set()).add(key)
    found: dict[tuple[str, str], str] = {}
    for book, keys in wanted.items():
        found.update(((book, k), ep) for k, ep in store.episodes.heads(book, keys).items())
    return found


def _known_sessions(store: Store, traces: list[_Trace]) -> dict[tuple[str, str], str]:
    wanted: dict[str, set[str]] = {}
    for trace in traces:
        if trace.session is not None:
            wanted.setdefault(trace.skillbook, set()).add(trace.session)
    found: dict[tuple[str, str], str] = {}
    for book, keys in wanted.items():
        found.update(((book, k), ep) for k, ep in store.episodes.sessions(book, keys).items())
    return found


def _trace_conversation(trace: Trace, by_response: dict[str, list[Message]]) -> list[Message]:
    """A trace's full conversation, with earlier turns put back when it named a previous
    Responses id (the request then holds only the new items)."""
    wire = FORMATS.get(trace.format or "")
    request, response = trace.request_json, trace.response_json
    if wire is None or not isinstance(request, dict):
        return []
    messages = wire.conversation(request, response if isinstance(response, dict) else None)
    earlier = by_response.get(str(request.get("previous_response_id")))
    if earlier is not None:
        own = messages[1:] if messages and messages[0].role == "system" else messages
        messages = earlier + own
    if isinstance(response, dict) and isinstance(response.get("id"), str):
        by_response[response["id"]] = messages
    return messages


def _threads(conversations: list[list[Message]]) -> list[list[Message]]:
    """The conversations that no later one starts with, oldest first."""
    covered: set[str] = set()
    canonical: dict[str, str] = {}
    kept: list[list[Message]] = []
    for messages in reversed(conversations):
        hashes = prefix_hashes(messages, canonical)
        if hashes[-1] in covered:
            continue
        covered.update(hashes)
        kept.append(messages)
    kept.reverse()
    return kept
