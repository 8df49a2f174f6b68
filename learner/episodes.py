"""Episodes: traces grouped into whole conversations, the unit the learner reflects on.

Every key below belongs to one skillbook and one tenant (the client's API key, as the trace's
`key_fingerprint`): two tenants' conversations never share an episode, even when they are
identical or name the same session id (a client that sends no key is a tenant too). Episodes
grouped before tenants were told apart are still found by their old keys, and claimed by the
first tenant that continues them; any other tenant starts its own. A trace finds its episode by
the first of these that applies:

1. An explicit session key: the `X-Session-Id` header (the trace's `session_id` column), else
   `metadata.session_id` or `metadata.conversation_id` in the request body, else a Responses
   `conversation`, else the session inside Claude Code's `metadata.user_id` (the older
   `user_…_account_…_session_<id>` string or the newer JSON text with a `session_id` key). One
   episode per (skillbook, tenant, session key). The OpenAI `user` field is deliberately not a
   session: it names an end user, who has many conversations. An episode's `session_key` is the
   session for the first tenant that used it (feedback by `session_id` finds it there) and
   empty for any other tenant's.
2. A Responses `previous_response_id`: the client sends only the new items, so there is no
   prefix to match; the episode is the one of the trace that returned that response.
3. The message prefix. Agents resend the whole conversation every turn, so a trace continues an
   earlier one when its normalised request messages start with that trace's request plus its
   answer. Every trace's full conversation is stored as a head (a rolling hash over a canonical
   encoding of each message, keyed with the tenant); a new trace hashes its request the same
   way and takes the episode of the longest prefix that is a head. Heads end with the answer,
   so only prefixes ending at an assistant message are looked up: a turn continues another
   only through that one's reply exactly as it was returned.

Several episodes can leave the same head: identical trials of one task sent at once (pass^k),
or conversations that open alike. The head is then a stack of those episodes, newest on top. A
trace that continues the head joins the top one and pops it, so the next continuation goes to
the next episode waiting at that turn instead of piling onto the same one; the last stays on,
so a retried or regenerated turn (or a rewrite of history after the first answer) joins its own
episode, unless an identical conversation is still waiting there. Trials that differ in any
answer are grouped exactly from that answer on. Where requests and answers are identical
throughout, nothing tells the trials apart: each episode is still one whole conversation of the
right length, but which trial a turn came from is a guess; one `X-Session-Id` per trial groups
them exactly. A conversation that changes the first user message (or the system prompt) is a
new episode. The system prompt is part of the hash: `request_json` is the client's own body,
before the skillbook section was added, so it does not change when the skillbook does.

Only 2xx traces of a known format with a readable request join an episode. A failed one that
still points at an episode (by session or prefix) marks its `signal`, as do a 2xx trace that
ended in an error or a client hang-up, and negative feedback on any of its traces or its session.
New turns reopen a finished episode: a session is one episode per skillbook and tenant, so a
resumed conversation has nowhere else to go, and `reflected_at` tells which traces are new.

Grouping reads traces in (created_at, id) order behind a cursor. A trace is written when its
response ends but ordered by when its request began, so the cursor stays `settle_s` behind the
clock: a request that runs longer than that lands behind the cursor and is never grouped. Bodies
are parsed before anything is written; the store then writes the batch (episodes, trace links,
heads, cursor) as one unit, which it refuses if another process moved the cursor meanwhile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

from core.formats import FORMATS, Message
from learner.conversation_keys import (
    LegacyKeys,
    claim_keys,
    head_keys,
    is_content_hash,
    json_object,
    prefix_hashes,
    session_head,
    session_key,
)
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
    tenant: str  # the key fingerprint, "" without a key
    session: str | None
    lookups: list[str]  # head keys to try, best first
    legacy: LegacyKeys  # the same, as grouping wrote them before tenants were told apart
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
    tenant = row.key_fingerprint or ""
    wire = FORMATS.get(fmt) if fmt else None
    request = json_object(req)
    if wire is None or request is None:
        return None
    ok = isinstance(status, int) and 200 <= status < 300
    response = json_object(resp) if ok else None
    keys = head_keys(wire, request, response, tenant, canonical)
    if keys is None:
        return None
    trouble = (isinstance(status, int) and status >= 400) or error is not None or bool(hung_up)
    session = session_key(column, request)
    lookups, legacy, heads = keys
    return _Trace(
        trace_id, created_at, skillbook, ok, trouble, tenant, session, lookups, legacy, heads
    )


def _plan(store: Store, traces: list[_Trace]) -> GroupingPlan:
    """Decide every trace's episode in order, with a few batched reads and no writes."""
    plan = GroupingPlan()
    heads = _Heads(store, plan)
    heads.prefetch(traces)
    sessions = _known_sessions(store, traces)
    flagged, flagged_sessions = store.episodes.negatively_rated(
        [t.id for t in traces], {t.session for t in traces if t.session is not None}
    )
    for trace in traces:
        book, session = trace.skillbook, trace.session
        episode_id, continued, claims = _find(heads, sessions, trace)
        if episode_id is None and not trace.ok:
            continue
        if episode_id is None:
            episode_id = f"ep_{int(trace.created_at * 1000):012x}{os.urandom(6).hex()}"
            heads.fresh.add(episode_id)
            named = session if session is not None and (book, session) not in sessions else None
            plan.episodes[episode_id] = EpisodeChange(episode_id, book, named, new=True)
            if named is not None:
                sessions[(book, named)] = episode_id
        episode = plan.episodes.get(episode_id)
        if episode is None:
            episode = plan.episodes[episode_id] = EpisodeChange(episode_id, book, None, new=False)
        if trace.trouble or trace.id in flagged or (book, session) in flagged_sessions:
            episode.signal = True
        if not trace.ok:
            continue
        at = trace.created_at
        episode.first_at = at if episode.first_at is None else min(episode.first_at, at)
        episode.last_at = at if episode.last_at is None else max(episode.last_at, at)
        episode.count += 1
        plan.links.append((episode_id, trace.id))
        if session is not None:
            heads.put(book, session_head(trace.tenant, session), episode_id)
        if claims or (episode.new and episode.session_key is not None):
            for key in claim_keys(trace.tenant, episode_id):
                heads.put(book, key, episode_id)
        if continued is not None:
            heads.pop(book, continued, episode_id)
        for key in trace.heads:
            heads.push(book, key, episode_id)
    return plan


def _find(
    heads: _Heads, sessions: dict[tuple[str, str], str], trace: _Trace
) -> tuple[str | None, str | None, bool]:
    """The trace's episode, the head it continues, and whether it claims the episode: one found
    by a key without the tenant (a session's, or a head stored before tenants were told apart)
    that no other tenant claimed."""
    book, session = trace.skillbook, trace.session
    if session is not None:
        found, continued = heads.get(book, session_head(trace.tenant, session)), None
        old = sessions.get((book, session)) if found is None else None
    else:
        continued, found = heads.find(book, trace.lookups)
        old = heads.find(book, trace.legacy)[1] if found is None else None
    if old is not None and heads.claimable(book, trace.tenant, old):
        return old, None, True
    return found, continued, False


class _Heads:
    """The batch's view of the heads table: stored keys read once (mostly in two batched reads
    up front, the rest on first use) with the batch's own writes on top, recorded in the plan.

    A content hash is a stack of the episodes that left it, newest on top: the stored head is
    the top, and the key `f"{hash}<{episode}"` names the episode below `episode`."""

    def __init__(self, store: Store, plan: GroupingPlan) -> None:
        self._store, self._plan = store, plan
        self._known: dict[tuple[str, str], str | None] = {}  # None: not stored
        self.fresh: set[str] = set()  # episodes this batch makes: no stored key names them

    def get(self, book: str, key: str) -> str | None:
        if (book, key) not in self._known:
            self._read(book, [key])
        return self._known[(book, key)]

    def find(self, book: str, keys: Iterable[str]) -> tuple[str | None, str | None]:
        """The first of `keys` that is a head, and its episode."""
        return next(((k, e) for k in keys if (e := self.get(book, k))), (None, None))

    def put(self, book: str, key: str, episode_id: str) -> None:
        if self._known.get((book, key)) != episode_id:
            self._known[(book, key)] = episode_id
            self._plan.heads.append((book, key, episode_id))

    def claimable(self, book: str, tenant: str, episode_id: str) -> bool:
        """Whether `tenant` may join an episode grouped before tenants were told apart: it
        claimed the episode, or no tenant has yet."""
        mine, anyone = claim_keys(tenant, episode_id)
        return self.get(book, mine) is not None or self.get(book, anyone) is None

    def push(self, book: str, key: str, episode_id: str) -> None:
        top = self.get(book, key)
        if top is not None and top != episode_id and is_content_hash(key):
            self.put(book, f"{key}<{episode_id}", top)
        self.put(book, key, episode_id)

    def pop(self, book: str, key: str, episode_id: str) -> None:
        """`episode_id`, the top of `key`, was continued: the one below it (if any) is next."""
        if not is_content_hash(key):
            return
        below = (book, f"{key}<{episode_id}")
        under = self._known.get(below) if episode_id in self.fresh else self.get(*below)
        if under is not None:
            self.put(book, key, under)

    def prefetch(self, traces: list[_Trace]) -> None:
        """Read what the batch will ask: sessions' keys; lookups up to the first key an earlier
        trace of the batch leaves; the heads each trace leaves (to stack on); then the key
        below each stored head a lookup found (to pop), or the old keys of a trace whose
        lookups found none."""
        left: dict[tuple[str, str], int] = {}
        for position, trace in enumerate(traces):
            if trace.ok:
                for key in trace.heads:
                    left.setdefault((trace.skillbook, key), position)
        wanted: dict[str, set[str]] = {}
        for position, trace in enumerate(traces):
            keys = wanted.setdefault(trace.skillbook, set())
            if trace.ok:
                keys.update(trace.heads)
            if trace.session is not None:
                keys.add(session_head(trace.tenant, trace.session))
                continue
            for key in trace.lookups:
                if left.get((trace.skillbook, key), position) < position:
                    break
                keys.add(key)
        for book, keys in wanted.items():
            self._read(book, keys)
        more: dict[str, set[str]] = {}
        for position, trace in enumerate(traces):
            book = trace.skillbook
            if trace.session is not None:
                continue
            known = [self._known.get((book, k), "") for k in trace.lookups]  # "": not read
            stored = (k for k, e in zip(trace.lookups, known, strict=True) if e)
            if (found := next(stored, None)) is not None and is_content_hash(found):
                more.setdefault(book, set()).add(f"{found}<{self._known[(book, found)]}")
            elif all(e is None for e in known) and not any(
                left.get((book, k), position) < position for k in trace.lookups
            ):  # no head of this tenant, stored or left by an earlier trace: the old keys then
                more.setdefault(book, set()).update(trace.legacy)
        for book, keys in more.items():
            self._read(book, keys)

    def _read(self, book: str, keys: Iterable[str]) -> None:
        keys = [k for k in keys if (book, k) not in self._known]
        found = self._store.episodes.heads(book, keys) if keys else {}
        self._known.update(((book, k), found.get(k)) for k in keys)


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
