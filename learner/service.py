"""Entry points that run the learner: once (CLI, admin, tests) or on a schedule (inside serve).

The scheduled learner runs in a worker thread with its own database connection, so its LLM
calls and SQL never touch the proxy's event loop; the lease makes it safe to also run
`skillproxy learn` elsewhere against the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from core.config import Config
from learner.llm import shared_clients
from learner.runner import Ask, Progress, RunSummary, group_all, run_skillbook
from learner.runner import skillbooks_with_ready_episodes as ready_counts
from store import open_store
from store.records import Waiting

log = logging.getLogger("skillproxy.learner")


def learn_once(
    config: Config,
    *,
    skillbook: str | None = None,
    ask: Ask | None = None,
    progress: Progress | None = None,
    now: float | None = None,
    min_episodes: int = 1,
) -> list[RunSummary]:
    """Group new traces, then run every skillbook with at least `min_episodes` ready."""
    with shared_clients() if ask is None else contextlib.nullcontext():
        store = open_store(config.store.url)
        try:
            store.migrate()
            group_all(store, config, now=now)
            counts = ready_counts(store, config, now=now)
            ready = [n for n, c in counts.items() if c >= min_episodes]
            names = [skillbook] if skillbook else ready
            return [
                run_skillbook(store, config, name, ask=ask, progress=progress, now=now)
                for name in names
            ]
        finally:
            store.close()


def waiting_for(
    config: Config, *, skillbook: str | None = None, now: float | None = None
) -> dict[str, Waiting]:
    """Per skillbook, what a run cannot use yet and when the first of it becomes ready."""
    settings = config.learner
    at = time.time() if now is None else now
    store = open_store(config.store.url)
    try:
        names = [skillbook] if skillbook else [b.name for b in store.skillbooks.list_all()]
        found = {
            name: store.learner.waiting(
                name, settle_s=settings.settle_s, idle_s=settings.episode_idle_s, now=at
            )
            for name in names
        }
    finally:
        store.close()
    return {name: w for name, w in found.items() if w.settling_traces or w.open_episodes}


@contextlib.asynccontextmanager
async def scheduled(config: Config) -> AsyncIterator[None]:
    """Run the learner every `learner.interval_s` while the proxy serves (when enabled)."""
    if not config.learner.enabled:
        yield
        return
    task = asyncio.create_task(_loop(config), name="skillproxy-learner")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _loop(config: Config) -> None:
    settings = config.learner
    while True:
        await asyncio.sleep(settings.interval_s)
        try:
            summaries = await asyncio.to_thread(
                learn_once, config, min_episodes=settings.min_new_episodes
            )
        except Exception:  # a failed run is logged and retried next interval; serving goes on
            log.exception("learner run failed")
            continue
        for summary in summaries:
            if summary.run is not None:
                log.info("learner: %s", summary.as_dict())
