"""Opening a database the way every part of skillproxy needs it.

WAL lets the proxy's single trace writer, the admin API's readers and other proxy processes
sharing the file work at once; `synchronous=NORMAL` is safe under WAL and saves an fsync per
commit; a busy timeout turns brief lock contention between processes into a short wait.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT_MS = 5000


def open_database(path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) the database at `path`; `:memory:` gives a private one."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return sqlite_utils.Database(conn, execute_plugins=False)
