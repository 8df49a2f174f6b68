"""Episodes in SQLite: the tables behind grouping traces into conversations.

The rules (which trace continues which conversation) are the learner's, in
`learner/episodes.py`; this module reads what those rules need in a few batched queries and
writes a batch's outcome in one transaction that first checks no other process moved the
grouping cursor meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlite_utils

from store.columns import PRICED_COLUMNS
from store.errors import NotFound
from store.feedback_labels import NEGATIVE_LABELS, NEGATIVE_SCORE_BELOW
from store.records import Cursor, Episode, Feedback, GroupingPlan, GroupingTrace, Trace
from store.sqlite.traces import decode_trace
from store.sqlite.transaction import write_transaction

_PARAMS = 500  # values per `IN (...)`, well under SQLite's variable limit
_NEGATIVE = (
    f"(f.score < {NEGATIVE_SCORE_BELOW} "
    "OR lower(replace(replace(trim(f.label), '-', '_'), ' ', '_')) IN ("
    + ", ".join(f"'{label}'" for label in sorted(NEGATIVE_LABELS))
    + "))"
)
_SIGNAL = f"""(e.signal = 1
    OR EXISTS (SELECT 1 FROM traces t JOIN feedback f ON f.trace_id = t.id
               WHERE t.episode_id = e.id AND {_NEGATIVE})
    OR (e.session_key IS NOT NULL AND EXISTS (SELECT 1 FROM feedback f
        WHERE f.skillbook = e.skillbook AND f.session_id = e.session_key AND {_NEGATIVE})))"""
EPISODE_SELECT = (
    "SELECT e.id, e.skillbook, e.session_key, e.first_at, e.last_at, e.trace_count, e.status, "
    f"e.reflected_at, e.error, {_SIGNAL}, e.attempts FROM episodes e"
)
"""An episode row as `episode_of` reads it; the learner's listings select with it too."""
_BATCH = """SELECT id, created_at, skillbook, format, status, error, client_disconnected,
    session_id, request_json, response_json, key_fingerprint FROM traces
    WHERE created_at >= ? AND created_at < ? AND (created_at > ? OR id > ?)
    ORDER BY created_at, id LIMIT ?"""  # shaped so the created_at index serves the order
_FEEDBACK = (
    "SELECT seq, trace_id, session_id, skillbook, score, label, comment, created_at FROM feedback"
)


class SQLiteEpisodes:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def cursor(self) -> Cursor | None:
        row = self._db.conn.execute("SELECT created_at, trace_id FROM grouping_cursor WHERE id = 1")
        found = row.fetchone()
        return (found[0], found[1]) if found else None

    def traces_after(
        self, cursor: Cursor | None, *, horizon: float, limit: int
    ) -> list[GroupingTrace]:
        start = cursor or (float("-inf"), "")
        rows = self._db.conn.execute(_BATCH, (start[0], horizon, start[0], start[1], limit))
        return [
            GroupingTrace(tid, at, book, fmt, status, error, bool(hung_up), session, req, resp, key)
            for tid, at, book, fmt, status, error, hung_up, session, req, resp, key in rows
        ]

    def heads(self, skillbook: str, keys: Iterable[str]) -> dict[str, str]:
        sql = "SELECT hash, episode_id FROM conversation_heads WHERE skillbook = ? AND hash IN"
        return dict(self._select_in(sql, keys, skillbook))

    def sessions(self, skillbook: str, keys: Iterable[str]) -> dict[str, str]:
        sql = "SELECT session_key, id FROM episodes WHERE skillbook = ? AND session_key IN"
        return dict(self._select_in(sql, keys, skillbook))

    def negatively_rated(
        self, trace_ids: Iterable[str], session_keys: Iterable[str]
    ) -> tuple[set[str], set[tuple[str, str]]]:
        sql = f"SELECT f.trace_id FROM feedback f WHERE {_NEGATIVE} AND f.trace_id IN"
        ids = {trace_id for (trace_id,) in self._select_in(sql, trace_ids)}
        sql = (
            f"SELECT f.skillbook, f.session_id FROM feedback f WHERE {_NEGATIVE} "
            "AND f.session_id IN"
        )
        pairs = {(book, key) for book, key in self._select_in(sql, session_keys)}
        return ids, pairs

    def commit_grouping(self, plan: GroupingPlan, *, read_at: Cursor | None, to: Cursor) -> bool:
        with write_transaction(self._db):
            if self.cursor() != read_at:
                return False
            self._apply(plan, to)
        return True

    def ready(
        self, skillbook: str, *, idle_s: float, now: float | None = None, limit: int = 100
    ) -> list[Episode]:
        cursor = self.cursor()
        if cursor is None:
            return []
        before = min(time.time() if now is None else now, cursor[0]) - idle_s
        rows = self._db.conn.execute(
            f"{EPISODE_SELECT} WHERE e.skillbook = ? AND e.status = 'open' AND e.last_at < ? "
            "ORDER BY e.last_at LIMIT ?",
            (skillbook, before, limit),
        ).fetchall()
        return [episode_of(row) for row in rows]

    def get(self, episode_id: str) -> Episode:
        row = self._db.conn.execute(f"{EPISODE_SELECT} WHERE e.id = ?", (episode_id,)).fetchone()
        if row is None:
            raise NotFound(f"no episode {episode_id!r}")
        return episode_of(row)

    def signal(self, episode_id: str) -> bool:
        found = self._db.conn.execute(
            f"SELECT {_SIGNAL} FROM episodes e WHERE e.id = ?", (episode_id,)
        )
        row = found.fetchone()
        if row is None:
            raise NotFound(f"no episode {episode_id!r}")
        return bool(row[0])

    def traces(self, episode_id: str) -> list[Trace]:
        rows = self._db.conn.execute(
            f"SELECT {', '.join(PRICED_COLUMNS)} FROM traces WHERE episode_id = ? "
            "ORDER BY created_at, id",
            (episode_id,),
        )
        return [decode_trace(PRICED_COLUMNS, row) for row in rows]

    def feedback(self, episode_id: str) -> list[Feedback]:
        episode = self.get(episode_id)
        rows = self._db.conn.execute(
            f"{_FEEDBACK} WHERE trace_id IN (SELECT id FROM traces WHERE episode_id = ?) "
            "OR (skillbook = ? AND session_id = ?) ORDER BY created_at, seq",
            (episode_id, episode.skillbook, episode.session_key),
        )
        return [Feedback(*row) for row in rows]

    def _select_in(self, sql: str, keys: Iterable[str], *first: Any) -> Iterator[tuple[Any, ...]]:
        """Rows of `sql`, which ends in `IN`, for all `keys`, a bounded number at a time."""
        keys = list(keys)
        for start in range(0, len(keys), _PARAMS):
            chunk = keys[start : start + _PARAMS]
            yield from self._db.conn.execute(
                f"{sql} ({', '.join('?' * len(chunk))})", (*first, *chunk)
            )

    def _apply(self, plan: GroupingPlan, cursor: Cursor) -> None:
        """The batch's writes, inside the caller's transaction. Episodes first: heads refer to
        them."""
        conn = self._db.conn
        episodes = plan.episodes.values()
        conn.executemany(
            "INSERT INTO episodes (id, skillbook, session_key, first_at, last_at, trace_count, "
            "signal) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (e.id, e.skillbook, e.session_key, e.first_at, e.last_at, e.count, int(e.signal))
                for e in episodes
                if e.new
            ],
        )
        conn.executemany(
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
        conn.executemany("UPDATE traces SET episode_id = ? WHERE id = ?", plan.links)
        conn.executemany(
            "INSERT OR REPLACE INTO conversation_heads (skillbook, hash, episode_id) "
            "VALUES (?, ?, ?)",
            plan.heads,
        )
        conn.execute(
            "INSERT INTO grouping_cursor (id, created_at, trace_id) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, "
            "trace_id = excluded.trace_id",
            cursor,
        )


def episode_of(row: Sequence[Any]) -> Episode:
    id_, book, session, first, last, count, status, reflected, error, signal, attempts = row
    return Episode(
        id_, book, session, first, last, count, status, reflected, error, bool(signal), attempts
    )
