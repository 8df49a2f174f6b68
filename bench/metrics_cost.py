"""What counting a request for /metrics costs, measured two ways in one run.

1. In process: ns per `ProxyMetrics.observe` for a chat request with skills injected (the
   eight figures it keeps), next to the same eight updates made through prometheus_client's
   own metric children with `.labels()` looked up once (the design it replaced), and to a
   call that does nothing; then the time to render a scrape of 200 label combinations.
2. End to end: two skillproxy processes on the zero-latency fake provider, 50 active skills,
   one with `metrics.enabled = false`; the load generator's 32 clients (non-streaming) run
   against each in turn, `--repeat` times; printed: req/s and the event loop thread's CPU
   per request, as medians.

    .venv/bin/python bench/metrics_cost.py [--duration 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from admin_api import seed_skills  # noqa: E402
from overhead import Target, run_cell  # noqa: E402
from procs import fleet  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest  # noqa: E402
from servers import SKILLPROXY_ENV, start_skillproxy, start_upstream  # noqa: E402

from core.config import MetricsConfig  # noqa: E402
from proxy.metrics import SECONDS, ProxyMetrics  # noqa: E402
from proxy.tracing import TraceRecord  # noqa: E402

CALLS = 200_000
CLIENTS = 32


def record(skillbook: str = "bench", model: str = "gpt-4o-mini") -> TraceRecord:
    return TraceRecord(
        id="tr_bench",
        created_at=time.time(),
        skillbook=skillbook,
        method="POST",
        path="/v1/chat/completions",
        format="chat",
        model=model,
        status=200,
        latency_ms=3.2,
        ttfb_ms=2.9,
        request_bytes=350,
        response_bytes=620,
        injected_skill_ids=tuple(f"sk_{i}" for i in range(12)),
        skill_tokens=640,
    )


def ns_per_call(fn: Callable[[], None], calls: int = CALLS) -> float:
    for _ in range(1000):
        fn()
    best = float("inf")
    for _ in range(3):  # the least disturbed of three runs
        started = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - started) / calls)
    return best


def children_reference() -> Callable[[], None]:
    """The same eight updates through prometheus_client's children, looked up once."""
    reg = CollectorRegistry()
    full = ("route", "format", "skillbook", "model", "status")
    timed = ("route", "model", "stream")
    where = ("route", "skillbook")
    requests = Counter("r", "", full, registry=reg).labels(
        "chat/completions", "chat", "bench", "gpt-4o-mini", "200"
    )
    duration = Histogram("d", "", timed, buckets=SECONDS, registry=reg).labels(
        "chat/completions", "gpt-4o-mini", "false"
    )
    ttfb = Histogram("t", "", timed, buckets=SECONDS, registry=reg).labels(
        "chat/completions", "gpt-4o-mini", "false"
    )
    sent = Counter("rb", "", where, registry=reg).labels("chat/completions", "bench")
    relayed = Counter("sb", "", where, registry=reg).labels("chat/completions", "bench")
    skills = Counter("s", "", ("skillbook",), registry=reg).labels("bench")
    tokens = Counter("st", "", ("skillbook",), registry=reg).labels("bench")
    cache = {("chat/completions", "chat", "bench", "gpt-4o-mini", "200", False): None}
    one = record()

    def observe() -> None:
        cache.get(("chat/completions", "chat", one.skillbook, one.model or "", "200", False))
        requests.inc()
        duration.observe((one.latency_ms or 0) / 1000)
        ttfb.observe((one.ttfb_ms or 0) / 1000)
        sent.inc(one.request_bytes)
        relayed.inc(one.response_bytes)
        skills.inc(len(one.injected_skill_ids))
        tokens.inc(one.skill_tokens or 0)

    return observe


def in_process() -> None:
    metrics = ProxyMetrics(MetricsConfig())
    one = record()
    ours = ns_per_call(lambda: metrics.observe(one))
    reference = ns_per_call(children_reference())
    nothing = ns_per_call(lambda: None)
    print(f"ProxyMetrics.observe:               {ours:7.0f} ns per request")
    print(f"prometheus_client children, cached: {reference:7.0f} ns per request")
    print(f"a call that does nothing:           {nothing:7.0f} ns")
    wide = ProxyMetrics(MetricsConfig())
    for i in range(200):
        wide.observe(record(f"book{i % 50}", f"model-{i % 4}"))
    started = time.perf_counter()
    for _ in range(20):
        text = generate_latest(wide.registry)
    took_ms = (time.perf_counter() - started) / 20 * 1000
    lines = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
    print(f"a scrape of 200 label combinations: {took_ms:7.2f} ms ({lines} samples)")


def end_to_end(folder: Path, duration: float, repeat: int) -> None:
    with fleet(folder) as group:
        upstream = start_upstream(group)
        targets = []
        for name, enabled in (("metrics on", "true"), ("metrics off", "false")):
            env = {**SKILLPROXY_ENV, "SKILLPROXY_METRICS__ENABLED": enabled}
            db = folder / f"{enabled}.db"
            proxy = start_skillproxy(group, upstream, db, name=name.replace(" ", "-"), env=env)
            seed_skills(proxy.port, 50)
            targets.append(Target(name, f"{proxy.base}/sb/bench", proxy.proc.pid))
        figures: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
        for turn in range(repeat):
            for target in targets if turn % 2 == 0 else targets[::-1]:
                figures[target.name].append(
                    run_cell(target, "chat", "json", CLIENTS, duration, warmup=0.5)
                )
        on = targets[0]
        with urllib.request.urlopen(
            urllib.request.Request(
                f"{on.base.rsplit('/sb/', 1)[0]}/metrics",
                headers={"Authorization": "Bearer bench"},
            )
        ) as answer:
            exposition = answer.read()
    print(f"end to end, {CLIENTS} clients, chat non-streaming, median of {repeat}:")
    for name, runs in figures.items():
        rps = statistics.median(r["req_per_s"] for r in runs)
        main_us = statistics.median(r["cpu_main_s_per_1k"] for r in runs) * 1000
        p50 = statistics.median(r["p50_ms"] for r in runs)
        print(f"  {name:12s} {rps:7,.0f} req/s  p50 {p50:5.2f} ms  loop {main_us:6.1f} us/req")
    samples = sum(1 for line in exposition.splitlines() if not line.startswith(b"#"))
    print(f"  /metrics after the runs: {len(exposition):,} bytes, {samples} samples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--in-process-only", action="store_true")
    args = parser.parse_args()
    in_process()
    if not args.in_process_only:
        with tempfile.TemporaryDirectory(prefix="skillproxy-metrics-") as folder:
            end_to_end(Path(folder), args.duration, args.repeat)


if __name__ == "__main__":
    main()
