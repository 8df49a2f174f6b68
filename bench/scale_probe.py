"""Data at scale for RESULTS.md: `bench/data_scale.py` run as it is, its figures collected.

It builds 1M traces and 10,000 skills (~7 GB in a temporary folder, ~10 min); in a quick run
20,000 traces and 500 skills. Its last line carries the figures as JSON; the report is built
from those, so the targets read the same here as in its own output.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from procs import BENCH, ROOT, run_script
from report import table, verdict

SCRIPT = BENCH / "data_scale.py"
QUICK_ARGS = ["--traces", "20000", "--skills", "500", "--repeat", "5"]
MARK = "summary: "
"""data_scale.py's last line starts with it and carries the figures as JSON."""


@dataclass
class ScaleResult:
    command: str
    summary: dict[str, Any] | None = None
    failure: str = ""
    verdicts: list[str] = field(default_factory=list)


def run(quick: bool, timeout: float) -> ScaleResult:
    argv = [sys.executable, str(SCRIPT), *(QUICK_ARGS if quick else [])]
    command = "python " + " ".join(argv[1:]).replace(str(ROOT) + "/", "")
    marked, failure = run_script(argv, timeout, keep=lambda line: line.startswith(MARK))
    if failure is not None:
        return ScaleResult(command, failure=failure)
    result = ScaleResult(command, summary=json.loads(marked[-1][len(MARK) :]))
    result.verdicts = verdicts(result.summary or {})
    return result


def verdicts(summary: dict[str, Any]) -> list[str]:
    grouping, traces = summary["grouping"], summary["traces"]
    rate, peak = grouping["traces_per_s"], grouping["peak_rss_mb"]
    per_s, mb, ms = (
        summary["grouping_target_per_s"],
        summary["grouping_target_mb"],
        summary["call_target_ms"],
    )
    targeted = [(name, p50) for name, p50, _, aimed in summary["calls"] if aimed]
    slowest = max(targeted, key=lambda item: item[1])
    calls_ok = all(p50 <= ms for _, p50 in targeted)
    return [
        verdict(
            rate >= per_s,
            f"episode grouping over {traces:,} traces: {rate:,} traces/s (target >= {per_s:,})",
        ),
        verdict(peak <= mb, f"episode grouping's peak RSS {peak} MB (target <= {mb:.0f} MB)"),
        verdict(
            calls_ok,
            f"the review page's {len(targeted)} admin calls at {traces:,} traces and "
            f"{summary['skills']:,} skills: slowest p50 {slowest[1]:.1f} ms, {slowest[0]} "
            f"(target <= {ms:.0f} ms each)",
        ),
    ]


def section(result: ScaleResult) -> list[str]:
    lines = ["## Data at scale", ""]
    if result.summary is None:
        return [*lines, f"`{result.command}` {result.failure}."]
    summary, grouping = result.summary, result.summary["grouping"]
    lines += [
        f"`{result.command}`: {summary['traces']:,} synthetic conversational traces over four "
        f"models and {summary['skills']:,} skills with three evidence traces each, in a "
        "temporary SQLite file (mechanics figures, not a user's data). Grouping runs in a "
        "process of its own, so its peak RSS is the grouping's alone.",
        "",
        f"- Episode grouping: {grouping['grouped']:,} traces into {grouping['episodes']:,} "
        f"episodes in {grouping['seconds']} s, {grouping['traces_per_s']:,} traces/s, peak RSS "
        f"{grouping['peak_rss_mb']} MB.",
        "",
    ]
    rows = [
        [name, f"{p50:.1f}", f"{p95:.1f}", "yes" if aimed else "no"]
        for name, p50, p95, aimed in summary["calls"]
    ]
    return [*lines, *table(["admin call", "p50 ms", "p95 ms", "a target"], rows)]
