"""What each proxied request adds to the Prometheus metrics, for well under a microsecond.

One `ProxyMetrics` per app owns a `CollectorRegistry` (never prometheus_client's global one),
so two apps in one process, as the tests run them, count apart. The handler calls `observe`
with the finished `TraceRecord` once the answer has gone out; everything it needs is already
on the record.

Cost: prometheus_client's own metric children, even with `.labels()` looked up once per
combination of labels, take a lock and a few checks per `inc`/`observe`: 3.5-5 us per request
for the eight figures kept here. So a request adds to plain counters in one `_Tally` per
combination of labels, all on the event loop's thread, and finds its tally by the record's own
values (`_by_record`) when those are its labels as they are (a model route, a skillbook and a
model the caps kept): about 0.6 us; working the labels out (route, caps) takes about 1.2 us
(`bench/metrics_cost.py` measures both designs). At scrape time `collect` turns the tallies
into prometheus_client metric families, summed to each metric's own labels, and the library
writes the exposition.

Cardinality: the skillbook and the model are chosen by clients, so each keeps the first
`metrics.max_skillbooks` / `max_models` values seen and folds the rest into "other" (the
default skillbook, and "none" for a request naming no model, take no place). The
route is one of a fixed list (`ROUTES`, else "other"); the status is the HTTP code, since
429 (rate limited), 401 (bad key) and 400 call for different actions and HTTP codes are three
digits, so bounded; "none" when the client left before any status was sent.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from core.config import MetricsConfig
from proxy.tracing import TraceRecord

log = logging.getLogger("skillproxy.metrics")

OTHER = "other"
NONE = "none"
ROUTES = frozenset(
    {
        "chat/completions", "responses", "messages", "messages/count_tokens", "completions",
        "complete", "embeddings", "models", "moderations", "files", "batches", "uploads",
        "audio", "images", "assistants", "threads", "vector_stores", "fine_tuning",
        "conversations", "realtime",
    }
)  # fmt: skip
"""Route labels: the API's endpoint families; any other path is counted as "other"."""
_TWO_SEGMENTS = frozenset({"chat", "messages"})
_BY_PATH = {f"/v1/{route}": route for route in ROUTES}
SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""Histogram buckets, from a cached reply to a long generation."""
_BOUNDS = (*(str(b) for b in SECONDS), "+Inf")


def route_label(path: str) -> str:
    """The endpoint family of a traced path (`/v1/chat/completions?x=1` -> chat/completions;
    `/v1/responses/resp_1` -> responses); "other" for anything not in `ROUTES`."""
    known = _BY_PATH.get(path)
    if known is not None:
        return known
    tail = path[4:].partition("?")[0] if path.startswith("/v1/") else ""
    first, _, rest = tail.partition("/")
    if first in _TWO_SEGMENTS and rest:
        second = f"{first}/{rest.partition('/')[0]}"
        if second in ROUTES:
            return second
    return first if first in ROUTES else OTHER


class LabelCap:
    """Keeps the first `limit` values seen; any other value becomes "other". The `always`
    values (the default skillbook) are kept without taking a place."""

    def __init__(self, limit: int, always: frozenset[str] = frozenset()) -> None:
        self.limit = limit
        self._always = always
        self._kept: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._kept or value in self._always:
            return value
        if len(self._kept) < self.limit:
            self._kept.add(value)
            return value
        return OTHER


def _buckets() -> list[int]:
    return [0] * (len(SECONDS) + 1)


@dataclass(slots=True)
class _Tally:
    """What the requests of one combination of labels added up to. `*_buckets[i]` counts
    values at most `SECONDS[i]` and above the bound before it (the last: above them all)."""

    requests: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    skills: int = 0
    skill_tokens: int = 0
    disconnects: int = 0
    duration_sum: float = 0.0
    duration_buckets: list[int] = field(default_factory=_buckets)
    ttfb_sum: float = 0.0
    ttfb_buckets: list[int] = field(default_factory=_buckets)


_Key = tuple[str, str, str, str, str, bool]
"""route, format, skillbook, model, status, stream."""
_RecordKey = tuple[str, str | None, str, str | None, int | None, bool]
"""path, format, skillbook, model, status, stream, as on the record."""


class ProxyMetrics:
    """The app's registry, the request tallies, and the caps on their labels."""

    def __init__(self, config: MetricsConfig, default_skillbook: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        always = frozenset({default_skillbook} if default_skillbook is not None else ())
        self.skillbooks = LabelCap(config.max_skillbooks, always)
        self.models = LabelCap(config.max_models)
        self.failures = 0
        """Records `observe` could not count (a bug; logged once)."""
        self._tallies: dict[_Key, _Tally] = {}
        self._by_record: dict[_RecordKey, _Tally] = {}
        """Only for paths in `_BY_PATH` and values the caps kept: no bigger than `_tallies`
        times a few, whatever clients send."""
        self.registry.register(self)

    def observe(self, record: TraceRecord) -> None:
        """Count one finished exchange; never raises."""
        try:
            self._observe(record)
        except Exception:  # a bug must not reach the request
            self.failures += 1
            if self.failures == 1:
                log.exception("could not count a request in the metrics")

    def _observe(self, record: TraceRecord) -> None:
        tally = self._by_record.get(
            (
                record.path,
                record.format,
                record.skillbook,
                record.model,
                record.status,
                record.stream,
            )
        )
        if tally is None:
            tally = self._tally(record)
        tally.requests += 1
        tally.request_bytes += record.request_bytes
        tally.response_bytes += record.response_bytes
        if record.latency_ms is not None:
            seconds = record.latency_ms / 1000
            tally.duration_sum += seconds
            tally.duration_buckets[bisect_left(SECONDS, seconds)] += 1
        if record.ttfb_ms is not None:
            seconds = record.ttfb_ms / 1000
            tally.ttfb_sum += seconds
            tally.ttfb_buckets[bisect_left(SECONDS, seconds)] += 1
        if record.injected_skill_ids:
            tally.skills += len(record.injected_skill_ids)
            tally.skill_tokens += record.skill_tokens or 0
        if record.client_disconnected:
            tally.disconnects += 1

    def _tally(self, record: TraceRecord) -> _Tally:
        status = record.status
        key = (
            route_label(record.path),
            record.format or NONE,
            self.skillbooks(record.skillbook),
            NONE if record.model is None else self.models(record.model),  # "none": no place
            NONE if status is None else str(status),
            record.stream,
        )
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally()
        if record.path in _BY_PATH and key[2] == record.skillbook and key[3] == record.model:
            own = (
                record.path,
                record.format,
                record.skillbook,
                record.model,
                status,
                record.stream,
            )
            self._by_record[own] = tally
        return tally

    def collect(self) -> Iterator[Metric]:
        """The tallies as metric families (prometheus_client's `Collector` protocol); may
        run on another thread: the dict is copied at once, and a tally read while a request
        adds to it is at most that one request behind. `dict.copy` is one C call that makes
        no tracked object, so no garbage collection (and no thread switch) can let the loop
        add a key in the middle; iterating the live dict could: "changed size during
        iteration"."""
        tallies = list(self._tallies.copy().items())
        full = ("route", "format", "skillbook", "model", "status")
        yield _counter(
            "skillproxy_requests", "Proxied requests answered.", full, tallies,
            lambda k: k[:5], lambda t: t.requests,
        )  # fmt: skip
        where = ("route", "skillbook")
        for name, doc, value in (
            ("skillproxy_request_bytes", "Request body bytes received.", "request_bytes"),
            ("skillproxy_response_bytes", "Response body bytes relayed.", "response_bytes"),
            (
                "skillproxy_client_disconnects",
                "Requests whose client hung up before the answer was complete.",
                "disconnects",
            ),
        ):
            yield _counter(name, doc, where, tallies, _where, _field(value))
        for name, doc, value in (
            ("skillproxy_injected_skills", "Skills injected into system prompts.", "skills"),
            (
                "skillproxy_injected_skill_tokens",
                "Tokens of the skillbook sections injected.",
                "skill_tokens",
            ),
        ):
            yield _counter(name, doc, ("skillbook",), tallies, _skillbook, _field(value))
        yield _histogram(
            "skillproxy_request_duration_seconds",
            "From the request's arrival to the end of its answer.",
            tallies,
            "duration",
        )
        yield _histogram(
            "skillproxy_time_to_first_byte_seconds",
            "From the request's arrival to the provider's first body bytes (a buffered answer "
            "whole, a stream's first chunk).",
            tallies,
            "ttfb",
        )


Labels = tuple[str, ...]


def _where(key: _Key) -> Labels:
    return (key[0], key[2])


def _skillbook(key: _Key) -> Labels:
    return (key[2],)


def _timed(key: _Key) -> Labels:
    return (key[0], key[3], "true" if key[5] else "false")


def _field(name: str) -> Callable[[_Tally], int]:
    def read(tally: _Tally) -> int:
        value: int = getattr(tally, name)
        return value

    return read


def _counter(
    name: str,
    doc: str,
    labels: Labels,
    tallies: list[tuple[_Key, _Tally]],
    select: Callable[[_Key], Labels],
    value: Callable[[_Tally], int],
) -> CounterMetricFamily:
    sums: dict[Labels, int] = {}
    for key, tally in tallies:
        chosen = select(key)
        sums[chosen] = sums.get(chosen, 0) + value(tally)
    family = CounterMetricFamily(name, doc, labels=labels)
    for chosen, total in sums.items():
        family.add_metric(chosen, total)
    return family


def _histogram(
    name: str, doc: str, tallies: list[tuple[_Key, _Tally]], which: str
) -> HistogramMetricFamily:
    """Labelled (route, model, stream): buckets times labels is where series multiply."""
    sums: dict[Labels, tuple[float, list[int]]] = {}
    for key, tally in tallies:
        buckets: list[int] = getattr(tally, f"{which}_buckets")
        if not any(buckets):
            continue
        chosen = _timed(key)
        total, counts = sums.get(chosen, (0.0, _buckets()))
        sums[chosen] = (
            total + getattr(tally, f"{which}_sum"),
            [a + b for a, b in zip(counts, buckets, strict=True)],
        )
    family = HistogramMetricFamily(name, doc, labels=("route", "model", "stream"))
    for chosen, (total, counts) in sums.items():
        cumulative, running = [], 0
        for bound, count in zip(_BOUNDS, counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        family.add_metric(chosen, cumulative, sum_value=total)
    return family
