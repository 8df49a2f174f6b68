"""The evaluation's numbers: τ²-bench's pass^k, and paired tests between two arms.

pass^k follows τ²-bench's own code to the letter (`tau2.metrics.agent_metrics`), so an arm's
score here is the score τ² would print. Arms are compared task by task: every arm runs the same
tasks with the same seeds, so pairing by task removes the spread between easy and hard tasks,
which is far larger than any effect a skill can have. Stdlib only: the report must not need
numpy to be rebuilt.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

SUCCESS_TOLERANCE = 1e-6
"""τ²'s `is_successful`: a reward counts as a success within this of 1.0."""


def is_success(reward: float) -> bool:
    """τ²'s rule: rewards are floats summed from several checks, so 1.0 is matched loosely."""
    return (1 - SUCCESS_TOLERANCE) <= reward <= (1 + SUCCESS_TOLERANCE)


def pass_hat_k(num_trials: int, success_count: int, k: int) -> float:
    """The chance that k trials drawn without replacement from a task's n all succeed,
    C(c, k) / C(n, k); τ²'s own function, edge cases included (k = 0 gives 1.0)."""
    if num_trials < k:
        raise ValueError(f"Number of trials {num_trials} is less than k {k}.")
    return math.comb(success_count, k) / math.comb(num_trials, k)


def arm_pass_hat_ks(rewards: Mapping[str, Sequence[float]]) -> dict[int, float]:
    """pass^k for k = 1..(fewest trials of any task), the mean over tasks, as τ²'s
    `compute_metrics` does: each task's pass^k uses all of its own trials, and k stops at the
    smallest count so that every task has a value."""
    max_k = trials_per_task(rewards)
    return {k: fmean(_task_pass_hat_ks(rewards, k).values()) for k in range(1, max_k + 1)}


def trials_per_task(rewards: Mapping[str, Sequence[float]]) -> int:
    """The fewest trials of any task: the largest k pass^k is defined for on every task."""
    if not rewards:
        raise ValueError("no tasks: pass^k needs at least one task's rewards")
    empty = sorted(task for task, trials in rewards.items() if not trials)
    if empty:
        raise ValueError(f"tasks without a single trial: {', '.join(empty)}")
    return min(len(trials) for trials in rewards.values())


def _task_pass_hat_ks(rewards: Mapping[str, Sequence[float]], k: int) -> dict[str, float]:
    return {
        task: pass_hat_k(len(trials), sum(map(is_success, trials)), k)
        for task, trials in rewards.items()
    }


@dataclass(frozen=True)
class BootstrapResult:
    delta: float
    ci95: tuple[float, float]
    p_value: float
    resamples: int
    tasks: int


def paired_bootstrap(
    a: Mapping[str, float], b: Mapping[str, float], resamples: int = 10_000, seed: int = 0
) -> BootstrapResult:
    """mean(a - b) over tasks, with a percentile 95% interval from resampling tasks with
    replacement. The p-value is two-sided and read off the same resampled deltas:
    2 * min((#{δ* ≤ 0} + 1) / (B + 1), (#{δ* ≥ 0} + 1) / (B + 1)), capped at 1; so it is below
    0.05 about when the interval leaves out 0, and never 0 (B resamples cannot rule out more).
    Tasks are taken in sorted order, so a seed gives one answer whatever the mappings' order."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    diffs = [a[task] - b[task] for task in paired_tasks(a, b)]
    rng = random.Random(seed)
    # fmean sums exactly, so a resample whose gains and losses cancel gives exactly 0.0.
    deltas = sorted(fmean(rng.choices(diffs, k=len(diffs))) for _ in range(resamples))
    at_most_0 = sum(d <= 0 for d in deltas)
    at_least_0 = sum(d >= 0 for d in deltas)
    tail = min(at_most_0 + 1, at_least_0 + 1) / (resamples + 1)
    return BootstrapResult(
        delta=fmean(diffs),
        ci95=(_percentile(deltas, 0.025), _percentile(deltas, 0.975)),
        p_value=min(1.0, 2 * tail),
        resamples=resamples,
        tasks=len(diffs),
    )


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def paired_tasks(a: Mapping[str, object], b: Mapping[str, object]) -> list[str]:
    """The shared task ids, sorted; a pairing over different tasks would compare different
    questions, so any difference in the sets is refused, naming the tasks."""
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or only_b:
        raise ValueError(
            "the two arms ran different tasks: "
            f"only in the first: {', '.join(only_a) or '(none)'}; "
            f"only in the second: {', '.join(only_b) or '(none)'}"
        )
    if not a:
        raise ValueError("no tasks to compare")
    return sorted(a)


@dataclass(frozen=True)
class McNemarResult:
    b_only: int
    a_only: int
    p_value: float


def mcnemar_exact(a: Mapping[str, bool], b: Mapping[str, bool]) -> McNemarResult:
    """Exact two-sided McNemar: only tasks where the arms disagree say which is better, and
    under no difference each such task is a fair coin, so p is a binomial test with p = 1/2,
    min(1, 2 * Σ_{i ≤ min(n01, n10)} C(n, i) / 2^n); 1.0 when they never disagree."""
    tasks = paired_tasks(a, b)
    a_only = sum(a[t] and not b[t] for t in tasks)
    b_only = sum(b[t] and not a[t] for t in tasks)
    n = a_only + b_only
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))
    p_value = 1.0 if n == 0 else min(1.0, 2 * tail / 2**n)
    return McNemarResult(b_only=b_only, a_only=a_only, p_value=p_value)


_METRIC = re.compile(r"pass_hat_(k|[1-9][0-9]*)")


def metric_k(metric: str, trials: int) -> int:
    """The k a metric name asks for: `pass_hat_<int>`, or `pass_hat_k` for k = the trials per
    task (the strictest pass^k the run can measure)."""
    match = _METRIC.fullmatch(metric)
    if match is None:
        raise ValueError(f"unknown metric {metric!r}: use pass_hat_1, pass_hat_k or pass_hat_<k>")
    return trials if match.group(1) == "k" else int(match.group(1))


def compare(
    arm: str,
    against: str,
    rewards_a: Mapping[str, Sequence[float]],
    rewards_b: Mapping[str, Sequence[float]],
    metric: str,
    resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """One comparison of the report: `arm` minus `against` on per-task pass^k.

    Δ and its interval come from the paired bootstrap on the per-task values; the p-value from
    exact McNemar on per-task success, which is pass^k above 1/2: for k = 1, more than half of
    the trials succeeded; for k = the trials, all of them did. Two tests, because the bootstrap
    sizes the effect while McNemar stays exact on the few tasks a run usually has. McNemar sees
    only tasks that cross the 1/2 line (1/4 → 2/4 is no change to it), so the bootstrap's own
    two-sided p-value is given beside it (`p_value_bootstrap`)."""
    paired_tasks(rewards_a, rewards_b)
    k = metric_k(metric, min(trials_per_task(rewards_a), trials_per_task(rewards_b)))
    values_a, values_b = _task_pass_hat_ks(rewards_a, k), _task_pass_hat_ks(rewards_b, k)
    boot = paired_bootstrap(values_a, values_b, resamples=resamples, seed=seed)
    mcnemar = mcnemar_exact(_succeeded(values_a), _succeeded(values_b))
    exactly_k = all(len(t) == k for t in [*rewards_a.values(), *rewards_b.values()])
    return {
        "arm": arm,
        "against": against,
        "metric": metric,
        "k": k,
        "delta": boot.delta,
        "ci95": list(boot.ci95),
        "p_value": mcnemar.p_value,
        "p_value_bootstrap": boot.p_value,
        "method": _method(k, exactly_k, resamples),
        "tasks": boot.tasks,
        "discordant": {"arm_only": mcnemar.a_only, "against_only": mcnemar.b_only},
    }


def _succeeded(values: Mapping[str, float]) -> dict[str, bool]:
    return {task: value > 0.5 for task, value in values.items()}


def _method(k: int, exactly_k: bool, resamples: int) -> str:
    if k == 1:
        success = "more than half of trials"
    else:
        success = f"all {k} trials" if exactly_k else f"pass^{k} above 1/2"
    return (
        f"paired bootstrap over tasks of per-task pass^{k} ({resamples:,} resamples, percentile "
        f"95% CI); exact McNemar on per-task success ({success})"
    )
