"""A bounded queue of finished exchanges and the single task that commits them in batches.

Logging must never delay or fail a request. The handler hands its record over after the client
has its answer; when the queue is full the configured policy applies (`drop` at once, or
`block` for at most `block_timeout_ms`, then drop), and each drop is counted. One writer task
takes whatever is queued and hands it to the trace sink, a process of its own that builds the
rows and commits them in one transaction (`proxy.trace_sink` says why). A failing store (disk
full, locked, corrupt) is retried with back-off, then what is still not stored is counted as
lost; requests keep flowing all the while. The sink says how much of a failed batch it did
store, so a retry sends only the rest and `lost` counts only traces that are not in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from core.config import TracesConfig
from proxy.trace_sink import SinkFailed, TraceSink
from proxy.tracing import TraceRecord

log = logging.getLogger("skillproxy.traces")

RETRY_DELAYS_S = (0.2, 1.0, 3.0)


@dataclass(slots=True)
class TraceStats:
    """What /healthz reports. `written`: stored; `dropped`: refused at a full queue; `lost`:
    accepted but not stored after every retry; `redacted`: personal data replaced in stored
    bodies; `unstorable`: traces stored with a field left out (their `error` says which);
    `store_reopened`: times the store's file was found deleted or replaced and made afresh."""

    queued: int = 0
    written: int = 0
    dropped: int = 0
    lost: int = 0
    store_errors: int = 0
    batches: int = 0
    redacted: int = 0
    unstorable: int = 0
    store_reopened: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TraceWriter:
    """Accepted records wait in a plain list; the writer takes them in batches.

    An `asyncio.Queue` cost every request a put, a get and a `task_done`, plus a set entry to
    remember what was not yet committed. Here a request costs one `append`; the writer is woken
    only when the list stops being empty. Nothing is indexed for lookups: `pending_skillbook`
    and `pending_session_skillbooks` scan the lists, which is cheap for the one caller that
    asks (feedback naming a trace or a session) and costs the hot path nothing.
    """

    def __init__(self, sink: TraceSink, config: TracesConfig) -> None:
        self._sink = sink
        self._config = config
        self._buffer: list[TraceRecord] = []
        self._in_flight: list[TraceRecord] = []
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending_puts: set[asyncio.Task[None]] = set()
        self.stats = TraceStats()
        self.failing = False
        """The last attempt to hand traces to the sink failed (read by /healthz); cleared by
        the next one that succeeds."""

    async def submit(self, record: TraceRecord) -> None:
        """Queue a finished exchange; never raises, waits at most `block_timeout_ms`.

        A blocking put runs as its own task and the caller waits on it shielded: the handler
        may be cancelled (its client hung up) without losing a record it already accepted.
        """
        if len(self._buffer) < self._config.queue_size:
            self._accept(record)
        elif self._config.on_full == "block" and self._config.block_timeout_ms > 0:
            task = asyncio.create_task(self._put_within_timeout(record))
            self._pending_puts.add(task)
            task.add_done_callback(self._pending_puts.discard)
            await asyncio.shield(task)
        else:
            self.stats.dropped += 1

    @property
    def waiting(self) -> int:
        """Records accepted and not yet committed (the queue's depth, for /metrics)."""
        return len(self._buffer) + len(self._in_flight)

    def pending_skillbook(self, trace_id: str) -> str | None:
        """The skillbook of this trace while it is accepted but not yet committed (feedback may
        name a trace before it is stored); None when it does not wait here."""
        for record in self._pending():
            if record.id == trace_id:
                return record.skillbook
        return None

    def pending_session_skillbooks(self, session_id: str) -> set[str]:
        """The skillbooks of the traces of this session that wait to be committed."""
        return {r.skillbook for r in self._pending() if r.session_id == session_id}

    def _pending(self) -> Iterator[TraceRecord]:
        """Every record accepted and not yet committed (a blocking put still waiting for room
        is not accepted yet); read it whole before the event loop moves on."""
        yield from self._in_flight
        yield from self._buffer

    def _accept(self, record: TraceRecord) -> None:
        self._buffer.append(record)
        self.stats.queued += 1
        if len(self._buffer) == 1:
            self._arrived.set()

    async def _put_within_timeout(self, record: TraceRecord) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.block_timeout_ms / 1000
        while len(self._buffer) >= self._config.queue_size:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), max(deadline - loop.time(), 0))
            if loop.time() >= deadline and len(self._buffer) >= self._config.queue_size:
                self.stats.dropped += 1
                return
        self._accept(record)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="skillproxy-trace-writer")

    async def close(self) -> None:
        """Commit everything accepted (including puts still waiting for room), then stop."""
        self._closing.set()
        if self._pending_puts:
            await asyncio.gather(*self._pending_puts)
        self._arrived.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await task
            except Exception:  # the writer itself broke: say so, and let shutdown go on
                log.exception("trace writer failed; %d traces not written", len(self._buffer))

    async def _run(self) -> None:
        interval = self._config.flush_interval_ms / 1000
        size = self._config.batch_size
        while True:
            if not self._buffer:
                if self._closing.is_set() and not self._pending_puts:
                    return
                self._arrived.clear()
                await self._arrived.wait()  # set by the first record into an empty buffer
                continue
            if len(self._buffer) < size and not self._closing.is_set():
                with contextlib.suppress(TimeoutError):  # gather more, unless told to stop
                    await asyncio.wait_for(self._closing.wait(), interval)
            self._in_flight, self._buffer = self._buffer[:size], self._buffer[size:]
            self._room.set()
            try:
                await self._write(self._in_flight)
            finally:
                self._in_flight = []

    async def _write(self, batch: list[TraceRecord]) -> None:
        """Hand `batch` to the sink; after a failure retry only what it has not dealt with (the
        sink's insert skips an id already stored, so a record in doubt is simply sent again)."""
        pending = batch
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None)):
            lost_before = self._sink.counts["lost"]
            failure: SinkFailed | None = None
            try:
                await self._sink.write(pending)
                done = len(pending)
            except SinkFailed as exc:  # the store's failure must not stop the writer
                failure, done = exc, exc.stored
            given_up = self._sink.counts["lost"] - lost_before  # rows the store refused alone
            self.stats.written += done - given_up
            self.stats.lost += given_up
            self._sync()
            pending = pending[done:]
            self.failing = failure is not None
            if failure is None:
                self.stats.batches += 1
                return
            self.stats.store_errors += 1
            log.error("trace store write failed (attempt %d): %s", attempt + 1, failure)
            if delay is None:
                self.stats.lost += len(pending)
                log.error("%d traces lost after %d attempts", len(pending), attempt + 1)
                return
            await asyncio.sleep(delay)

    def _sync(self) -> None:
        counts = self._sink.counts
        self.stats.redacted = counts["redacted"]
        self.stats.unstorable = counts["marked"]
        self.stats.store_reopened = counts["reopened"]
