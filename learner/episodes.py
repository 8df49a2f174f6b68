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
are parsed before the write lock is taken; the writes (episodes, trace links, heads, cursor) are
one transaction, which first checks that no other process moved the cursor meanwhile.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

import sqlite_utils

from core.formats import FORMATS, Message, WireFormat
from learner.conversation_keys import encode_message, json_object, prefix_hashes, session_key
from store.errors import NotFound
from store.traces import get_trace
from store.transaction import write_transaction

__all__ = [
    "DEFAULT_SETTLE_S",
    "NEGATIVE_LABELS",
    "EpisodeConversation",
    "GroupingResult",
    "episode_conversation",
    "episode_signal",
    "episode_traces",
    "group_new_traces",
    "ready_episodes",
    "session_key",
]

DEFAULT_SETTLE_S = 600.0
"""How far the cursor stays behind the clock; longer than any single request should run."""

NEGATIVE_LABELS = frozenset(
    {
        "bad", "negative", "thumbs_down", "thumbsdown", "down", "dislike", "wrong",
        "incorrect", "fail", "failed", "failure", "unhelpful", "not_helpful", "harmful",
        "poor", "rejected",
    }
)  # fmt: skip
"""Feedback labels that mark an episode, compared lower-cased with '-' and ' ' read as '_'."""

_PARAMS = 500  # values per `IN (...)`, well under SQLite's variable limit
_RESPONSE_KEY = "resp:"  # heads named by a Responses id; content hashes are bare hex
_NEGATIVE = (
    "(f.score < 0.5 OR lower(replace(replace(trim(f.label), '-', '_'), ' ', '_')) IN ("
    + ", ".join(f"'{label}'" for label in sorted(NEGATIVE_LABELS))
    + "))"
)
_SIGNAL = f"""(e.signal = 1
    OR EXISTS (SELECT 1 FROM traces t JOIN feedback f ON f.trace_id = t.id
               WHERE t.episode_id = e.id AND {_NEGATIVE})
    OR (e.session_key IS NOT NULL AND EXISTS (SELECT 1 FROM feedback f
        WHERE f.skillbook = e.skillbook AND f.session_id = e.session_key AND {_NEGATIVE})))"""
_EPISODE_COLUMNS = (
    "id", "skillbook", "session_key", "first_at", "last_at", "trace_count", "status",
    "reflected_at", "error",
)  # fmt: skip
_BATCH = """SELECT id, created_at, skillbook, format, status, error, client_disconnected,
    session_id, request_json, response_json FROM traces
    WHERE created_at >= ? AND created_at < ? AND (created_at > ? OR id > ?)
    ORDER BY created_at, id LIMIT ?"""  # shaped so the created_at index serves the order

Cursor = tuple[float, str]


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

    episode: dict[str, Any]
    messages: list[Message]
    threads: list[list[Message]]
    trace_ids: list[str]
    skill_ids: list[str]
    feedback: list[dict[str, Any]]
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


@dataclass(slots=True)
class _Episode:
    id: str
    skillbook: str
    session: str | None
    new: bool
    first_at: float | None = None
    last_at: float | None = None
    count: int = 0
    signal: bool = False


@dataclass(slots=True)
class _Plan:
    episodes: dict[str, _Episode] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)  # (episode id, trace id)
    heads: list[tuple[str, str, str]] = field(default_factory=list)  # (skillbook, key, episode)


def group_new_traces(
    db: sqlite_utils.Database,
    *,
    limit: int = 5000,
    settle_s: float = DEFAULT_SETTLE_S,
    now: float | None = None,
) -> GroupingResult:
    """Group up to `limit` traces past the cursor; call again while `traces_seen == limit`."""
    horizon = (time.time() if now is None else now) - settle_s
    while True:
        cursor = _cursor(db)
        start = cursor or (float("-inf"), "")
        rows = db.conn.execute(_BATCH, (start[0], horizon, start[0], start[1], limit)).fetchall()
        canonical: dict[str, str] = {}
        traces = [t for row in rows if (t := _read(row, canonical)) is not None]
        plan = _plan(db, traces)
        ends = [start, (rows[-1][1], rows[-1][0])] if rows else [start]
        if len(rows) < limit:
            ends.append((horizon, ""))  # everything created before the horizon is seen
        with write_transaction(db):
            if _cursor(db) != cursor:
                continue  # another grouper committed first; read again from its cursor
            _apply(db, plan, max(ends))
        grouped = len(plan.links)
        new = sum(e.new for e in plan.episodes.values())
        return GroupingResult(len(rows), grouped, new, len(rows) - grouped)


def ready_episodes(
    db: sqlite_utils.Database,
    skillbook: str,
    *,
    idle_s: float,
    now: float | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Open episodes idle for `idle_s`, oldest first, with their live `signal`.

    Idle is counted up to the grouping cursor, not the clock, so an episode whose next turn
    has not been grouped yet (see `settle_s`) never looks finished.
    """
    cursor = _cursor(db)
    if cursor is None:
        return []
    before = min(time.time() if now is None else now, cursor[0]) - idle_s
    columns = ", ".join(f"e.{c}" for c in _EPISODE_COLUMNS)
    rows = db.conn.execute(
        f"SELECT {columns}, {_SIGNAL} FROM episodes e WHERE e.skillbook = ? "
        "AND e.status = 'open' AND e.last_at < ? ORDER BY e.last_at LIMIT ?",
        (skillbook, before, limit),
    ).fetchall()
    return [_episode_dict(row) for row in rows]


def episode_signal(db: sqlite_utils.Database, episode_id: str) -> bool:
    """True when something went wrong: an error, a hang-up or negative feedback, even late."""
    row = db.conn.execute(f"SELECT {_SIGNAL} FROM episodes e WHERE e.id = ?", (episode_id,))
    found = row.fetchone()
    if found is None:
        raise NotFound(f"no episode {episode_id!r}")
    return bool(found[0])


def episode_traces(db: sqlite_utils.Database, episode_id: str) -> list[dict[str, Any]]:
    """Full trace rows (the `get_trace` shape), oldest first."""
    ids = db.conn.execute(
        "SELECT id FROM traces WHERE episode_id = ? ORDER BY created_at, id", (episode_id,)
    ).fetchall()
    return [trace for (trace_id,) in ids if (trace := get_trace(db, trace_id)) is not None]


def episode_conversation(db: sqlite_utils.Database, episode_id: str) -> EpisodeConversation:
    columns = ", ".join(f"e.{c}" for c in _EPISODE_COLUMNS)
    row = db.conn.execute(
        f"SELECT {columns}, {_SIGNAL} FROM episodes e WHERE e.id = ?", (episode_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no episode {episode_id!r}")
    episode = _episode_dict(row)
    traces = episode_traces(db, episode_id)
    skill_ids: dict[str, None] = {}
    by_response: dict[str, list[Message]] = {}
    conversations: list[list[Message]] = []
    for trace in traces:
        injected = trace.get("injected_skill_ids")
        if isinstance(injected, list):
            skill_ids.update((str(s), None) for s in injected)
        messages = _trace_conversation(trace, by_response)
        if messages:
            conversations.append(messages)
    threads = _threads(conversations)
    feedback = db.conn.execute(
        "SELECT * FROM feedback WHERE trace_id IN (SELECT id FROM traces WHERE episode_id = ?) "
        "OR (skillbook = ? AND session_id = ?) ORDER BY created_at, seq",
        (episode_id, episode["skillbook"], episode["session_key"]),
    )
    names = [d[0] for d in feedback.description]
    return EpisodeConversation(
        episode=episode,
        messages=max(reversed(threads), key=len, default=[]),
        threads=threads,
        trace_ids=[t["id"] for t in traces],
        skill_ids=list(skill_ids),
        feedback=[dict(zip(names, r, strict=True)) for r in feedback.fetchall()],
        signal=episode["signal"],
    )


def _read(row: tuple[Any, ...], canonical: dict[str, str]) -> _Trace | None:
    """A trace's keys from its bodies (parsed once), or None when it cannot be grouped."""
    trace_id, created_at, skillbook, fmt, status, error, hung_up, column, req, resp = row
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


def _plan(db: sqlite_utils.Database, traces: list[_Trace]) -> _Plan:
    """Decide every trace's episode in order, with a few batched reads and no writes."""
    heads = _known_heads(db, traces)
    sessions = _known_sessions(db, traces)
    flagged, flagged_sessions = _negative_feedback(db, traces)
    plan = _Plan()
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
            plan.episodes[episode_id] = _Episode(episode_id, book, trace.session, new=True)
            if trace.session is not None:
                sessions[(book, trace.session)] = episode_id
        episode = plan.episodes.get(episode_id)
        if episode is None:
            episode = plan.episodes[episode_id] = _Episode(episode_id, book, None, new=False)
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


def _known_heads(db: sqlite_utils.Database, traces: list[_Trace]) -> dict[tuple[str, str], str]:
    """Stored heads for the keys the batch may need: a trace's keys are read from the store
    only up to the first one an earlier trace of this batch will have left."""
    left: dict[tuple[str, str], int] = {}
    for position, trace in enumerate(traces):
        if trace.ok:
            for key in trace.heads:
                left.setdefault((trace.skillbook, key), position)
    wanted: dict[str, set[str]] = defaultdict(set)
    for position, trace in enumerate(traces):
        if trace.session is not None:
            continue
        for key in trace.lookups:
            if left.get((trace.skillbook, key), position) < position:
                break
            wanted[trace.skillbook].add(key)
    found: dict[tuple[str, str], str] = {}
    for book, keys in wanted.items():
        sql = "SELECT hash, episode_id FROM conversation_heads WHERE skillbook = ? AND hash IN"
        found.update(((book, key), ep) for key, ep in _select_in(db, sql, keys, book))
    return found


def _known_sessions(db: sqlite_utils.Database, traces: list[_Trace]) -> dict[tuple[str, str], str]:
    wanted: dict[str, set[str]] = defaultdict(set)
    for trace in traces:
        if trace.session is not None:
            wanted[trace.skillbook].add(trace.session)
    found: dict[tuple[str, str], str] = {}
    for book, keys in wanted.items():
        sql = "SELECT session_key, id FROM episodes WHERE skillbook = ? AND session_key IN"
        found.update(((book, key), ep) for key, ep in _select_in(db, sql, keys, book))
    return found


def _negative_feedback(
    db: sqlite_utils.Database, traces: list[_Trace]
) -> tuple[set[str], set[tuple[str, str]]]:
    """Trace ids and (skillbook, session) pairs of the batch that already have bad feedback."""
    sql = f"SELECT f.trace_id FROM feedback f WHERE {_NEGATIVE} AND f.trace_id IN"
    ids = {trace_id for (trace_id,) in _select_in(db, sql, [t.id for t in traces])}
    sql = f"SELECT f.skillbook, f.session_id FROM feedback f WHERE {_NEGATIVE} AND f.session_id IN"
    keys = {t.session for t in traces if t.session is not None}
    return ids, {(book, key) for book, key in _select_in(db, sql, keys)}


def _select_in(
    db: sqlite_utils.Database, sql: str, keys: Iterable[str], *first: Any
) -> Iterator[tuple[Any, ...]]:
    """Rows of `sql`, which ends in `IN`, for all `keys`, a bounded number at a time."""
    keys = list(keys)
    for start in range(0, len(keys), _PARAMS):
        chunk = keys[start : start + _PARAMS]
        yield from db.conn.execute(f"{sql} ({', '.join('?' * len(chunk))})", (*first, *chunk))


def _apply(db: sqlite_utils.Database, plan: _Plan, cursor: Cursor) -> None:
    """The batch's writes; the caller holds the transaction. Episodes first: heads refer to them."""
    episodes = plan.episodes.values()
    db.conn.executemany(
        "INSERT INTO episodes (id, skillbook, session_key, first_at, last_at, trace_count, "
        "signal) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (e.id, e.skillbook, e.session, e.first_at, e.last_at, e.count, int(e.signal))
            for e in episodes
            if e.new
        ],
    )
    db.conn.executemany(
        "UPDATE episodes SET first_at = min(first_at, coalesce(?, first_at)), "
        "last_at = max(last_at, coalesce(?, last_at)), trace_count = trace_count + ?, "
        "signal = max(signal, ?), status = CASE WHEN ? > 0 THEN 'open' ELSE status END "
        "WHERE id = ?",
        [
            (e.first_at, e.last_at, e.count, int(e.signal), e.count, e.id)
            for e in episodes
            if not e.new
        ],
    )
    db.conn.executemany("UPDATE traces SET episode_id = ? WHERE id = ?", plan.links)
    db.conn.executemany(
        "INSERT OR REPLACE INTO conversation_heads (skillbook, hash, episode_id) VALUES (?, ?, ?)",
        plan.heads,
    )
    db.conn.execute(
        "INSERT INTO grouping_cursor (id, created_at, trace_id) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, "
        "trace_id = excluded.trace_id",
        cursor,
    )


def _cursor(db: sqlite_utils.Database) -> Cursor | None:
    row = db.conn.execute("SELECT created_at, trace_id FROM grouping_cursor WHERE id = 1")
    found = row.fetchone()
    return (found[0], found[1]) if found else None


def _trace_conversation(
    trace: dict[str, Any], by_response: dict[str, list[Message]]
) -> list[Message]:
    """A trace's full conversation, with earlier turns put back when it named a previous
    Responses id (the request then holds only the new items)."""
    wire = FORMATS.get(trace.get("format") or "")
    request, response = trace.get("request_json"), trace.get("response_json")
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


def _episode_dict(row: Sequence[Any]) -> dict[str, Any]:
    episode = dict(zip(_EPISODE_COLUMNS, row[:-1], strict=True))
    episode["signal"] = bool(row[-1])
    return episode
