"""Opening a database the way every part of skillproxy needs it.

WAL lets the proxy's single trace writer, the admin API's readers and other proxy processes
sharing the file work at once; `synchronous=NORMAL` is safe under WAL and saves an fsync per
commit; a busy timeout turns brief lock contention between processes into a short wait.

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

BUSY_TIMEOUT_MS = 5000
PAGE_SIZE = 16384


def open_database(path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) the database at `path`; `:memory:` gives a private one."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before WAL: only a new file takes it
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return sqlite_utils.Database(conn, execute_plugins=False)
