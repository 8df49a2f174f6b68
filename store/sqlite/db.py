"""Opening a database the way every part of skillproxy needs it.

WAL lets the proxy's single trace writer, the admin API's readers and other proxy processes
sharing the file work at once; `synchronous=NORMAL` is safe under WAL and saves an fsync per
commit; a busy timeout turns brief lock contention between processes into a short wait.

Which of SQLite's failures mean "the store cannot serve now" rather than a bug is decided here
(`unavailable`): a lock another process holds past the wait, a damaged file or one that is not a
database, a full disk, an I/O error. Above `store/` nothing knows SQLite, so the store raises
them as `store.errors.StoreUnavailable` (`StoreCorrupt` for a damaged file), each a single line
that names the file and says what to do.

A new database gets 16 KiB pages instead of SQLite's 4 KiB. The store is mostly a log of
~1.5 KB trace rows, and much of the cost of writing one is per page: each page is written to the
WAL, then copied back at a checkpoint. `python bench/page_size.py` puts a trace row at about 9 µs
of CPU with 16 KiB pages against 11-13 µs with 4 KiB. A database created before keeps its page
size (SQLite fixes it when the file is made).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from store.errors import StoreCorrupt, StoreUnavailable

BUSY_TIMEOUT_MS = 5000
PAGE_SIZE = 16384

_LOCKED = {sqlite3.SQLITE_BUSY}
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_TROUBLE = {
    sqlite3.SQLITE_IOERR: "an I/O error",
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_CANTOPEN: "the file cannot be opened",
    sqlite3.SQLITE_READONLY: "the file cannot be written",
    sqlite3.SQLITE_PROTOCOL: "a locking protocol error",
    sqlite3.SQLITE_NOMEM: "out of memory",
    sqlite3.SQLITE_PERM: "permission denied",
}


def open_database(path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) the database at `path`; `:memory:` gives a private one."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before WAL: only a new file takes it
        conn.execute("PRAGMA journal_mode = WAL")  # reads the header: a damaged file fails here
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return sqlite_utils.Database(conn, execute_plugins=False)


def unavailable(exc: BaseException, path: str) -> StoreUnavailable | None:
    """What `exc`, raised by SQLite on the database at `path`, means for callers: a
    `StoreUnavailable` (or `StoreCorrupt`) when the store cannot serve now, None for anything
    else (a bug, a constraint the code should have checked), which keeps its traceback."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary is None and isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        primary = sqlite3.SQLITE_BUSY
    if primary in _LOCKED:
        return StoreUnavailable(
            f"the database {path} is locked by another process ({exc}); try again shortly",
            retry_after_s=2.0,
        )
    if primary in _DAMAGED:
        return corrupt(path, str(exc))
    if primary in _TROUBLE:
        return StoreUnavailable(
            f"the database {path} cannot be used now: {_TROUBLE[primary]} ({exc})",
            retry_after_s=10.0,
        )
    return None


def corrupt(path: str, detail: str) -> StoreCorrupt:
    return StoreCorrupt(
        f"the database {path} is damaged or is not a skillproxy database ({detail}): "
        "restore it from a backup, or move it aside and skillproxy creates a fresh one"
    )


def set_lock_wait(db: sqlite_utils.Database, seconds: float) -> None:
    """How long this connection waits for another connection's lock before SQLITE_BUSY."""
    db.conn.execute(f"PRAGMA busy_timeout = {max(0, round(seconds * 1000))}")
