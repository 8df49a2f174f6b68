"""The SQLite backend: the embedded default, one file in WAL mode (see `db.py`)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import sqlite_utils

from store.errors import StoreMoved
from store.sqlite.canaries import SQLiteCanaries
from store.sqlite.db import BUSY_TIMEOUT_MS, open_database, set_lock_wait, unavailable
from store.sqlite.episodes import SQLiteEpisodes
from store.sqlite.feedback import SQLiteFeedback
from store.sqlite.learner import SQLiteLearner
from store.sqlite.migrations import migrate
from store.sqlite.skillbooks import SQLiteSkillbooks
from store.sqlite.skills import SQLiteSkills
from store.sqlite.traces import SQLiteTraces
from store.sqlite.transfer import SQLiteTransfer

FileIdentity = tuple[int, int]
"""(device, inode): while a connection holds its file open, no other file takes that inode."""


class SQLiteStore:
    """Every repository over one connection; one per thread (see `store.worker`).

    Opening a file that is not a database, or a damaged one, raises `StoreCorrupt` with a
    message that names the file and says what to do, instead of SQLite's bare error."""

    def __init__(self, path: str | Path) -> None:
        try:
            db = open_database(path)
            self._bind(db, str(path))
        except sqlite3.Error as exc:
            problem = unavailable(exc, str(path))
            if problem is None:
                raise
            raise problem from exc

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
        self._file = path if path in ("", ":memory:") else os.path.abspath(path)
        self._identity = None if self._file in ("", ":memory:") else file_identity(self._file)
        self._lock_wait_s = BUSY_TIMEOUT_MS / 1000
        self.traces = SQLiteTraces(db)
        self.skillbooks = SQLiteSkillbooks(db)
        self.skills = SQLiteSkills(db, self.skillbooks)
        self.transfer = SQLiteTransfer(db, self.skillbooks, self.skills)
        self.episodes = SQLiteEpisodes(db)
        self.feedback = SQLiteFeedback(db)
        self.learner = SQLiteLearner(db, self.skills, self.episodes)
        self.canaries = SQLiteCanaries(db, self.skillbooks, self.skills)
        self.skills.canaries = self.canaries

    def migrate(self) -> list[str]:
        """Start-up is nobody's request: migrations wait for locks as long as any process
        does, whatever a caller's `serving` asked for, and fail as `StoreUnavailable`."""
        waited = self._lock_wait_s
        self._wait_for_locks(BUSY_TIMEOUT_MS / 1000)
        try:
            with self._translated():
                return migrate(self._db)
        finally:
            self._wait_for_locks(waited)

    @contextmanager
    def serving(self, *, lock_wait_s: float) -> Iterator[None]:
        self._wait_for_locks(lock_wait_s)
        with self._translated():
            self._still_the_opened_file()
            yield

    def check(self) -> None:
        """The file is the one opened, its schema and each table's first page read, and the
        write lock taken and given back: a few page reads, no write."""
        self._still_the_opened_file()
        conn = self._db.conn
        with self._translated():
            tables = [
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            for name in tables:
                conn.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchall()
            if not conn.in_transaction:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")

    def close(self) -> None:
        self._db.conn.close()

    def _wait_for_locks(self, seconds: float) -> None:
        if seconds != self._lock_wait_s:
            set_lock_wait(self._db, seconds)
            self._lock_wait_s = seconds

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """SQLite's failures that mean "cannot serve now" raised as `StoreUnavailable`, with
        the connection left out of any transaction the failure interrupted."""
        try:
            yield
        except sqlite3.Error as exc:
            if self._db.conn.in_transaction:
                with suppress(sqlite3.Error):
                    self._db.conn.execute("ROLLBACK")
            problem = unavailable(exc, self.path)
            if problem is None:
                raise
            raise problem from exc

    def moved(self) -> str | None:
        """ "deleted" or "replaced" when the path no longer names the file this store opened;
        None while it does, and always for `:memory:`."""
        if self._identity is None:
            return None
        now = file_identity(self._file)
        if now == self._identity:
            return None
        return "deleted" if now is None else "replaced"

    def _still_the_opened_file(self) -> None:
        """SQLite keeps writing to a file deleted or replaced under it, where every write is
        lost: refuse instead, until a restart opens whatever is at the path now."""
        how = self.moved()
        if how is None:
            return
        raise StoreMoved(
            f"the database {self.path} was {how} while "
            "skillproxy had it open; restart skillproxy to open what is there now "
            "(it creates a fresh database if there is none)",
            retry_after_s=30.0,
        )


def file_identity(path: str) -> FileIdentity | None:
    """The file at `path` now; None when there is none (or it cannot be looked at)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)
