"""Feedback the proxy accepted is feedback kept, even while the store cannot take it.

`POST /v1/feedback` validates first (the trace or session must exist). If the write then fails
because the store is unavailable (locked by another process, say), the feedback waits here,
in memory and in order, and the client is told `202 queued`; a background task writes it
once the store serves again, and shutdown writes what is left (or, if the store is still
down, logs how many were lost and for what). The queue is bounded: when it is full the
proxy no longer accepts feedback, and says so with a 503, so nothing it answered 2xx is
dropped for lack of room.

A queued item is written with the time it is written, not the time it was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from functools import partial
from types import TracebackType

from aiohttp import web

from store.errors import StoreUnavailable
from store.interfaces import Store
from store.records import NewFeedback
from store.worker import StoreWorker

log = logging.getLogger("skillproxy.feedback")

QUEUE_LIMIT = 10_000
RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 5.0)
"""Between attempts while the store fails; the last repeats."""
DRAIN_TIMEOUT_S = 5.0
"""How long shutdown keeps trying to write what is queued."""


@dataclass(slots=True)
class FeedbackStats:
    queued: int = 0
    """Waiting now."""
    written_late: int = 0
    lost: int = 0
    """Still queued when shutdown gave up on the store."""
    refused: int = 0
    """Answered 503 because the queue was full."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FeedbackQueue:
    """Use as `async with FeedbackQueue(worker) as queue:` around the app's life."""

    def __init__(
        self,
        worker: StoreWorker,
        *,
        limit: int = QUEUE_LIMIT,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
    ) -> None:
        self._worker = worker
        self._limit = limit
        self._drain_timeout_s = drain_timeout_s
        self._pending: deque[NewFeedback] = deque()
        self._arrived = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stats = FeedbackStats()

    async def add(self, feedback: NewFeedback) -> int | None:
        """Store `feedback`: its sequence number once written, or None when it waits here.

        Raises `StoreUnavailable` only when it cannot be kept (the queue is full)."""
        if not self._pending:  # nothing ahead of it: try the store first
            try:
                return await self._worker.run(partial(_add, feedback))
            except StoreUnavailable as exc:
                log.warning("feedback queued, the store cannot take it now: %s", exc)
        if len(self._pending) >= self._limit:
            self.stats.refused += 1
            problem = self._worker.problem
            raise StoreUnavailable(
                f"{len(self._pending)} feedback already wait for the store, the most this "
                f"proxy keeps; the store: {problem or 'not answering'}",
                retry_after_s=problem.retry_after_s if problem else 5.0,
            )
        self._pending.append(feedback)
        self.stats.queued = len(self._pending)
        self._arrived.set()
        return None

    def start(self) -> None:
        self._task = asyncio.create_task(self._retry(), name="skillproxy-feedback-queue")

    async def close(self) -> None:
        """Let an attempt under way finish (cancelling it could write an item twice), stop
        retrying, then write what waits, trying for `drain_timeout_s` at most."""
        self._closing.set()
        self._arrived.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        deadline = time.monotonic() + self._drain_timeout_s
        attempt = 0
        while self._pending and not await self._write_pending():
            if time.monotonic() + _delay(attempt) > deadline:
                break
            await asyncio.sleep(_delay(attempt))
            attempt += 1
        if self._pending:
            self.stats.lost += len(self._pending)
            log.error(
                "%d feedback lost at shutdown, the store still fails (%s): %s",
                len(self._pending),
                self._worker.problem,
                ", ".join(_target(f) for f in self._pending),
            )
            self._pending.clear()
            self.stats.queued = 0

    async def __aenter__(self) -> FeedbackQueue:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _retry(self) -> None:
        attempt = 0
        while not self._closing.is_set():
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()  # set by `add`, and by `close`
                attempt = 0
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), _delay(attempt))
            if self._closing.is_set():
                return
            attempt = 0 if await self._write_pending() else attempt + 1

    async def _write_pending(self) -> bool:
        """Write queued feedback oldest first until the store fails; True when none is left."""
        while self._pending:
            try:
                await self._worker.run(partial(_add, self._pending[0]))
            except StoreUnavailable:
                return False
            except Exception:  # not the store's state: this one can never be written
                log.exception("queued feedback for %s not written", _target(self._pending[0]))
                self.stats.lost += 1
            else:
                self.stats.written_late += 1
            self._pending.popleft()
            self.stats.queued = len(self._pending)
            if not self._pending:
                log.info("queued feedback written: the store serves again")
        return True


def _add(feedback: NewFeedback, store: Store) -> int:
    return store.feedback.add(feedback)


def _delay(attempt: int) -> float:
    return RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]


def _target(feedback: NewFeedback) -> str:
    return f"trace {feedback.trace_id}" if feedback.trace_id else f"session {feedback.session_id}"


FEEDBACK = web.AppKey("skillproxy_feedback", FeedbackQueue)
"""Where the app keeps its queue (opened in `skillproxy.app`, after the store worker)."""
