"""Feedback clients post about a trace or a session: kept as given, read back with the trace."""

from __future__ import annotations

import time

import sqlite_utils

from store.records import Feedback, NewFeedback
from store.sqlite.transaction import write_transaction

# Feedback on the trace itself, and on its session within the trace's skillbook: a session id
# is the client's, and another skillbook's session of the same name is another conversation.
# Its session is the one its `X-Session-Id` named or, once grouped, its episode's (which may
# come from the request's metadata): the same feedback the learner reads for that episode.
_FOR_TRACE = """
    SELECT seq, trace_id, session_id, skillbook, score, label, comment, created_at
    FROM feedback WHERE trace_id = ?1
    UNION
    SELECT f.seq, f.trace_id, f.session_id, f.skillbook, f.score, f.label, f.comment, f.created_at
    FROM traces t JOIN feedback f ON f.session_id = t.session_id AND f.skillbook = t.skillbook
    WHERE t.id = ?1
    UNION
    SELECT f.seq, f.trace_id, f.session_id, f.skillbook, f.score, f.label, f.comment, f.created_at
    FROM traces t JOIN episodes e ON e.id = t.episode_id
    JOIN feedback f ON f.session_id = e.session_key AND f.skillbook = e.skillbook
    WHERE t.id = ?1
    ORDER BY created_at, seq
"""


class SQLiteFeedback:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def add(self, feedback: NewFeedback) -> int:
        with write_transaction(self._db):
            cursor = self._db.execute(
                "INSERT INTO feedback (trace_id, session_id, skillbook, score, label, comment, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    feedback.trace_id, feedback.session_id, feedback.skillbook, feedback.score,
                    feedback.label, feedback.comment, time.time(),
                ],
            )  # fmt: skip
        return int(cursor.lastrowid or 0)

    def for_trace(self, trace_id: str) -> list[Feedback]:
        return [Feedback(*row) for row in self._db.conn.execute(_FOR_TRACE, (trace_id,))]
