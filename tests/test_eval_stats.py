"""The evaluation's statistics (skillproxy/eval/stats.py), against hand-computed values and
against τ²-bench's own code.

τ²'s functions run in τ²'s own virtualenv (`make tau2`), in a subprocess: its litellm cannot
share ours. When that virtualenv is missing these tests fail, since pass^k agreeing with τ² is
what lets the report put its numbers next to τ²'s.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from skillproxy.eval.stats import (
    arm_pass_hat_ks,
    compare,
    is_success,
    mcnemar_exact,
    paired_bootstrap,
    pass_hat_k,
)

ROOT = Path(__file__).resolve().parents[1]
TAU2_PYTHON = Path(os.environ.get("SKILLPROXY_TAU2_PYTHON") or ROOT / ".venv-tau2/bin/python")


def run_tau2(script: str, cwd: Path) -> Any:
    """`script` in τ²'s virtualenv; the JSON it prints on its last line."""
    assert TAU2_PYTHON.exists(), (
        f"τ²-bench's python {TAU2_PYTHON} is missing: run `make tau2`, or point "
        "SKILLPROXY_TAU2_PYTHON at a python that imports tau2"
    )
    done = subprocess.run(
        [str(TAU2_PYTHON), "-c", script], capture_output=True, text=True, cwd=cwd, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    ("reward", "success"),
    [
        (1.0, True),
        (1 - 1e-7, True),
        (1 + 1e-7, True),
        (0.999, False),
        (1 + 2e-6, False),
        (0.0, False),
    ],
)
def test_success_is_a_reward_of_one_within_tau2s_tolerance(reward: float, success: bool) -> None:
    assert is_success(reward) is success


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (4, 2, 1, 0.5),  # C(2,1)/C(4,1) = 2/4
        (4, 2, 2, 1 / 6),  # C(2,2)/C(4,2) = 1/6
        (4, 3, 2, 0.5),  # C(3,2)/C(4,2) = 3/6
        (6, 3, 3, 1 / 20),  # C(3,3)/C(6,3) = 1/20
        (5, 4, 5, 0.0),  # C(4,5) = 0: one failure and pass^n is 0
        (5, 5, 5, 1.0),
        (3, 2, 0, 1.0),  # C(2,0)/C(3,0) = 1/1, τ²'s k = 0 edge
    ],
)
def test_pass_hat_k_by_hand(n: int, c: int, k: int, expected: float) -> None:
    assert pass_hat_k(n, c, k) == pytest.approx(expected, abs=1e-15)


def test_pass_hat_k_needs_k_trials() -> None:
    with pytest.raises(ValueError, match="less than k"):
        pass_hat_k(2, 2, 3)


TAU2_GRID = """
import json
from tau2.metrics.agent_metrics import pass_hat_k
rows = []
for n in range(7):
    for c in range(n + 1):
        for k in range(n + 2):
            try:
                rows.append([n, c, k, pass_hat_k(n, c, k)])
            except ValueError:
                rows.append([n, c, k, None])
print(json.dumps(rows))
"""


def test_pass_hat_k_is_tau2s_for_every_small_case(tmp_path: Path) -> None:
    """n ≤ 6, c ≤ n, k from 0 to n + 1 (where τ² raises): the same float, or the same error."""
    rows = run_tau2(TAU2_GRID, tmp_path)
    assert len(rows) == sum((n + 1) * (n + 2) for n in range(7))
    for n, c, k, theirs in rows:
        if theirs is None:
            with pytest.raises(ValueError):
                pass_hat_k(n, c, k)
        else:
            assert pass_hat_k(n, c, k) == theirs, (n, c, k)


def test_arm_pass_hat_ks_by_hand() -> None:
    # pass^1 = mean(1/2, 2/2) = 0.75; pass^2 = mean(C(1,2)/C(2,2), C(2,2)/C(2,2)) = mean(0, 1)
    assert arm_pass_hat_ks({"a": [1.0, 0.0], "b": [1.0, 1.0]}) == {1: 0.75, 2: 0.5}


UNEVEN = {"a": [1.0, 1.0, 0.0], "b": [1.0, 1.0], "c": [0.0, 1.0, 1.0, 0.9999995]}
"""Tasks with 3, 2 and 4 trials; 0.9999995 counts as a success (within 1e-6 of 1)."""

TAU2_METRICS = """
import json, sys
import pandas as pd
from tau2.metrics.agent_metrics import compute_metrics

rewards = json.loads(sys.argv[1])


class Results:  # compute_metrics reads nothing of its Results but to_df()
    def to_df(self):
        return pd.DataFrame([
            {"task_id": task, "reward": reward, "info_num_trials": 4, "agent_cost": 0.0,
             "task_num_agent_actions": 1, "task_num_user_actions": 0, "task_num_actions": 1}
            for task, trials in rewards.items() for reward in trials
        ])


print(json.dumps(compute_metrics(Results()).pass_hat_ks))
"""


def test_arm_pass_hat_ks_with_uneven_trials_is_tau2s(tmp_path: Path) -> None:
    # k stops at the fewest trials (2); each task uses all of its own trials:
    # pass^1 = mean(2/3, 2/2, 3/4) = 29/36
    # pass^2 = mean(C(2,2)/C(3,2), C(2,2)/C(2,2), C(3,2)/C(4,2)) = mean(1/3, 1, 1/2) = 11/18
    ours = arm_pass_hat_ks(UNEVEN)
    assert ours == pytest.approx({1: 29 / 36, 2: 11 / 18}, abs=1e-15)
    theirs = run_tau2(TAU2_METRICS.replace("sys.argv[1]", repr(json.dumps(UNEVEN))), tmp_path)
    assert {int(k): v for k, v in theirs.items()} == pytest.approx(ours, abs=1e-12)


def test_arm_pass_hat_ks_refuses_no_tasks_and_tasks_without_trials() -> None:
    with pytest.raises(ValueError, match="no tasks"):
        arm_pass_hat_ks({})
    with pytest.raises(ValueError, match="t9"):
        arm_pass_hat_ks({"t1": [1.0], "t9": []})


def discordant(
    a_only: int, b_only: int, both: int = 0, neither: int = 0
) -> tuple[dict[str, bool], dict[str, bool]]:
    """Two arms' per-task successes with these counts of each kind of task."""
    kinds = [(True, False)] * a_only + [(False, True)] * b_only
    kinds += [(True, True)] * both + [(False, False)] * neither
    return (
        {f"t{i}": a for i, (a, _) in enumerate(kinds)},
        {f"t{i}": b for i, (_, b) in enumerate(kinds)},
    )


@pytest.mark.parametrize(
    ("a_only", "b_only", "p"),
    [
        (6, 1, 0.125),  # n = 7: 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128
        (1, 6, 0.125),  # the same test the other way round
        (5, 0, 0.0625),  # 2 * C(5,0) / 2^5 = 2 / 32
        (6, 2, 0.2890625),  # 2 * (1 + 8 + 28) / 2^8 = 74 / 256
        (3, 3, 1.0),  # 2 * (1 + 6 + 15 + 20) / 64 = 84/64, capped at 1
        (0, 0, 1.0),  # never disagree: nothing to test
    ],
)
def test_mcnemar_exact_on_known_tables(a_only: int, b_only: int, p: float) -> None:
    a, b = discordant(a_only, b_only, both=4, neither=3)  # concordant tasks must not matter
    result = mcnemar_exact(a, b)
    assert (result.a_only, result.b_only) == (a_only, b_only)
    assert result.p_value == p


def test_mcnemar_refuses_different_tasks() -> None:
    with pytest.raises(ValueError, match=r"only in the first: t2; only in the second: t3"):
        mcnemar_exact({"t1": True, "t2": True}, {"t1": False, "t3": True})


A = {"t1": 1.0, "t2": 0.5, "t3": 0.0, "t4": 1.0}
B = {"t1": 0.0, "t2": 0.5, "t3": 0.0, "t4": 0.5}


def test_bootstrap_delta_is_the_mean_paired_difference_and_its_ci_holds_it() -> None:
    # a - b per task: 1, 0, 0, 0.5 -> delta = 1.5 / 4
    result = paired_bootstrap(A, B, resamples=2000, seed=7)
    assert result.delta == 0.375
    lo, hi = result.ci95
    # every resampled mean lies between the smallest and the largest difference
    assert 0.0 <= lo <= result.delta <= hi <= 1.0
    assert 0 < result.p_value <= 1
    assert (result.resamples, result.tasks) == (2000, 4)


def test_bootstrap_is_deterministic_for_a_seed_whatever_the_order_of_tasks() -> None:
    first = paired_bootstrap(A, B, resamples=500, seed=3)
    assert paired_bootstrap(A, B, resamples=500, seed=3) == first
    reversed_a, reversed_b = dict(reversed(A.items())), dict(reversed(B.items()))
    assert paired_bootstrap(reversed_a, reversed_b, resamples=500, seed=3) == first
    assert paired_bootstrap(A, B, resamples=500, seed=4).delta == first.delta


def test_bootstrap_of_identical_arms_finds_nothing() -> None:
    result = paired_bootstrap(A, dict(A), resamples=1000)
    assert (result.delta, result.ci95, result.p_value) == (0.0, (0.0, 0.0), 1.0)


def test_bootstrap_p_value_is_never_zero() -> None:
    # every task gains 1, so every resampled delta is 1: none is <= 0, all are >= 0,
    # p = 2 * min(0 + 1, 999 + 1) / (999 + 1) = 0.002
    result = paired_bootstrap({"t1": 1.0, "t2": 1.0}, {"t1": 0.0, "t2": 0.0}, resamples=999)
    assert (result.delta, result.ci95) == (1.0, (1.0, 1.0))
    assert result.p_value == pytest.approx(0.002, abs=1e-15)


def test_bootstrap_refuses_different_or_no_tasks() -> None:
    with pytest.raises(ValueError, match="only in the first: t4; only in the second: t5"):
        paired_bootstrap(A, {**{t: B[t] for t in ("t1", "t2", "t3")}, "t5": 0.0})
    with pytest.raises(ValueError, match="no tasks"):
        paired_bootstrap({}, {})


ARM: dict[str, Sequence[float]] = {
    "t1": [1.0, 1.0, 0.0],  # 2 of 3: more than half
    "t2": [1.0, 0.0, 0.0],  # 1 of 3
    "t3": [1.0, 1.0, 1.0],
    "t4": [0.0, 0.0, 0.0],
}
AGAINST: dict[str, Sequence[float]] = {
    "t1": [1.0, 0.0, 0.0],
    "t2": [1.0, 1.0, 0.0],
    "t3": [1.0, 1.0, 0.0],
    "t4": [0.0, 0.0, 0.0],
}
ENTRY_KEYS = {
    "arm", "against", "metric", "k", "delta", "ci95", "p_value", "p_value_bootstrap", "method",
    "tasks",
}  # fmt: skip


def test_compare_pass_hat_1() -> None:
    entry = compare("learned", "placebo", ARM, AGAINST, "pass_hat_1", resamples=2000)
    assert set(entry) == {*ENTRY_KEYS, "discordant"}
    assert entry["k"] == 1
    boot = paired_bootstrap(
        {t: sum(map(is_success, r)) / len(r) for t, r in ARM.items()},
        {t: sum(map(is_success, r)) / len(r) for t, r in AGAINST.items()},
        resamples=2000,
    )
    assert entry["p_value_bootstrap"] == boot.p_value
    assert (entry["arm"], entry["against"], entry["metric"]) == ("learned", "placebo", "pass_hat_1")
    # per task 2/3 - 1/3, 1/3 - 2/3, 1 - 2/3, 0 - 0 -> delta = (1/3) / 4
    assert entry["delta"] == pytest.approx(1 / 12, abs=1e-15)
    lo, hi = entry["ci95"]
    assert lo <= entry["delta"] <= hi
    # success = more than half: the arm on t1 and t3, the other on t2 and t3; n = 2,
    # p = min(1, 2 * (C(2,0) + C(2,1)) / 2^2) = 1
    assert entry["discordant"] == {"arm_only": 1, "against_only": 1}
    assert entry["p_value"] == 1.0
    assert entry["tasks"] == 4
    assert "2,000 resamples" in entry["method"]
    assert "McNemar" in entry["method"] and "more than half" in entry["method"]


def test_compare_pass_hat_k_takes_k_from_the_trials() -> None:
    entry = compare("learned", "placebo", ARM, AGAINST, "pass_hat_k", resamples=2000)
    # k = 3: only the arm's t3 passes all three -> per task 0, 0, 1, 0 -> delta 1/4
    assert entry["delta"] == 0.25
    assert entry["discordant"] == {"arm_only": 1, "against_only": 0}
    # McNemar's p (2 * C(1,0) / 2^1 = 1), not the bootstrap's: 3 of 4 tasks give 0
    assert entry["p_value"] == 1.0
    assert "pass^3" in entry["method"] and "all 3 trials" in entry["method"]
    assert compare("learned", "placebo", ARM, AGAINST, "pass_hat_3", resamples=2000) == {
        **entry,
        "metric": "pass_hat_3",
    }


def test_compare_pass_hat_2() -> None:
    entry = compare("learned", "placebo", ARM, AGAINST, "pass_hat_2", resamples=2000)
    # C(c,2)/C(3,2): arm 1/3, 0, 1, 0; other 0, 1/3, 1/3, 0 -> diffs 1/3, -1/3, 2/3, 0
    assert entry["delta"] == pytest.approx(1 / 6, abs=1e-15)
    assert entry["discordant"] == {"arm_only": 1, "against_only": 0}  # above 1/2: t3 only


def test_compare_refuses_unknown_metrics_too_large_k_and_different_tasks() -> None:
    for metric in ("pass@1", "pass_hat_0", "pass_hat_", "avg_reward"):
        with pytest.raises(ValueError, match="unknown metric"):
            compare("a", "b", ARM, AGAINST, metric)
    with pytest.raises(ValueError, match="less than k"):
        compare("a", "b", ARM, AGAINST, "pass_hat_4")
    with pytest.raises(ValueError, match="only in the first: t4"):
        compare("a", "b", ARM, {t: AGAINST[t] for t in ("t1", "t2", "t3")}, "pass_hat_1")
