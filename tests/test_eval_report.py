"""The τ²-bench report (skillproxy/eval/report.py): its schema, its checks against τ²'s
numbers, and the files it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from skillproxy.eval.report import ArmResult, build_report, write_report

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPTED = {"agent": "scripted-agent", "user": "scripted-user", "reflector": "", "scripted": True}
REAL = {"agent": "openai/gpt-4.1-mini", "user": "openai/gpt-4.1", "reflector": "openai/gpt-4.1"}
LEARNING = {
    "episodes": 12,
    "skills": [{"id": "sk-1", "text": "Check the fare class first.", "evidence": ["e1", "e2"]}],
    "tokens": 4321,
    "cost_usd": 0.25,
}
ARMS = {
    # pass^1 = mean(1/2, 0, 1) = 1/2; pass^2 = mean(0, 0, 1) = 1/3; avg reward 3/6
    "baseline": ArmResult({"t1": [1.0, 0.0], "t2": [0.0, 0.0], "t3": [1.0, 1.0]}, 100, 0.01),
    # pass^1 = mean(1, 1/2, 1) = 5/6; pass^2 = mean(1, 0, 1) = 2/3; avg reward 5/6
    "learned": ArmResult({"t1": [1.0, 1.0], "t2": [1.0, 0.0], "t3": [1.0, 1.0]}, 200, 0.02),
    # pass^1 = mean(1/2, 0, 1/2) = 1/3 (0.5 is no success); pass^2 = 0; avg reward 2.5/6
    "placebo": ArmResult({"t1": [1.0, 0.0], "t2": [0.0, 0.0], "t3": [1.0, 0.5]}, 300, 0.03),
    "noop": ArmResult({"t1": [0.0, 0.0], "t2": [0.0, 0.0], "t3": [0.0, 0.0]}, 0, 0.0),
}
PAIRS = [("learned", "baseline"), ("learned", "placebo"), ("baseline", "noop"), ("learned", "x")]


def report(**changes: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "models": SCRIPTED,
        "domain": "airline",
        "split": "test",
        "arms": ARMS,
        "learning": LEARNING,
        "comparisons": PAIRS,
        "resamples": 1000,
    }
    return build_report(**{**settings, **changes})


def test_report_schema() -> None:
    built = report()
    assert set(built) == {
        "models",
        "domain",
        "split",
        "arms",
        "comparisons",
        "learning",
        "headline",
    }
    assert built["models"] == SCRIPTED
    assert (built["domain"], built["split"], built["learning"]) == ("airline", "test", LEARNING)
    assert list(built["arms"]) == ["baseline", "learned", "placebo", "noop"]
    baseline = built["arms"]["baseline"]
    assert set(baseline) == {
        "pass_hat_k", "avg_reward", "tasks", "trials", "tokens", "agent_tokens", "user_tokens",
        "cost_usd",
    }  # fmt: skip
    assert baseline["pass_hat_k"] == pytest.approx({"1": 1 / 2, "2": 1 / 3}, abs=1e-15)
    assert built["arms"]["learned"]["pass_hat_k"] == pytest.approx({"1": 5 / 6, "2": 2 / 3})
    assert built["arms"]["placebo"]["pass_hat_k"] == pytest.approx({"1": 1 / 3, "2": 0.0})
    assert built["arms"]["placebo"]["avg_reward"] == pytest.approx(2.5 / 6, abs=1e-15)
    assert (baseline["tasks"], baseline["trials"], baseline["tokens"]) == (3, 2, 100)
    assert baseline["cost_usd"] == 0.01
    json.dumps(built)  # JSON-ready as it is


def test_comparisons_cover_both_metrics_of_every_pair_that_ran() -> None:
    entries = report()["comparisons"]
    # ("learned", "x") is left out: no arm x ran
    assert [(c["arm"], c["against"], c["metric"]) for c in entries] == [
        (arm, against, metric)
        for arm, against in PAIRS[:3]
        for metric in ("pass_hat_1", "pass_hat_k")
    ]
    learned_placebo = entries[2]
    # per-task pass^1: learned 1, 1/2, 1; placebo 1/2, 0, 1/2 -> delta = mean(1/2, 1/2, 1/2)
    assert learned_placebo["delta"] == 0.5
    # more than half succeeded: learned on t1, t3; placebo on none -> p = 2 * C(2,0) / 2^2
    assert learned_placebo["discordant"] == {"arm_only": 2, "against_only": 0}
    assert learned_placebo["p_value"] == 0.5


def test_headline_is_learned_against_placebo_on_pass_hat_1() -> None:
    built = report()
    assert built["headline"] == built["comparisons"][2]
    # still there when the pair was not asked for among the comparisons
    assert report(comparisons=[])["headline"] == built["headline"]
    without_placebo = {name: arm for name, arm in ARMS.items() if name != "placebo"}
    assert report(arms=without_placebo)["headline"] is None


def test_trials_is_the_fewest_of_any_task() -> None:
    uneven = ArmResult({"t1": [1.0, 1.0, 1.0], "t2": [1.0, 0.0]}, 0, 0.0)
    arm = report(arms={"baseline": uneven}, comparisons=[])["arms"]["baseline"]
    assert arm["trials"] == 2
    # pass^2 = mean(C(3,2)/C(3,2), C(1,2)/C(2,2)) = mean(1, 0); avg reward over runs = 4/5
    assert arm["pass_hat_k"] == {"1": 0.75, "2": 0.5}
    assert arm["avg_reward"] == 0.8


def test_tau2s_numbers_are_shown_when_they_agree() -> None:
    theirs = {"baseline": {1: 0.5 + 1e-12, 2: 1 / 3}}
    built = report(tau2_pass_hat_k=theirs)
    assert built["arms"]["baseline"]["pass_hat_k"] == {"1": 0.5 + 1e-12, "2": 1 / 3}
    assert built["arms"]["learned"]["pass_hat_k"] == pytest.approx({"1": 5 / 6, "2": 2 / 3})


@pytest.mark.parametrize(
    ("theirs", "message"),
    [
        ({"baseline": {1: 0.5 + 1e-6, 2: 1 / 3}}, "pass\\^1 is"),
        ({"baseline": {1: 0.5}}, "τ² computed pass\\^k for k in \\[1\\]"),
        ({"ghost": {1: 0.5}}, "did not run: ghost"),
    ],
)
def test_a_disagreement_with_tau2_is_refused(
    theirs: dict[str, dict[int, float]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        report(tau2_pass_hat_k=theirs)


def test_arms_on_different_tasks_are_not_compared() -> None:
    short = ArmResult({"t1": [1.0, 1.0], "t2": [1.0, 0.0]}, 0, 0.0)
    with pytest.raises(ValueError, match="only in the second: t3"):
        report(arms={**ARMS, "learned": short})


def test_models_must_say_whether_they_were_scripted() -> None:
    with pytest.raises(ValueError, match="scripted"):
        report(models=REAL)
    with pytest.raises(ValueError, match="True or False"):
        report(models={**REAL, "scripted": "no"})


def written(tmp_path: Path, **changes: Any) -> tuple[dict[str, Any], list[Path]]:
    built = report(**changes)
    return built, write_report(tmp_path / "out" / "run", built)


def test_write_report_writes_json_markdown_and_pngs(tmp_path: Path) -> None:
    built, paths = written(tmp_path)
    out = tmp_path / "out" / "run"
    assert paths == [out / n for n in ("report.json", "report.md", "pass_hat_k.png", "deltas.png")]
    assert json.loads(paths[0].read_text("utf-8")) == built
    for png in paths[2:]:
        assert png.read_bytes().startswith(PNG_SIGNATURE)


def test_markdown_of_a_scripted_run(tmp_path: Path) -> None:
    _, paths = written(tmp_path)
    lines = paths[1].read_text("utf-8").splitlines()
    assert lines[0] == (
        "# τ²-bench airline (test split): "
        "SCRIPTED models — this checks the mechanics, not learning quality"
    )
    text = "\n".join(lines)
    assert "- agent: `scripted-agent`" in text and "- reflector: none" in text
    assert "| baseline | 0.500 | 0.333 | 0.500 | 3 | 2 | 100 | $0.0100 |" in text
    # the headline: learned - placebo, McNemar p = 0.5
    assert "Δ pass^1 = +0.500" in text and "p = 0.5," in text
    assert "Not significant at 0.05" in text
    assert "`sk-1` (evidence: 2): Check the fare class first." in text
    assert "Learning: 12 episodes, 4,321 tokens, $0.2500." in text


def test_markdown_of_a_real_run_with_a_significant_headline(tmp_path: Path) -> None:
    # 6 tasks the learned arm passes and the placebo fails: McNemar p = 2 * C(6,0) / 2^6 =
    # 0.03125, and every resampled delta is 1, so the CI is [1, 1]
    tasks = [f"t{i}" for i in range(6)]
    arms = {
        "learned": ArmResult({t: [1.0] for t in tasks}, 0, 0.0),
        "placebo": ArmResult({t: [0.0] for t in tasks}, 0, 0.0),
    }
    _, paths = written(tmp_path, models={**REAL, "scripted": False}, arms=arms)
    text = paths[1].read_text("utf-8")
    assert text.splitlines()[0] == "# τ²-bench airline (test split): real models"
    assert "p = 0.0312" in text and "95% CI [+1.000, +1.000]" in text
    assert "Significant at 0.05: the learned skills did better than the placebo." in text
    assert "not significant" not in text.lower() and "scripted" not in text.lower()


def test_importing_the_report_leaves_matplotlib_out() -> None:
    """Building a report must not cost matplotlib's import; only drawing does."""
    code = "import sys, skillproxy.eval.report; print('matplotlib' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "False"
