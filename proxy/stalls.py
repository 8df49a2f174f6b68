"""Giving up on a provider that went silent, with one timer for every request in flight.

`upstream.read_timeout_s` is the longest silence allowed from the provider: before its answer
starts, between two chunks of a stream, or while a buffered answer arrives. aiohttp's own
`sock_read` timeout does this by re-arming a timer on every chunk it receives (a new
`TimerHandle`, a heap push, a cancellation), which cost each proxied request about 23,000
instructions (callgrind over 1,000 requests: 1.4% of a whole exchange, client and provider
included). Here a request registers once and notes when it starts waiting on the provider
again; one sweep, every quarter of the timeout (at most every second), cancels the requests
silent for longer. A stall is noticed between `read_timeout_s` and that plus one sweep period.
While the proxy writes to its own client the watch is paused: a slow client is not a silent
provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

MAX_SWEEP_PERIOD_S = 1.0


class Watch:
    """One request waiting on the provider; `since` is None while it is not waiting."""

    __slots__ = ("since", "stalled", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.since: float | None = time.monotonic()
        self.stalled = False

    def waiting(self) -> None:
        """From now on the request waits on the provider: the silence is counted from here."""
        self.since = time.monotonic()

    def busy(self) -> None:
        """The request is not waiting on the provider (it writes to the client): no stall."""
        self.since = None

    def absorb(self) -> bool:
        """After a `CancelledError`: True if this watch caused it, and then it is undone, so
        the caller can answer with a timeout instead of being cancelled."""
        if not self.stalled:
            return False
        self.stalled = False
        self.task.uncancel()
        return True


class StallWatch:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._period = min(MAX_SWEEP_PERIOD_S, timeout_s / 4)
        self._watches: set[Watch] = set()
        self._task: asyncio.Task[None] | None = None

    def watch(self) -> Watch:
        """Start watching the current task; pair with `release` in a `finally`."""
        task = asyncio.current_task()
        assert task is not None, "watch() is called from a request handler's task"
        watch = Watch(task)
        self._watches.add(watch)
        return watch

    def release(self, watch: Watch) -> None:
        self._watches.discard(watch)

    def sweep(self, now: float) -> None:
        """Cancel every watched request silent since before `now - timeout_s`."""
        limit = now - self.timeout_s
        for watch in self._watches:
            since = watch.since
            if since is not None and since < limit and not watch.stalled:
                watch.stalled = True
                watch.task.cancel()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="skillproxy-stall-watch")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            self.sweep(time.monotonic())
