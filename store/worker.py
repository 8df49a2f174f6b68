"""Run blocking store work off the event loop, on one thread that owns one connection.

SQLite connections are not meant to be shared across threads, and the proxy's event loop must
never wait on disk. Each `StoreWorker` is a single thread with its own store; callers
`await worker.run(lambda store: store.skills.get(skill_id))` and the function runs there. The
proxy uses one worker for everything but trace rows (written by the trace sink process), so a
slow batch never delays an admin read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from store import open_store
from store.interfaces import Store
from store.url import StoreURL

T = TypeVar("T")


class StoreWorker:
    def __init__(self, url: str | StoreURL, name: str = "db") -> None:
        self._url = url
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"skillproxy-{name}")
        self._store: Store | None = None

    def _call(self, fn: Callable[[Store], T]) -> T:
        if self._store is None:
            self._store = open_store(self._url)
        return fn(self._store)

    async def run(self, fn: Callable[[Store], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def close(self) -> None:
        """Finish queued work, then close the store."""
        self._executor.submit(self._close_store).result()
        self._executor.shutdown(wait=True)

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
