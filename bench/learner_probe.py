"""The learner's figures come from its own scripts, run as they are; this only collects them.

`bench/episodes.py` (episodes grouped per second over 100k traces) is run as a subprocess with
its own defaults (in quick mode with `--quick`, or else `--traces 10000`, when it offers the
flag), and its last output line is the figure. `bench/learner_cost.py` is named here so its
row is visibly missing until it exists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass

from procs import BENCH, ROOT, run_script

EPISODES = BENCH / "episodes.py"
LEARNER_COST = BENCH / "learner_cost.py"
QUICK_TRACES = 10_000


@dataclass(frozen=True)
class LearnerRow:
    label: str
    value: str


def _runnable(path_text: str) -> bool:
    return bool(re.search(r"^def main\(", path_text, re.MULTILINE)) and "__main__" in path_text


def _run(label: str, script: str, quick: bool, timeout: float) -> LearnerRow:
    path = BENCH / script
    if not path.exists():
        return LearnerRow(label, f"measured by bench/{script} (not yet present)")
    if not _runnable(path.read_text(errors="replace")):
        return LearnerRow(label, f"bench/{script} exists but has no main() to run")
    argv = [sys.executable, str(path)]
    if quick:
        helped = subprocess.run(
            [*argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        if "--quick" in helped.stdout:
            argv.append("--quick")
        elif "--traces" in helped.stdout:
            argv += ["--traces", str(QUICK_TRACES)]
    lines, failure = run_script(argv, timeout)
    if failure is not None:
        return LearnerRow(label, f"bench/{script} {failure}")
    shown = " ".join(argv[1:]).replace(str(ROOT) + "/", "")
    return LearnerRow(label, f"{lines[-1].strip()} (`python {shown}`)")


def rows(quick: bool, timeout: float) -> list[LearnerRow]:
    return [
        _run("episode grouping (bench/episodes.py)", EPISODES.name, quick, timeout),
        _run("learner tokens per reflected episode", LEARNER_COST.name, quick, timeout),
    ]
