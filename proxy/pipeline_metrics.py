"""The trace pipeline, the feedback queue, the store and the learner, read at scrape time.

These figures are already counted where they happen (`TraceStats`, `FeedbackStats`, the
learner's runs in the store), so a collector reads them when Prometheus asks and the hot path
pays nothing for them. The learner may run in another process (`skillproxy learn`), so its
figures come from the store: `LearnerFigures.refresh` runs one aggregate query on the store
worker's thread (never on the event loop) before a scrape is rendered, at most once every
`REFRESH_EVERY_S` however many scrapers ask. While the store fails a scrape shows the last
figures read and counts the failure (`skillproxy_store_errors_total{source="metrics"}`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import replace

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from proxy.feedback_queue import FeedbackQueue
from proxy.metrics import LabelCap, ProxyMetrics
from proxy.trace_writer import TraceWriter
from store.interfaces import Store
from store.records import LearnerTotals
from store.worker import StoreWorker

log = logging.getLogger("skillproxy.metrics")

RUNNING = "running"
"""A run's status until it ends (the table's default). Counted in a gauge, never in
`skillproxy_learner_runs_total`: a counter must not go down when the run ends."""

REFRESH_EVERY_S = 1.0
REFRESH_TIMEOUT_S = 2.0
"""A scrape waits this long for the learner's figures, then shows the last ones read."""

_TRACES = (
    ("queued", "Traces accepted into the write queue."),
    ("written", "Traces committed to the store."),
    ("dropped", "Traces refused at a full queue (traces.on_full)."),
    ("lost", "Traces accepted but not stored after every retry."),
    ("redacted", "Personal data replaced in stored bodies ([privacy])."),
    ("unstorable", "Traces stored with a field left out (their error says which)."),
    ("batches", "Batches of traces committed, each in one transaction."),
)
_LEARNER = (
    ("episodes", "Episodes the learner took up."),
    ("reflections", "Episodes reflected on."),
    ("failures", "Episodes whose reflection failed."),
    ("proposals", "Skills the learner proposed."),
    ("llm_calls", "Calls to the learner's model."),
)


class LearnerFigures:
    """The learner's runs added up, as last read from the store."""

    def __init__(self, skillbooks: LabelCap) -> None:
        self._skillbooks = skillbooks
        self._totals: list[LearnerTotals] = []
        self._cost: dict[str, float] = {}
        self._read_at = -float("inf")
        self.failures = 0

    async def refresh(self, store: StoreWorker) -> None:
        """Read the totals again, unless that was done within `REFRESH_EVERY_S`."""
        if time.monotonic() - self._read_at < REFRESH_EVERY_S:
            return
        self._read_at = time.monotonic()
        try:
            totals = await asyncio.wait_for(store.run(_totals), REFRESH_TIMEOUT_S)
        except Exception as exc:  # locked, damaged, a bug: the scrape answers all the same
            self.failures += 1
            log.warning("metrics: the learner's figures could not be read: %r", exc)
            return
        # capped here, on the loop's thread, where the requests' labels are capped too
        self._totals = [replace(row, skillbook=self._skillbooks(row.skillbook)) for row in totals]
        self._cost = _never_down(self._cost, _cost_by_skillbook(self._totals))

    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "skillproxy_learner_runs",
            "Learner runs ended, by how (runs under way: skillproxy_learner_runs_running).",
            labels=("skillbook", "status"),
        )
        counts: dict[str, dict[str, int]] = {name: {} for name, _ in _LEARNER}
        tokens: dict[tuple[str, str], int] = {}
        by_status: dict[tuple[str, str], int] = {}
        running: dict[str, int] = {}
        for row in self._totals:
            skillbook = row.skillbook
            if row.status == RUNNING:
                running[skillbook] = running.get(skillbook, 0) + row.runs
            else:
                key = (skillbook, row.status)
                by_status[key] = by_status.get(key, 0) + row.runs
            for name, _ in _LEARNER:
                counts[name][skillbook] = counts[name].get(skillbook, 0) + getattr(row, name)
            for direction, value in (("input", row.input_tokens), ("output", row.output_tokens)):
                tokens[skillbook, direction] = tokens.get((skillbook, direction), 0) + value
        for labels, value in by_status.items():
            runs.add_metric(labels, value)
        yield runs
        now = GaugeMetricFamily(
            "skillproxy_learner_runs_running",
            "Learner runs started and not yet ended.",
            labels=("skillbook",),
        )
        for skillbook, value in running.items():
            now.add_metric((skillbook,), value)
        yield now
        for name, doc in _LEARNER:
            family = CounterMetricFamily(f"skillproxy_learner_{name}", doc, labels=("skillbook",))
            for skillbook, value in counts[name].items():
                family.add_metric((skillbook,), value)
            yield family
        family = CounterMetricFamily(
            "skillproxy_learner_tokens",
            "Tokens the learner's model read (input) and wrote (output).",
            labels=("skillbook", "direction"),
        )
        for labels, value in tokens.items():
            family.add_metric(labels, value)
        yield family
        family = CounterMetricFamily(
            "skillproxy_learner_cost_usd",
            "What the learner's model calls cost, in US dollars (from the price table).",
            labels=("skillbook",),
        )
        for skillbook, usd in self._cost.items():
            family.add_metric((skillbook,), usd)
        yield family


ROUNDING_USD = 1e-5
"""How far the cost may seem to fall while nothing was lost: the store rounds each group of
runs (skillbook, status) to a millionth, so a run moving from "running" to "done" can take
a millionth off the sum. A fall of more than this is real (the store was made afresh)."""


def _cost_by_skillbook(totals: list[LearnerTotals]) -> dict[str, float]:
    cost: dict[str, float] = {}
    for row in totals:
        cost[row.skillbook] = cost.get(row.skillbook, 0.0) + row.cost_usd
    return cost


def _never_down(shown: dict[str, float], read: dict[str, float]) -> dict[str, float]:
    """The cost counter as read, except where it fell by no more than the rounding."""
    return {
        skillbook: shown[skillbook]
        if skillbook in shown and usd < shown[skillbook] <= usd + ROUNDING_USD
        else usd
        for skillbook, usd in read.items()
    }


def _totals(store: Store) -> list[LearnerTotals]:
    return store.learner.totals()


class PipelineCollector:
    """Traces, feedback and the store as they stand, plus the metrics' own failures."""

    def __init__(
        self,
        writer: TraceWriter,
        store: StoreWorker,
        feedback: FeedbackQueue | None,
        learner: LearnerFigures,
        metrics: ProxyMetrics,
    ) -> None:
        self._writer = writer
        self._store = store
        self._feedback = feedback
        self._learner = learner
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        stats = self._writer.stats
        for name, doc in _TRACES:
            yield CounterMetricFamily(f"skillproxy_traces_{name}", doc, value=getattr(stats, name))
        yield GaugeMetricFamily(
            "skillproxy_traces_waiting",
            "Traces accepted and not yet committed.",
            value=self._writer.waiting,
        )
        yield GaugeMetricFamily(
            "skillproxy_trace_writer_failing",
            "1 while the last attempt to hand traces to the store failed.",
            value=int(self._writer.failing),
        )
        yield CounterMetricFamily(
            "skillproxy_store_reopened",
            "Times the store's file was found deleted or replaced and made afresh.",
            value=stats.store_reopened,
        )
        errors = CounterMetricFamily(
            "skillproxy_store_errors",
            "Failed store operations: trace batches (source=traces, retried) and reads of "
            "the learner's figures for a scrape (source=metrics).",
            labels=("source",),
        )
        errors.add_metric(("traces",), stats.store_errors)
        errors.add_metric(("metrics",), self._learner.failures)
        yield errors
        yield GaugeMetricFamily(
            "skillproxy_store_up",
            "1 while the store serves (as /healthz sees it), 0 while it fails.",
            value=int(self._store.problem is None),
        )
        yield CounterMetricFamily(
            "skillproxy_metrics_errors",
            "Requests the metrics could not count (a bug; the log says which).",
            value=self._metrics.failures,
        )
        if self._feedback is not None:
            feedback = self._feedback.stats
            yield GaugeMetricFamily(
                "skillproxy_feedback_waiting",
                "Feedback accepted while the store could not take it, waiting to be written.",
                value=feedback.queued,
            )
            for name, doc in (
                ("written_late", "Queued feedback written once the store served again."),
                ("lost", "Queued feedback lost at shutdown (the store still failed)."),
                ("refused", "Feedback answered 503 because the queue was full."),
            ):
                yield CounterMetricFamily(
                    f"skillproxy_feedback_{name}", doc, value=getattr(feedback, name)
                )
