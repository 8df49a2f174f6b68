"""The proxy's background watch over running canaries: verdicts become decisions, off the
request path.

Every `interval_s` it reads a mark from the store (the newest feedback and canary seqs, the
latest change of canary rules); when it moved (at most once every `MAX_GAP_S`, or 20 intervals
if shorter), or `full_every_s` passed, it rebuilds running canaries' reports on the database
thread (`core.canary_report`): when only feedback moved, just those of the skillbooks that got
feedback; a report reads only the traces and feedback new since its last look
(`store.sqlite.canary_tally`), so a look at 200,000 traces takes that thread about a tenth of a
second, not the seconds a full re-read took (bench/canary_watch_cost.py). It applies what the
rules say: promote, withdraw, or record the verdict (`notify`), each into the skill's history
with the figures of that moment (`CanaryRepository.decide`). A decision changes what is
injected, so this process's skillbook cache is refreshed at once; other processes see it on
their next poll. Several processes sharing a store may watch at once: a decision applies only
to a canary still running, inside the write transaction, so the first one wins and the others
do nothing. If the store fails, the watch logs it and tries again on the next tick; requests
never wait on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import TracebackType

from core.canary_report import build_report
from proxy.skillbook_cache import SkillbookCache
from store.interfaces import Store
from store.records import as_json
from store.worker import StoreWorker

log = logging.getLogger("skillproxy.canaries")
ACTOR = "canary"
"""Who the history says took an automatic decision."""
FULL_EVERY_S = 600.0
"""Re-read figures this often even when no feedback came: traffic alone moves the counts."""
MAX_GAP_S = 5.0
"""The longest wait between new feedback and the reports it moves."""


def check_canaries(store: Store, books: set[str] | None = None) -> list[str]:
    """Apply the rules to every running canary once (of `books` only, if given); what was
    done, as `skill: action`."""
    done: list[str] = []
    canaries = store.canaries
    for canary in canaries.running():
        if books is not None and canary.skillbook not in books:
            continue
        report = build_report(
            canary,
            canaries.sessions(canary.seq),
            canaries.rules(canary.skillbook),
            canaries.beside(canary),
        )
        action = report.decision
        if action not in ("promote", "withdraw", "notify"):
            continue
        detail = as_json(report)
        if canaries.decide(canary.seq, action, report.verdict, actor=ACTOR, detail=detail):
            done.append(f"{canary.skill_id}: {action} ({report.verdict})")
    return done


class CanaryWatch:
    def __init__(
        self,
        worker: StoreWorker,
        cache: SkillbookCache,
        *,
        interval_s: float,
        full_every_s: float = FULL_EVERY_S,
    ) -> None:
        self._worker = worker
        self._cache = cache
        self._interval_s = interval_s
        self._full_every_s = full_every_s
        self._gap_s = min(MAX_GAP_S, 20 * interval_s)
        self._mark: tuple[int, int, float] | None = None
        self._checked_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CanaryWatch:
        self._task = asyncio.create_task(self._poll(), name="skillproxy-canary-watch")
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def tick(self) -> list[str]:
        """One look: re-check when feedback or canaries moved, or the full period passed."""
        since = time.monotonic() - self._checked_at
        if since < self._gap_s:
            return []
        mark = await self._worker.run(lambda store: store.canaries.feedback_mark())
        if mark == self._mark and since < self._full_every_s:
            return []
        last = self._mark
        if last is not None and last[1:] == mark[1:] and since < self._full_every_s:
            done = await self._worker.run(  # only feedback moved: its skillbooks' canaries
                lambda store: check_canaries(
                    store, store.canaries.books_with_feedback_after(last[0])
                )
            )
        else:
            done = await self._worker.run(check_canaries)
        self._mark, self._checked_at = mark, time.monotonic()
        if done:
            log.info("canary decisions: %s", "; ".join(done))
            await self._cache.refresh()
        return done

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.tick()
            except Exception as exc:  # the store or a report failed: try again next tick
                log.error("canary check failed: %s", exc)
