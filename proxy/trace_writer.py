"""A bounded queue of finished exchanges and the single task that commits them in batches.

Logging must never delay or fail a request. The handler hands its record over after the client
has its answer; when the queue is full the configured policy applies (`drop` at once, or
`block` for at most `block_timeout_ms`, then drop), and each drop is counted. One writer task
takes whatever is queued and hands it to the trace sink, a process of its own that builds the
rows and commits them in one transaction (`proxy.trace_sink` says why). A failing store (disk
full, locked, corrupt) is retried with back-off, then the batch is counted as lost; requests
keep flowing all the while.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass

from proxy.config import TracesConfig
from proxy.trace_sink import SinkFailed, TraceSink
from proxy.tracing import TraceRecord

log = logging.getLogger("skillproxy.traces")

RETRY_DELAYS_S = (0.2, 1.0, 3.0)


@dataclass(slots=True)
class TraceStats:
    queued: int = 0
    written: int = 0
    dropped: int = 0
    lost: int = 0
    store_errors: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TraceWriter:
    def __init__(self, sink: TraceSink, config: TracesConfig) -> None:
        self._sink = sink
        self._config = config
        self._queue: asyncio.Queue[TraceRecord] = asyncio.Queue(maxsize=config.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._pending_puts: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self.stats = TraceStats()
        self.pending_ids: set[str] = set()
        """Accepted but not yet committed: feedback may name them before they reach the store."""

    async def submit(self, record: TraceRecord) -> None:
        """Queue a finished exchange; never raises, waits at most `block_timeout_ms`.

        A blocking put runs as its own task and the caller waits on it shielded: the handler
        may be cancelled (its client hung up) without losing a record it already accepted.
        """
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            if self._config.on_full == "block" and self._config.block_timeout_ms > 0:
                task = asyncio.create_task(self._put_within_timeout(record))
                self._pending_puts.add(task)
                task.add_done_callback(self._pending_puts.discard)
                await asyncio.shield(task)
            else:
                self.stats.dropped += 1
            return
        self._accepted(record)

    async def _put_within_timeout(self, record: TraceRecord) -> None:
        try:
            await asyncio.wait_for(self._queue.put(record), self._config.block_timeout_ms / 1000)
        except TimeoutError:
            self.stats.dropped += 1
        else:
            self._accepted(record)

    def _accepted(self, record: TraceRecord) -> None:
        self.pending_ids.add(record.id)
        self.stats.queued += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="skillproxy-trace-writer")

    async def close(self) -> None:
        """Commit everything accepted (including puts still waiting for room), then stop."""
        self._closing.set()
        if self._pending_puts:
            await asyncio.gather(*self._pending_puts)
        await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        interval = self._config.flush_interval_ms / 1000
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() + 1 < self._config.batch_size and not self._closing.is_set():
                with contextlib.suppress(TimeoutError):  # gather more, unless told to stop
                    await asyncio.wait_for(self._closing.wait(), interval)
            batch = self._take_batch(batch)
            try:
                await self._write(batch)
            finally:
                for record in batch:
                    self.pending_ids.discard(record.id)
                    self._queue.task_done()

    def _take_batch(self, batch: list[TraceRecord]) -> list[TraceRecord]:
        while len(batch) < self._config.batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _write(self, batch: list[TraceRecord]) -> None:
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None)):
            try:
                await self._sink.write(batch)
            except SinkFailed as exc:  # the store's failure must not stop the writer
                self.stats.store_errors += 1
                log.error("trace store write failed (attempt %d): %s", attempt + 1, exc)
                if delay is None:
                    self.stats.lost += len(batch)
                    log.error("%d traces lost after %d attempts", len(batch), attempt + 1)
                    return
                await asyncio.sleep(delay)
            else:
                self.stats.written += len(batch)
                self.stats.batches += 1
                return
