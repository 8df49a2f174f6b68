"""Feedback clients post about a trace or a session: kept as given, read back with the trace."""

from __future__ import annotations

import time

import sqlite_utils

from store.records import NewFeedback
from store.sqlite.transaction import write_transaction


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
