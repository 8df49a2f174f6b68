"""Run blocking store work off the event loop, on one thread that owns one connection.

SQLite connections are not meant to be shared across threads, and the proxy's event loop must
never wait on disk. Each `StoreWorker` is a single thread with its own store; callers
`await worker.run(lambda store: store.skills.get(skill_id))` and the function runs there. The
proxy uses one worker for everything but trace rows (written by the trace sink process), so a
slow batch never delays an admin read.

When the store cannot serve (another process holds its lock, the file is damaged or gone),
`run` raises `store.errors.StoreUnavailable`, whatever the engine's own exception was: the
store translates it (`Store.serving`). Its callers answer people, so a call waits at most
`LOCK_WAIT_S` for a lock, and once the store is known to be failing only
`TROUBLED_LOCK_WAIT_S`: requests queued on this one thread would otherwise each wait the full
time in turn. A cheap probe (`Store.check`), run by `health()` at most once per
`PROBE_EVERY_S` and before calls while the store is failing, says when it serves again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from store import open_store
from store.errors import StoreUnavailable
from store.interfaces import Store
from store.url import StoreURL

T = TypeVar("T")

LOCK_WAIT_S = 2.0
"""Longer than the trace sink's largest batch or a learner's unit of work holds the lock,
shorter than an HTTP client's patience (other processes keep SQLite's 5 s)."""
TROUBLED_LOCK_WAIT_S = 0.1
PROBE_EVERY_S = 1.0
PROBE_LOCK_WAIT_S = 0.5
PROBE_TIMEOUT_S = 3.0
"""How long `health()` waits for a probe queued behind other work on the thread."""


class StoreWorker:
    def __init__(
        self, url: str | StoreURL, name: str = "db", *, lock_wait_s: float = LOCK_WAIT_S
    ) -> None:
        self._url = url
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"skillproxy-{name}")
        self._store: Store | None = None
        self._lock_wait_s = lock_wait_s
        self._problem: StoreUnavailable | None = None
        self._checked_at = -float("inf")
        self._probing: asyncio.Future[StoreUnavailable | None] | None = None

    @property
    def problem(self) -> StoreUnavailable | None:
        """Why the store last failed, until a probe finds it serving again; None while fine."""
        return self._problem

    async def run(self, fn: Callable[[Store], T]) -> T:
        """`fn(store)` on the thread; raises `StoreUnavailable` if the store cannot serve."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    async def health(self) -> StoreUnavailable | None:
        """None while the store serves, else why not. A failed call shows at once; otherwise
        the answer is a probe at most `PROBE_EVERY_S` old, shared by concurrent callers."""
        if time.monotonic() - self._checked_at < PROBE_EVERY_S:
            return self._problem
        if self._probing is None:
            loop = asyncio.get_running_loop()
            self._probing = loop.run_in_executor(self._executor, self._probe)
            self._probing.add_done_callback(self._probed)
        try:
            return await asyncio.wait_for(asyncio.shield(self._probing), PROBE_TIMEOUT_S)
        except TimeoutError:
            return StoreUnavailable(
                f"the store did not answer a health probe within {PROBE_TIMEOUT_S:g} s "
                "(busy with long work, or stuck)"
            )

    def _probed(self, future: asyncio.Future[StoreUnavailable | None]) -> None:
        self._probing = None
        if not future.cancelled():
            future.exception()  # retrieved: a failing probe is reported by its waiters

    def close(self) -> None:
        """Finish queued work, then close the store."""
        self._executor.submit(self._close_store).result()
        self._executor.shutdown(wait=True)

    # On the worker thread:

    def _open(self) -> Store:
        if self._store is None:
            try:
                self._store = open_store(self._url)
            except StoreUnavailable as exc:
                self._problem = exc
                raise
        return self._store

    def _call(self, fn: Callable[[Store], T]) -> T:
        store = self._open()
        if self._problem is not None and time.monotonic() - self._checked_at >= PROBE_EVERY_S:
            self._check(store)
        wait = self._lock_wait_s if self._problem is None else TROUBLED_LOCK_WAIT_S
        try:
            with store.serving(lock_wait_s=wait):
                return fn(store)
        except StoreUnavailable as exc:
            self._problem = exc
            raise

    def _probe(self) -> StoreUnavailable | None:
        try:
            store = self._open()
        except StoreUnavailable as exc:
            self._checked_at = time.monotonic()
            return exc
        return self._check(store)

    def _check(self, store: Store) -> StoreUnavailable | None:
        wait = PROBE_LOCK_WAIT_S if self._problem is None else TROUBLED_LOCK_WAIT_S
        try:
            with store.serving(lock_wait_s=min(wait, self._lock_wait_s)):
                store.check()
        except StoreUnavailable as exc:
            self._problem = exc
        else:
            self._problem = None
        self._checked_at = time.monotonic()
        return self._problem

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
