"""The read timeout's sweep: who it cancels, and that a cancellation it caused can be told apart."""

from __future__ import annotations

import asyncio
import time

from proxy.stalls import StallWatch


async def _wait_on_provider(stalls: StallWatch, busy: bool) -> str:
    watch = stalls.watch()
    try:
        if busy:
            watch.busy()  # writing to a slow client: not the provider's silence
        await asyncio.sleep(10)
        return "finished"
    except asyncio.CancelledError:
        return "stalled" if watch.absorb() else "cancelled"
    finally:
        stalls.release(watch)


async def test_only_requests_silently_waiting_past_the_timeout_are_stopped() -> None:
    stalls = StallWatch(timeout_s=0.2)
    stalls.start()
    try:
        waiting = asyncio.create_task(_wait_on_provider(stalls, busy=False))
        writing = asyncio.create_task(_wait_on_provider(stalls, busy=True))
        started = time.monotonic()
        assert await waiting == "stalled"
        assert 0.2 <= time.monotonic() - started < 1.0
        assert not writing.done()
        writing.cancel()  # someone else's cancellation is not absorbed
        assert await writing == "cancelled"
    finally:
        await stalls.close()


async def test_a_released_watch_is_never_swept() -> None:
    stalls = StallWatch(timeout_s=60)
    watch = stalls.watch()
    stalls.release(watch)
    stalls.sweep(time.monotonic() + 3600)
    assert not watch.stalled
