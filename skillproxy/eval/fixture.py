"""τ²-bench, reached through its own virtualenv: find it, describe a domain, run simulations.

τ² pins a litellm older than the proxy's, so it lives in `.venv-tau2` (`make tau2`) and runs
`tau2_worker.py` there as a subprocess; this module is the main process's side of that
conversation (files, argv and `PROGRESS` lines on stdout). A missing or broken fixture is
reported before any model is called.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("tau2_worker.py")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO / ".venv-tau2"
PYTHON_ENV = "SKILLPROXY_TAU2_PYTHON"
FIX = "run `make tau2` in the skillproxy checkout (it builds .venv-tau2), or set " + PYTHON_ENV


class FixtureError(RuntimeError):
    """τ²-bench cannot be used; the message names the fix."""


@dataclass(frozen=True)
class Domain:
    name: str
    splits: Mapping[str, list[str]]
    tasks_path: Path
    policy_path: Path
    version: str


def tau2_python() -> Path:
    """The τ² virtualenv's interpreter: $SKILLPROXY_TAU2_PYTHON, else the checkout's .venv-tau2."""
    given = os.environ.get(PYTHON_ENV)
    path = Path(given) if given else DEFAULT_VENV / "bin" / "python"
    if not path.exists():
        raise FixtureError(f"τ²-bench is not installed ({path} is missing): {FIX}")
    return path


def worker_env() -> dict[str, str]:
    """The worker's environment: no network for litellm's cost map, and never a base URL that
    litellm would apply to the user simulator as well as the agent."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "OPENAI_API_BASE")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def describe(domain: str) -> Domain:
    python = tau2_python()
    try:
        done = subprocess.run(
            [str(python), str(WORKER), "describe", "--domain", domain],
            capture_output=True,
            text=True,
            timeout=120,
            env=worker_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FixtureError(f"τ²-bench at {python} did not answer ({exc}): {FIX}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise FixtureError(f"τ²-bench at {python} failed: {last}; {FIX}")
    try:
        info = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise FixtureError(f"τ²-bench at {python} answered with no JSON; {FIX}") from None
    return Domain(
        name=domain,
        splits=info["splits"],
        tasks_path=Path(info["tasks_path"]),
        policy_path=Path(info["policy_path"]),
        version=info["tau2_version"],
    )


def run_simulations(
    spec: Mapping[str, Any],
    spec_path: Path,
    on_progress: Callable[[dict[str, Any]], None],
    log_path: Path,
) -> None:
    """Run the spec's simulations in the worker; `on_progress` sees each finished one and may
    raise to stop the run (a cost cap), which stops the worker and the processes it forked
    (finished simulations stay in the spec's `out`)."""
    spec_path.write_text(json.dumps(spec, indent=2))
    with log_path.open("a") as log:
        worker = subprocess.Popen(
            [str(tau2_python()), str(WORKER), "run", "--spec", str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=worker_env(),
            start_new_session=True,  # its own process group: its forked simulations stop with it
        )
        assert worker.stdout is not None
        try:
            for line in worker.stdout:
                if line.startswith("PROGRESS "):
                    on_progress(json.loads(line[len("PROGRESS ") :]))
        except BaseException:
            stop_group(worker)
            raise
        if worker.wait() != 0:
            raise FixtureError(
                f"τ²-bench's simulations failed (exit {worker.returncode}); see {log_path}"
            )


def stop_group(worker: subprocess.Popen[str]) -> None:
    """SIGTERM to the worker's whole process group, then SIGKILL to what is left after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(worker.pid, sig)
        except ProcessLookupError:
            break
        try:
            worker.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):  # the worker is gone; its children?
            os.killpg(worker.pid, signal.SIGKILL)
        break


def tau2_metrics(results: Path, k: int) -> dict[str, Any]:
    """pass^k and the mean reward of one results file, computed by τ²'s own code."""
    done = subprocess.run(
        [str(tau2_python()), str(WORKER), "metrics", "--results", str(results), "--k", str(k)],
        capture_output=True,
        text=True,
        timeout=300,
        env=worker_env(),
    )
    if done.returncode != 0:
        raise FixtureError(f"τ²-bench's metrics failed: {done.stderr.strip()[-500:]}")
    metrics: dict[str, Any] = json.loads(done.stdout)
    return metrics


def read_results(path: Path) -> list[dict[str, Any]]:
    """The simulations of one results file, one row per (task, trial): a retried one's last
    attempt. A torn last line (a kill mid-write) is ignored; the worker rewrites it."""
    if not path.exists():
        return []
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[(str(row["task_id"]), int(row["trial"]))] = row
    return list(rows.values())
