"""Run blocking database work off the event loop, on one thread that owns one connection.

SQLite connections are not meant to be shared across threads, and the proxy's event loop must
never wait on disk. Each `DatabaseWorker` is a single thread with its own connection; callers
`await worker.run(fn, *args, **kwargs)` and `fn(db, *args, **kwargs)` runs there. The proxy
uses one worker for the trace writer and one for everything else, so a slow batch never
delays an admin read.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from store.db import open_database

T = TypeVar("T")


class DatabaseWorker:
    def __init__(self, path: str | Path, name: str = "db") -> None:
        self._path = path
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"skillproxy-{name}")
        self._opened: list[sqlite_utils.Database] = []

    def _db(self) -> sqlite_utils.Database:
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            db = open_database(self._path)
            self._local.db = db
            self._opened.append(db)
        return db

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        return fn(self._db(), *args, **kwargs)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args, kwargs)

    def close(self) -> None:
        """Finish queued work, then close the connection."""
        self._executor.submit(self._close_connection).result()
        self._executor.shutdown(wait=True)

    def _close_connection(self) -> None:
        for db in self._opened:
            db.conn.close()
        self._opened.clear()
