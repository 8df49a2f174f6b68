"""What a suite run found, and how it is written into RESULTS.md."""

from __future__ import annotations

import statistics
import subprocess
from dataclasses import dataclass, field

from admin_api import SKILLBOOK
from learner_probe import LearnerRow
from memory import MemoryRun
from overhead import (
    TARGET_EXTRA_PAIRS,
    Row,
    comparisons,
    cpu_split_table,
    peer_comparisons,
    results_table,
    target_pairs,
)
from procs import ROOT
from report import machine, spread, table, verdict
from scale_probe import ScaleResult
from scale_probe import section as scale_section
from store_bench import BATCH_SIZE

FLAT_GROWTH_MB = 10.0
MAX_RSS_MB = 150.0
TARGET_REQUESTS = 100_000


@dataclass(frozen=True)
class Plan:
    quick: bool
    repeat: int
    duration: float
    warmup: float
    levels: list[int]
    checkpoints: list[int]
    store_traces: int
    writer_rows: int
    admin_samples: int
    learner_timeout: float
    profile: bool
    skills: int
    skillproxy_cmd: str
    sections: list[str]
    formats: list[str] = field(default_factory=lambda: ["chat"])

    @property
    def slow_repeat(self) -> int:
        """Runs of the memory and store sections, which take minutes each."""
        return min(self.repeat, 3)


@dataclass
class Results:
    load_at_invocation: str
    command: str
    load_at_start: str = ""
    load_at_end: str = ""
    wall_s: float = 0.0
    litellm_version: str = ""
    litellm_missing: str = ""
    tensorzero_version: str = ""
    tensorzero_missing: str = ""
    portkey_version: str = ""
    portkey_missing: str = ""
    portkey_stream_missing: str = ""
    injected: tuple[int, int] = (0, 0)
    overhead: list[Row] = field(default_factory=list)
    profile: tuple[float, list[str]] | None = None
    memory: list[MemoryRun] = field(default_factory=list)
    writer_rows_per_s: list[float] = field(default_factory=list)
    generation_s: float = 0.0
    store_bytes: int = 0
    admin_ms: dict[str, list[float]] = field(default_factory=dict)
    tiktoken_mb: dict[str, float] = field(default_factory=dict)
    learner: list[LearnerRow] = field(default_factory=list)
    scale: ScaleResult | None = None


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" with uncommitted changes" if git("status", "--porcelain") else "")


def _litellm(out: Results) -> str:
    if out.litellm_missing or not out.litellm_version:
        return f"**missing**: {out.litellm_missing or 'not measured'}"
    return (
        f"litellm {out.litellm_version} (`litellm[proxy]` in bench/.venv-litellm), one worker, "
        "no database, `LITELLM_LOCAL_MODEL_COST_MAP=True`, a master key, default logging"
    )


def _tensorzero(out: Results) -> str:
    if out.tensorzero_missing or not out.tensorzero_version:
        return f"**missing**: {out.tensorzero_missing or 'not measured'}"
    return (
        f"tensorzero {out.tensorzero_version} (`pip install tensorzero` in "
        "bench/.venv-tensorzero): the Rust gateway built into the wheel, run by "
        "`tensorzero._start_http_gateway` in its own process, observability off (no ClickHouse "
        'or Postgres), model `gpt-4o-mini` routed to the fake provider (`type = "openai"`), '
        "load sent to `/openai/v1/chat/completions` as `tensorzero::model_name::gpt-4o-mini`; "
        "Chat Completions only (it serves no Messages or Responses endpoint to clients)"
    )


def _portkey(out: Results) -> str:
    if out.portkey_missing or not out.portkey_version:
        return f"**missing**: {out.portkey_missing or 'not measured'}"
    text = (
        f"@portkey-ai/gateway {out.portkey_version} (npm, in bench/.node-portkey), one Node "
        "process, `--headless`, routed per request by `x-portkey-provider: openai` and "
        "`x-portkey-custom-host`; Chat Completions"
    )
    if out.portkey_stream_missing:
        return f"{text}, non-streaming only: {out.portkey_stream_missing}"
    return text + ", JSON and streaming"


def header(plan: Plan, out: Results) -> list[str]:
    mode = "quick (smoke run; figures are indicative only)" if plan.quick else "full"
    return [
        "# Benchmark results",
        "",
        f"- **Machine**: {machine()}",
        f"- **Load average**: {out.load_at_invocation} at invocation; "
        f"1-min {out.load_at_start} when measuring began; {out.load_at_end} at the end",
        f"- **Command**: {out.command}",
        f"- **Mode**: {mode}; {plan.repeat} run(s) per overhead figure ({plan.slow_repeat} for "
        "memory and store; floor and skillproxy on Chat Completions at the most clients "
        f"{target_pairs(plan.repeat)}), "
        "shown as median (min..max); "
        f"each load run {plan.duration:g} s measured after {plan.warmup:g} s of warm-up",
        f"- **Commit**: {_commit()}",
        f"- **Wall time**: {out.wall_s / 60:.1f} min, set-up included",
        f"- **LiteLLM**: {_litellm(out)}",
        f"- **TensorZero**: {_tensorzero(out)}",
        f"- **Portkey**: {_portkey(out)}",
    ]


Verdicts = list[tuple[bool, str]]  # (is one of the suite's targets, the PASS/MISS line)


def overhead_section(plan: Plan, out: Results) -> tuple[list[str], Verdicts]:
    if not out.overhead:
        return [], []
    compared, verdicts = comparisons(out.overhead, plan.levels)
    peers, peer_verdicts = peer_comparisons(out.overhead, plan.levels)
    verdicts += peer_verdicts
    if "chat" in plan.formats and not any(r.target == "tensorzero" for r in out.overhead):
        why = out.tensorzero_missing or "not measured"
        verdicts.append((True, f"**N/A** skillproxy vs TensorZero: TensorZero is missing ({why})"))
    skills, tokens = out.injected
    names = {
        "chat": "Chat Completions (`/v1/chat/completions`)",
        "messages": "Anthropic Messages (`/v1/messages`)",
        "responses": "OpenAI Responses (`/v1/responses`)",
    }
    formats = ", ".join(names[f] for f in plan.formats)
    lines = [
        "## Overhead and throughput",
        "",
        f"Wire formats: {formats}; each JSON and streaming, against a zero-latency fake "
        "provider (`upstream.py`) that answers every format, load from a "
        "separate process (`loadgen.py --format`). **direct** is the provider alone, **floor** a "
        "feature-less aiohttp pass-through (`floor.py`), **skillproxy** runs with tracing on and "
        f"{plan.skills} active skills created through the admin API, loaded at "
        f"`/sb/{SKILLBOOK}/v1/...`: a check request got `X-Skills-Injected: {skills}` "
        f"(`X-Skill-Tokens: {tokens}`; the default 800-token budget decides how many fit). "
        "LiteLLM, TensorZero and Portkey are measured on Chat Completions only (the only one "
        "of the three formats TensorZero serves to clients; Portkey where it runs, see above). "
        "The targets are defined on Chat "
        "Completions; the other formats' ratios are further checks. "
        "CPU is the target process's "
        "utime + stime (all threads) from /proc over the whole run, warm-up included, per 1,000 "
        "requests completed.",
        "",
        *results_table(out.overhead),
        "",
        "*skillproxy / floor req/s* is the median of the ratios within each repeat (the floor "
        "and skillproxy ran back to back, so each pair saw the machine in the same state; on "
        "Chat Completions at the most clients, the cells the throughput target is judged on, "
        f"{TARGET_EXTRA_PAIRS} more pairs of the two ran after the regular repeats); the "
        "other ratios are ratios of medians. *Added p50* is the target's p50 minus the "
        "provider's (direct) p50.",
        "",
        *compared,
        "",
    ]
    if peers:
        lines += [
            "skillproxy next to TensorZero and Portkey. Every ratio and added p50 here is "
            "taken within a repeat (the targets of a repeat ran back to back) and shown as "
            "median (min..max) over the repeats; the TensorZero targets must hold in every "
            "repeat. *Added p50* is the proxy's p50 minus the provider's in the same repeat.",
            "",
            *peers,
            "",
        ]
    lines += [
        "Where the CPU goes: the main thread runs the event loop (every request's own work); "
        "the rest is other threads and child processes: in skillproxy the database thread and "
        "the trace sink process, which builds and inserts the trace rows; in TensorZero's "
        "process the main thread is Python waiting, the gateway is the rest (its Tokio "
        "threads); Portkey's main thread is Node's event loop.",
        "",
        *cpu_split_table(out.overhead),
    ]
    if out.litellm_missing:
        lines += ["", f"LiteLLM is missing from these tables: {out.litellm_missing}"]
    if out.tensorzero_missing:
        lines += ["", f"TensorZero is missing from these tables: {out.tensorzero_missing}"]
    if any(r.target == "tensorzero" and r.mode == "stream" for r in out.overhead):
        lines += [
            "",
            "TensorZero's streamed responses end ~40 ms after their first byte whatever the "
            "load (compare its ttfb with its p50): its gateway accepts client connections "
            "without `TCP_NODELAY`, so after the first small SSE write the rest waits for the "
            "client's delayed ACK (Nagle). That is how this build serves streams, so it is "
            "measured as it is; see bench/README.md.",
        ]
    if out.portkey_missing:
        lines += ["", f"Portkey is missing from these tables: {out.portkey_missing}"]
    elif out.portkey_stream_missing:
        lines += ["", f"Portkey has no streaming rows: {out.portkey_stream_missing}"]
    return lines, verdicts


def memory_section(plan: Plan, out: Results) -> tuple[list[str], Verdicts]:
    if not out.memory:
        return [], []
    runs = out.memory
    points = plan.checkpoints
    rows = [["after start", spread([r.rss_start_mb for r in runs], 1)]]
    seeded = f"after creating and approving {plan.skills} skills, before any request"
    rows.append([seeded, spread([r.rss_seeded_mb for r in runs], 1)])
    rows += [[f"after {n:,} requests", spread([r.rss_mb[n] for r in runs], 1)] for n in points]
    growth = [r.rss_mb[points[-1]] - r.rss_mb[points[0]] for r in runs]
    last = [r.rss_mb[points[-1]] for r in runs]
    flat = statistics.median(growth) <= FLAT_GROWTH_MB
    at = (
        ""
        if points[-1] == TARGET_REQUESTS
        else f" (quick: the target is set at {TARGET_REQUESTS:,})"
    )
    verdicts = [
        (
            True,
            verdict(
                flat,
                f"RSS flat once warm: {statistics.median(growth):+.1f} MB from {points[0]:,} to "
                f"{points[-1]:,} requests (target: within {FLAT_GROWTH_MB:g} MB)",
            ),
        ),
        (
            True,
            verdict(
                statistics.median(last) <= MAX_RSS_MB,
                f"RSS {statistics.median(last):.1f} MB after {points[-1]:,} requests"
                f" (target <= {MAX_RSS_MB:g} MB){at}{_tiktoken_note(out)}",
            ),
        ),
    ]
    half = min(points, key=lambda n: abs(n - points[-1] / 2))
    late = [r.rss_mb[points[-1]] - r.rss_mb[half] for r in runs]
    per = [r.bytes_per_exchange for r in runs]
    rates = [statistics.median(r.req_per_s) for r in runs]
    lines = [
        "## Memory and disk",
        "",
        f"A fresh skillproxy per run (tracing on, {plan.skills} active skills), {points[-1]:,} "
        "non-streaming requests from 32 clients in count mode; VmRSS from /proc.",
        "",
        *table(["when", "skillproxy RSS MB"], rows),
        "",
        f"- RSS {'stays flat' if flat else 'does NOT stay flat'} once warm: growth from "
        f"{points[0]:,} to {points[-1]:,} requests {spread(growth, 1)} MB; over the second "
        f"half alone ({half:,} to {points[-1]:,}) {spread(late, 1)} MB.",
        f"- Throughput during these runs: {spread(rates, 0)} req/s.",
        f"- Trace database after a graceful stop (exit code {runs[-1].exit_code}): "
        f"{spread(per, 0)} bytes per exchange (db + WAL bytes / traces stored; "
        f"{runs[-1].traces:,} traces stored for {runs[-1].requests:,} requests sent).",
    ]
    return lines, verdicts


def _tiktoken_note(out: Results) -> str:
    if not out.tiktoken_mb:
        return ""
    each = ", ".join(f"{name} {mb:.0f} MB" for name, mb in out.tiktoken_mb.items())
    return f"; for scale, loading one tiktoken encoding in a fresh Python costs: {each}"


def store_section(plan: Plan, out: Results) -> list[str]:
    if not out.writer_rows_per_s:
        return []
    n = plan.store_traces
    rows = [[label, spread(values)] for label, values in out.admin_ms.items()]
    return [
        "## Store",
        "",
        f"- Trace writer: {spread(out.writer_rows_per_s, 0)} rows/s "
        f"(`store.traces.insert_traces`, {plan.writer_rows:,} prebuilt rows in batches of "
        f"{BATCH_SIZE:,} (`traces.batch_size`), fresh file, WAL, synchronous=NORMAL).",
        f"- Generating {n:,} traces (5 skillbooks, ~1 KB of bodies each, batches of 50,000): "
        f"{out.generation_s:.1f} s, {n / max(out.generation_s, 1e-9):,.0f} rows/s; "
        f"file {out.store_bytes / 1024**2:,.0f} MiB ({out.store_bytes / n:,.0f} bytes per trace).",
        "",
        f"Admin API latency with skillproxy running on that file ({n:,} traces), p50 of "
        f"{plan.admin_samples} sequential requests over one keep-alive connection:",
        "",
        *table(["request", "p50 ms"], rows),
    ]


def targets_section(verdicts: Verdicts, profiled: bool) -> list[str]:
    lines = ["## Targets", ""]
    lines += [f"- {text}" for primary, text in verdicts if primary]
    further = [text for primary, text in verdicts if not primary]
    if further:
        lines += [
            "",
            "Further checks (the floor latency budget, and the Anthropic Messages and OpenAI "
            "Responses ratios to the floor):",
            "",
        ]
        lines += [f"- {text}" for text in further]
    missed = [text for primary, text in verdicts if primary and text.startswith("**MISS**")]
    total = sum(1 for primary, _ in verdicts if primary)
    summary = f"{total - len(missed)} of {total} targets met"
    if missed:
        summary += f"; {len(missed)} MISSED (marked **MISS**)"
        summary += (
            ": the profile at the end shows where the time goes"
            if profiled
            else "; rerun with `--profile` for the profile that explains it"
        )
    return [*lines, "", summary + "."]


NOTES = [
    "## Reading these figures",
    "",
    "- The load generator, the fake provider and the server under test share the machine's "
    "cores, and other work on the machine moves every figure (see the load averages above). "
    "Compare ratios measured in the same run; where a ratio sits near its threshold, check the "
    "min..max spread of both of its inputs before reading PASS or MISS as a property of the "
    "code. An A/A run (bench/README.md) shows this machine's noise band.",
    "- Latencies are against a provider that answers at once; with a real model they disappear "
    "into hundreds of milliseconds of generation.",
]


def render(plan: Plan, out: Results) -> str:
    over, over_verdicts = overhead_section(plan, out)
    mem, mem_verdicts = memory_section(plan, out)
    lines = [*header(plan, out), ""]
    scale_verdicts: Verdicts = [(True, text) for text in (out.scale.verdicts if out.scale else [])]
    verdicts = over_verdicts + mem_verdicts + scale_verdicts
    lines += [*targets_section(verdicts, out.profile is not None), ""]
    scale = scale_section(out.scale) if out.scale is not None else []
    for part in (over, mem, store_section(plan, out), scale):
        if part:
            lines += [*part, ""]
    if out.learner:
        lines += ["## Learner", ""]
        lines += [f"- {row.label}: {row.value}" for row in out.learner]
        lines.append("")
    if out.profile is not None:
        req_per_s, top = out.profile
        lines += [
            "## Profile: skillproxy, 32 clients, non-streaming",
            "",
            f"Under cProfile ({req_per_s:,.0f} req/s while profiled, so compare shares, not "
            "speeds). cProfile sees the main (event-loop) thread only, from start-up to stop, "
            "skill seeding included; the trace writer's database thread is in the CPU split "
            "above instead. A coroutine's *calls* count each time it resumes. Own time by area, "
            "then the top 25 functions by own time:",
            "",
            *top,
            "",
        ]
    return "\n".join([*lines, *NOTES, ""])
