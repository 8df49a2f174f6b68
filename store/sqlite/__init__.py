"""The SQLite backend: the embedded default, one file in WAL mode (see `db.py`)."""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from store.sqlite.db import open_database
from store.sqlite.episodes import SQLiteEpisodes
from store.sqlite.learner import SQLiteFeedback, SQLiteLearner
from store.sqlite.migrations import migrate
from store.sqlite.skillbooks import SQLiteSkillbooks
from store.sqlite.skills import SQLiteSkills
from store.sqlite.traces import SQLiteTraces
from store.sqlite.transfer import SQLiteTransfer


class SQLiteStore:
    """Every repository over one connection; one per thread (see `store.worker`)."""

    def __init__(self, path: str | Path) -> None:
        self._bind(open_database(path), str(path))

    @classmethod
    def on(cls, db: sqlite_utils.Database) -> SQLiteStore:
        """Repositories over a connection the caller opened (and closes)."""
        store = cls.__new__(cls)
        store._bind(db, db.conn.execute("PRAGMA database_list").fetchone()[2] or ":memory:")
        return store

    def _bind(self, db: sqlite_utils.Database, path: str) -> None:
        self.url = f"sqlite:///{path}"
        self.path = path
        self._db = db
        self.traces = SQLiteTraces(db)
        self.skillbooks = SQLiteSkillbooks(db)
        self.skills = SQLiteSkills(db, self.skillbooks)
        self.transfer = SQLiteTransfer(db, self.skillbooks, self.skills)
        self.episodes = SQLiteEpisodes(db)
        self.feedback = SQLiteFeedback(db)
        self.learner = SQLiteLearner(db, self.skills)

    def migrate(self) -> list[str]:
        return migrate(self._db)

    def close(self) -> None:
        self._db.conn.close()
