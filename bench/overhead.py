"""Overhead and throughput: the same load against the provider, the floor, skillproxy, and the
other proxies (LiteLLM, TensorZero, Portkey).

Each wire format (Chat Completions, Anthropic Messages, OpenAI Responses) is measured against
direct, floor and skillproxy; LiteLLM, TensorZero and Portkey on the formats (and modes) they
serve, which is Chat Completions only. The targets stay defined on Chat Completions; the other
formats' ratios are further checks.

Each cell (format x target x json/stream x clients) runs the load generator in its own process; the
targets alternate inside each repeat, so a noisy minute hurts all of them alike. Around each
run the target's CPU time is read from /proc, which gives CPU seconds per 1,000 requests.
Absolute figures depend on the machine; the ratios, measured minutes apart on the same cores,
are the point. `run_all.py` starts the servers and calls `measure` and `report`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loadgen import FORMATS, PATHS
from procs import BENCH, cpu_seconds
from report import spread, table, verdict

TARGETS = ("direct", "floor", "skillproxy", "litellm", "tensorzero", "portkey")
MODES = ("json", "stream")
FIELDS = (
    ("req_per_s", 0),
    ("p50_ms", 2),
    ("p99_ms", 2),
    ("ttfb_p50_ms", 2),
    ("cpu_s_per_1k", 3),
)
MIN_FLOOR_RATIO = 0.8
MAX_ADDED_P50_VS_FLOOR_MS = 0.3
LATENCY_CLIENTS = 1
"""The latency budgets hold for one client; the throughput targets for the most clients run."""
PAIRED = ("floor", "skillproxy")
TARGET_EXTRA_PAIRS = 6
"""Extra floor/skillproxy pairs for the throughput target's cells (Chat Completions at the most
clients), after the regular repeats: the paired ratio's spread narrows with the square root of
the pairs, and the other targets do not sit near their thresholds."""
MIN_LITELLM_RATIO = 10.0
MAX_ADDED_P50_VS_LITELLM = 0.1
MIN_TENSORZERO_RATIO = 1.0
"""skillproxy's req/s over TensorZero's at the most clients, in every repeat; and its added p50
at one client no more than TensorZero's, in every repeat."""
MIN_STREAM_FLOOR_RATIO = 0.95
"""skillproxy's streaming req/s over the floor's at the most clients (median of the pairs)."""
PEERS = {"litellm": "LiteLLM", "tensorzero": "TensorZero", "portkey": "Portkey"}


def target_pairs(repeat: int) -> int:
    """Floor/skillproxy pairs in the throughput target's cells; a single-run smoke adds none."""
    return repeat + TARGET_EXTRA_PAIRS if repeat > 1 else repeat


@dataclass(frozen=True)
class Target:
    name: str
    base: str  # the URL before `/v1/...`, e.g. `http://127.0.0.1:9002/sb/bench`
    pid: int
    api_key: str = "sk-bench"
    formats: tuple[str, ...] = FORMATS
    modes: tuple[str, ...] = MODES
    model: str | None = None  # sent instead of loadgen's default model name
    headers: tuple[tuple[str, str], ...] = ()  # extra request headers (Portkey's routing)

    def url(self, fmt: str) -> str:
        return self.base + PATHS[fmt]


@dataclass
class Row:
    target: str
    fmt: str
    mode: str
    clients: int
    runs: list[dict[str, float]] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [run[key] for run in self.runs]

    def median(self, key: str) -> float:
        return statistics.median(self.values(key))


def loadgen(
    url: str,
    *,
    clients: int,
    stream: bool = False,
    duration: float = 5.0,
    warmup: float = 1.0,
    requests: int | None = None,
    api_key: str = "sk-bench",
    timeout: float = 120.0,
    fmt: str = "chat",
    model: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """Run bench/loadgen.py once; fail loudly on any error response."""
    argv = [sys.executable, str(BENCH / "loadgen.py"), "--url", url, "-c", str(clients)]
    argv += ["--duration", str(duration), "--warmup", str(warmup), "--api-key", api_key]
    if stream:
        argv.append("--stream")
    if fmt != "chat":
        argv += ["--format", fmt]
    if requests is not None:
        argv += ["--requests", str(requests)]
    if model is not None:
        argv += ["--model", model]
    for name, value in headers:
        argv += ["--header", f"{name}: {value}"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["errors"] or not result["requests"]:
        raise RuntimeError(f"loadgen saw errors against {url}: {result}")
    return result


def run_cell(
    target: Target, fmt: str, mode: str, clients: int, duration: float, warmup: float
) -> dict[str, float]:
    before, before_main = cpu_seconds(target.pid), cpu_seconds(target.pid, target.pid)
    result = loadgen(
        target.url(fmt),
        clients=clients,
        stream=mode == "stream",
        duration=duration,
        warmup=warmup,
        api_key=target.api_key,
        timeout=duration + warmup + 120,
        fmt=fmt,
        model=target.model,
        headers=target.headers,
    )
    cpu = cpu_seconds(target.pid) - before
    main = cpu_seconds(target.pid, target.pid) - before_main
    figures = {key: float(result[key]) for key, _ in FIELDS if key in result}
    per_1k = 1000 / result["all_requests"]
    figures["cpu_s_per_1k"] = cpu * per_1k
    figures["cpu_main_s_per_1k"] = main * per_1k
    figures["cpu_other_s_per_1k"] = (cpu - main) * per_1k
    return figures


def counterbalanced(targets: list[Target], turn: int) -> list[Target]:
    """The targets in order on even repeats, reversed on odd ones.

    Run always in one order, a drift of the machine during a repeat, or whatever a run leaves
    behind for the next (the provider's connections, warm caches), always falls on the same
    target. Reversing every other repeat gives each target both places equally often.
    """
    return targets if turn % 2 == 0 else targets[::-1]


def measure(
    targets: list[Target],
    levels: list[int],
    *,
    repeat: int,
    duration: float,
    warmup: float,
    progress: Callable[[str], None],
    formats: tuple[str, ...] | list[str] = ("chat",),
) -> list[Row]:
    rows: list[Row] = []
    for fmt in formats:
        for mode in MODES:
            fmt_targets = [t for t in targets if fmt in t.formats and mode in t.modes]
            for clients in levels:
                cells = {t.name: Row(t.name, fmt, mode, clients) for t in fmt_targets}
                rounds = [fmt_targets] * repeat
                if fmt == "chat" and clients == max(levels) > LATENCY_CLIENTS:
                    pair = [t for t in fmt_targets if t.name in PAIRED]
                    rounds += [pair] * (target_pairs(repeat) - repeat)
                for turn, round_targets in enumerate(rounds):
                    for target in counterbalanced(round_targets, turn):
                        cells[target.name].runs.append(
                            run_cell(target, fmt, mode, clients, duration, warmup)
                        )
                for row in cells.values():
                    rate = spread(row.values("req_per_s"), 0)
                    progress(f"{row.target:<10} {fmt:<9} {mode:<6} c={clients:<3} {rate} req/s")
                rows.extend(cells.values())
    return rows


def results_table(rows: list[Row]) -> list[str]:
    headers = ["format", "target", "mode", "clients", "req/s", "p50 ms", "p99 ms", "ttfb p50 ms"]
    body = [
        [r.fmt, r.target, r.mode, str(r.clients), *(spread(r.values(k), d) for k, d in FIELDS)]
        for r in rows
    ]
    return table([*headers, "CPU s / 1k req"], body, left=3)


def cpu_split_table(rows: list[Row]) -> list[str]:
    """CPU per 1,000 requests of the main (event-loop) thread and of everything else (other
    threads, child processes)."""
    body = [
        [
            r.fmt,
            r.target,
            r.mode,
            str(r.clients),
            spread(r.values("cpu_main_s_per_1k"), 3),
            spread(r.values("cpu_other_s_per_1k"), 3),
        ]
        for r in rows
        if r.target != "direct"
    ]
    headers = [
        "format",
        "target",
        "mode",
        "clients",
        "main thread CPU s / 1k",
        "the rest CPU s / 1k",
    ]
    return table(headers, body, left=3)


def paired_ratio(of: Row, to: Row, key: str) -> float:
    """The median, over repeats, of `of`'s figure divided by `to`'s in the same repeat.

    `measure` runs the targets of one repeat back to back, so each pair saw the machine in the
    same state; on a shared machine whose speed drifts by tens of percent within minutes, the
    ratio of two medians mixes states and pairing does not. With unequal runs (not produced by
    `measure`) it falls back to the ratio of the medians.
    """
    a, b = of.values(key), to.values(key)
    if len(a) != len(b) or not a:
        return of.median(key) / to.median(key)
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def pair_ratios(of: Row, to: Row, key: str) -> list[float]:
    """`of`'s figure over `to`'s, repeat by repeat: run i of both came from round i of `measure`
    (a row with extra pairs has them after the regular rounds, so they fall outside the zip)."""
    return [x / y for x, y in zip(of.values(key), to.values(key), strict=False)]


def ratio(
    rows: list[Row], mode: str, clients: int, key: str, of: str, to: str, fmt: str = "chat"
) -> float:
    cell = {(r.target, r.fmt, r.mode, r.clients): r for r in rows}
    return paired_ratio(cell[(of, fmt, mode, clients)], cell[(to, fmt, mode, clients)], key)


def comparisons(rows: list[Row], levels: list[int]) -> tuple[list[str], list[tuple[bool, str]]]:
    """Ratios of skillproxy to the floor and to LiteLLM, and the PASS/MISS lines.

    Each verdict comes with whether it is one of the suite's targets (the rest are further
    checks: the streaming floor ratio, the floor latency budget, and every ratio of the formats
    other than Chat Completions, where the targets are defined).
    """
    cell = {(r.target, r.fmt, r.mode, r.clients): r for r in rows}
    have_litellm = any(r.target == "litellm" for r in rows)
    formats = [f for f in FORMATS if any(r.fmt == f for r in rows)]
    body: list[list[str]] = []
    verdicts: list[tuple[bool, str]] = []
    for fmt, mode, c in ((f, m, c) for f in formats for m in MODES for c in levels):
        sp, fl, direct = (cell[(t, fmt, mode, c)] for t in ("skillproxy", "floor", "direct"))
        lt = cell.get(("litellm", fmt, mode, c))
        ratio_floor = paired_ratio(sp, fl, "req_per_s")
        added_floor = sp.median("p50_ms") - fl.median("p50_ms")
        added_sp = sp.median("p50_ms") - direct.median("p50_ms")
        line = [fmt, mode, str(c), f"{ratio_floor:.2f}", f"{added_floor:+.2f}", f"{added_sp:+.2f}"]
        line.append(f"{sp.median('cpu_s_per_1k') / fl.median('cpu_s_per_1k'):.2f}")
        if c == max(levels) > LATENCY_CLIENTS:
            least = MIN_STREAM_FLOOR_RATIO if mode == "stream" else MIN_FLOOR_RATIO
            pairs = pair_ratios(sp, fl, "req_per_s")
            below = sum(1 for x in pairs if x < least)
            ok = ratio_floor >= least
            text = (
                f"{fmt} {mode}, {c} clients: skillproxy at {ratio_floor:.2f}x the floor's"
                f" req/s, {spread(pairs)} over {len(pairs)} pair(s), {below} below"
                f" (target >= {least}x, median of the pairs)"
            )
            verdicts.append((fmt == "chat", verdict(ok, text)))
        if c == LATENCY_CLIENTS:
            ok = added_floor <= MAX_ADDED_P50_VS_FLOOR_MS
            text = (
                f"{fmt} {mode}, {c} client(s): skillproxy adds {added_floor:+.2f} ms p50 over"
                f" the floor (budget <= {MAX_ADDED_P50_VS_FLOOR_MS} ms)"
            )
            verdicts.append((False, verdict(ok, text)))
        if lt is None:
            body.append([*line, "n/a", "n/a", "n/a", "n/a"])
            continue
        ratio_lt = sp.median("req_per_s") / lt.median("req_per_s")
        added_lt = lt.median("p50_ms") - direct.median("p50_ms")
        share = added_sp / added_lt if added_lt > 0 else float("inf")
        cpu_lt = sp.median("cpu_s_per_1k") / lt.median("cpu_s_per_1k")
        numbers = [f"{ratio_lt:.1f}", f"{added_lt:+.2f}", f"{share:.3f}", f"{cpu_lt:.3f}"]
        body.append([*line, *numbers])
        if c == max(levels) > LATENCY_CLIENTS:
            ok = ratio_lt >= MIN_LITELLM_RATIO
            text = (
                f"{fmt} {mode}, {c} clients: skillproxy at {ratio_lt:.1f}x LiteLLM's req/s"
                f" (target >= {MIN_LITELLM_RATIO:g}x)"
            )
            verdicts.append((True, verdict(ok, text)))
        if c == LATENCY_CLIENTS:
            ok = share <= MAX_ADDED_P50_VS_LITELLM
            text = (
                f"{fmt} {mode}, {c} client(s): skillproxy adds {added_sp:+.2f} ms p50 over the"
                f" provider, LiteLLM {added_lt:+.2f} ms: {share:.3f} of it"
                f" (target <= {MAX_ADDED_P50_VS_LITELLM:g})"
            )
            verdicts.append((True, verdict(ok, text)))
    if not have_litellm:
        text = "**N/A** skillproxy vs LiteLLM: LiteLLM was not measured (see LiteLLM above)"
        verdicts.append((True, text))
    headers = [
        "format",
        "mode",
        "clients",
        "skillproxy / floor req/s",
        "added p50 ms vs floor",
        "skillproxy added p50 ms vs provider",
        "skillproxy / floor CPU",
        "skillproxy / LiteLLM req/s",
        "LiteLLM added p50 ms vs provider",
        "skillproxy / LiteLLM added p50",
        "skillproxy / LiteLLM CPU",
    ]
    return table(headers, body, left=3), verdicts


def _added(row: Row, direct: Row) -> list[float]:
    """The row's p50 minus the provider's, repeat by repeat."""
    return [x - y for x, y in zip(row.values("p50_ms"), direct.values("p50_ms"), strict=False)]


def peer_comparisons(
    rows: list[Row], levels: list[int], peers: tuple[str, ...] = ("tensorzero", "portkey")
) -> tuple[list[str], list[tuple[bool, str]]]:
    """skillproxy next to TensorZero and Portkey, cell by cell, with the spread over repeats.

    Every ratio here is taken within a repeat (the targets of one repeat ran back to back) and
    shown as median (min..max) over the repeats. The TensorZero targets, on Chat Completions
    JSON and streaming, must hold in every repeat: skillproxy's req/s at the most clients at
    least TensorZero's, and its added p50 at one client no more than TensorZero's.
    """
    cell = {(r.target, r.fmt, r.mode, r.clients): r for r in rows}
    body: list[list[str]] = []
    verdicts: list[tuple[bool, str]] = []
    for peer in peers:
        name = PEERS[peer]
        for fmt, mode, c in ((f, m, c) for f in FORMATS for m in MODES for c in levels):
            other = cell.get((peer, fmt, mode, c))
            if other is None:
                continue
            sp, direct = cell[("skillproxy", fmt, mode, c)], cell[("direct", fmt, mode, c)]
            rates = pair_ratios(sp, other, "req_per_s")
            sp_added, other_added = _added(sp, direct), _added(other, direct)
            body.append(
                [
                    fmt,
                    mode,
                    str(c),
                    name,
                    spread(other.values("req_per_s"), 0),
                    spread(rates),
                    spread(other_added),
                    spread(sp_added),
                    f"{sp.median('cpu_s_per_1k') / other.median('cpu_s_per_1k'):.2f}",
                ]
            )
            if peer != "tensorzero" or fmt != "chat":
                continue
            runs = len(rates)
            if c == max(levels) > LATENCY_CLIENTS:
                held = sum(1 for x in rates if x >= MIN_TENSORZERO_RATIO)
                text = (
                    f"{fmt} {mode}, {c} clients: skillproxy at {spread(rates)}x TensorZero's"
                    f" req/s over {runs} repeat(s), >= {MIN_TENSORZERO_RATIO:g}x in {held} of"
                    f" {runs} (target: >= {MIN_TENSORZERO_RATIO:g}x in every repeat)"
                )
                verdicts.append((True, verdict(held == runs, text)))
            if c == LATENCY_CLIENTS:
                pairs = list(zip(sp_added, other_added, strict=False))
                held = sum(1 for mine, theirs in pairs if mine <= theirs)
                text = (
                    f"{fmt} {mode}, {c} client(s): skillproxy adds {spread(sp_added)} ms p50 over"
                    f" the provider, TensorZero {spread(other_added)} ms; skillproxy's <="
                    f" TensorZero's in {held} of {len(pairs)} repeat(s) (target: every repeat)"
                )
                verdicts.append((True, verdict(held == len(pairs), text)))
    headers = [
        "format",
        "mode",
        "clients",
        "proxy",
        "proxy req/s",
        "skillproxy / proxy req/s",
        "proxy added p50 ms vs provider",
        "skillproxy added p50 ms vs provider",
        "skillproxy / proxy CPU",
    ]
    return (table(headers, body, left=4) if body else []), verdicts
