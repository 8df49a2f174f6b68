"""`skillproxy eval tau2`, end to end on scripted models.

Covers skillproxy/eval/harness.py, skillproxy/eval/plan.py, skillproxy/eval/fixture.py,
skillproxy/eval/services.py, skillproxy/eval/placebo.py, skillproxy/eval/checks.py and
skillproxy/eval/cli.py.

The run is real: τ²-bench's orchestrator, user simulator and evaluator in `.venv-tau2`, a
`skillproxy serve` and `skillproxy learn` on loopback, the scripted models' server. Only the
models are scripted, so these figures check the mechanics, never learning quality.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from skillproxy.eval.fixture import Domain, read_results
from skillproxy.eval.harness import CostCapReached, Harness
from skillproxy.eval.placebo import choose, foreign, policy_sentences
from skillproxy.eval.plan import PlanError, make_plan
from skillproxy.eval.scripted import FAILURE_MODES
from store import open_store

ROOT = Path(__file__).resolve().parents[1]
TAU2_PYTHON = Path(os.environ.get("SKILLPROXY_TAU2_PYTHON", ROOT / ".venv-tau2/bin/python"))
ARMS = ("baseline", "learned", "placebo", "noop")
TRIALS = 2
TASKS = 6
"""Of each split, for the suite's time; `make eval-offline` runs every task."""
FULL = ("--scripted", "--domain", "airline", "--tasks", str(TASKS), "--trials", str(TRIALS),
        "--arms", ",".join(ARMS))  # fmt: skip


def eval_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "skillproxy", "eval", "tau2", "--out", str(out), *extra]


def run_eval(
    out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        eval_command(out, *extra), capture_output=True, text=True, timeout=900, env=env, cwd=ROOT
    )


def require_tau2() -> None:
    assert TAU2_PYTHON.exists(), (
        f"τ²-bench's virtualenv is missing ({TAU2_PYTHON}): run `make tau2`"
    )


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """Six airline tasks of each split, two trials, four arms: the pipeline `make eval` runs."""
    require_tau2()
    out = tmp_path_factory.mktemp("eval") / "run"
    done = run_eval(out, *FULL)
    assert done.returncode == 0, done.stderr[-3000:]
    yield out, done.stderr


def report_of(out: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def splits(limit: int | None = TASKS) -> dict[str, list[str]]:
    """The airline splits as τ² defines them, the first `limit` tasks of each."""
    path = TAU2_PYTHON.parent.parent / "lib/python3.11/site-packages/tau2/data/tau2/domains"
    found: dict[str, list[str]] = json.loads((path / "airline/split_tasks.json").read_text())
    return {name: ids[:limit] for name, ids in found.items()}


# bad input: refused before anything is spent


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--domain", "telecom", "--scripted"], "unknown domain 'telecom'"),
        (
            ["--domain", "airline", "--scripted", "--arms", "baseline,plaecbo"],
            "unknown arm 'plaecbo'",
        ),
        (["--domain", "airline", "--scripted", "--trials", "0"], "--trials must be at least 1"),
        (
            ["--domain", "airline", "--agent-model", "nosuchprovider/x", "--user-model",
             "openai/gpt-4.1", "--reflector-model", "openai/gpt-4.1"],
            "unknown model string 'nosuchprovider/x'",
        ),
        (
            ["--domain", "airline", "--agent-model", "openai/gpt-4.1-mini", "--user-model",
             "openai/gpt-4.1", "--reflector-model", "openai/gpt-4.1"],
            "needs OPENAI_API_KEY in the environment",
        ),
        (["--domain", "airline", "--agent-model", "openai/gpt-4.1-mini"], "give --user-model"),
        (
            ["--domain", "airline", "--scripted", "--agent-model", "openai/gpt-4.1-mini"],
            "--scripted uses scripted models",
        ),
    ],
)  # fmt: skip
def test_bad_input_stops_before_any_spend(tmp_path: Path, args: list[str], says: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    done = run_eval(tmp_path / "run", *args, env=env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one line, no traceback
    assert not (tmp_path / "run").exists()  # nothing was started


def test_a_missing_fixture_names_the_fix(tmp_path: Path) -> None:
    env = dict(os.environ, SKILLPROXY_TAU2_PYTHON=str(tmp_path / "nowhere/python"))
    done = run_eval(tmp_path / "run", "--domain", "airline", "--scripted", env=env)
    assert done.returncode == 2
    assert "τ²-bench is not installed" in done.stderr and "make tau2" in done.stderr
    assert not (tmp_path / "run").exists()


def test_no_out_folder_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EVAL_OUT"}
    done = subprocess.run(
        [sys.executable, "-m", "skillproxy", "eval", "tau2", "--domain", "airline", "--scripted"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "give --out DIR (or set EVAL_OUT)" in done.stderr


# the full scripted pipeline


def test_report_says_scripted_and_has_every_arm(full_run: tuple[Path, str]) -> None:
    out, _ = full_run
    report = report_of(out)
    assert report["models"] == {
        "agent": "scripted-agent", "user": "scripted-user", "reflector": "scripted-reflector",
        "scripted": True,
    }  # fmt: skip
    assert report["domain"] == "airline" and report["split"] == "test"
    first = (out / "report.md").read_text().splitlines()[0]
    assert "scripted" in first.lower() and "not learning quality" in first
    test_tasks = splits()["test"]
    for arm in ARMS:
        figures = report["arms"][arm]
        assert figures["tasks"] == len(test_tasks) and figures["trials"] == TRIALS
        assert set(figures["pass_hat_k"]) == {"1", "2"}
    for name in ("report.json", "report.md", "pass_hat_k.png", "deltas.png"):
        assert (out / name).stat().st_size > 0
    checks = report["checks"]
    assert set(checks) == {
        "every_task_k_times", "traced_under_session_with_reward", "evidence_from_train_only",
        "arms_carried_their_frozen_skills",
    }  # fmt: skip
    assert all(c["passed"] for c in checks.values()), checks
    assert "## Mechanics checks" in (out / "report.md").read_text()


def test_each_arm_ran_every_task_k_times(full_run: tuple[Path, str]) -> None:
    out, _ = full_run
    wanted = {"train-e1": splits()["train"], **{f"test-{a}": splits()["test"] for a in ARMS}}
    for phase, tasks in wanted.items():
        rows = read_results(out / "results" / f"{phase}.jsonl")
        runs = sorted((r["task_id"], r["trial"]) for r in rows)
        assert runs == sorted((t, n) for t in tasks for n in range(TRIALS)), phase
        assert all(r["error"] is None for r in rows), phase


def test_every_agent_call_is_traced_under_its_session_with_its_reward(
    full_run: tuple[Path, str],
) -> None:
    out, _ = full_run
    store = open_store(f"sqlite:///{out / 'store.db'}")
    try:
        for phase, book in (("train-e1", "train"), ("test-baseline", "baseline"),
                            ("test-learned", "learned"), ("test-placebo", "placebo")):  # fmt: skip
            rows = read_results(out / "results" / f"{phase}.jsonl")
            traces = store.traces.newest(skillbook=book, limit=100_000)
            by_session: dict[str | None, list[Any]] = {}
            for trace in traces:
                by_session.setdefault(trace.session_id, []).append(trace)
            assert set(by_session) == {r["session_id"] for r in rows}, phase
            for row in rows:
                calls = by_session[row["session_id"]]
                assert row["session_id"] == f"{phase}:{row['task_id']}:{row['trial']}"
                assert len(calls) == row["agent_calls"], row
                scores = [f.score for f in store.feedback.for_trace(calls[0].id)]
                assert scores == [row["reward"]], row
    finally:
        store.close()


def test_test_arms_carried_exactly_their_frozen_skills(full_run: tuple[Path, str]) -> None:
    out, _ = full_run
    state = json.loads((out / "state.json").read_text())
    expected = {
        "baseline": set(), "learned": set(state["learned_ids"]),
        "placebo": set(state["placebo_ids"]),
    }  # fmt: skip
    assert expected["learned"] and expected["placebo"]
    assert len(expected["placebo"]) == len(expected["learned"])
    assert abs(state["placebo_tokens"] - state["learned_tokens"]) <= 0.2 * state["learned_tokens"]
    store = open_store(f"sqlite:///{out / 'store.db'}")
    try:
        for book, ids in expected.items():
            for trace in store.traces.newest(skillbook=book, limit=100_000):
                assert set(trace.injected_skill_ids or []) == ids, (book, trace.id)
    finally:
        store.close()


def test_learned_skills_rest_on_train_traces_only(full_run: tuple[Path, str]) -> None:
    out, _ = full_run
    report = report_of(out)
    skills = report["learning"]["skills"]
    assert skills and report["learning"]["episodes"] == len(splits()["train"]) * TRIALS
    store = open_store(f"sqlite:///{out / 'store.db'}")
    try:
        for skill in skills:
            assert skill["evidence"], skill
            for trace_id in skill["evidence"]:
                trace = store.traces.get(trace_id)
                assert trace is not None and trace.skillbook == "train"
                assert (trace.session_id or "").startswith("train-e1:")
    finally:
        store.close()
    cues = {m.cue for m in FAILURE_MODES["airline"]}
    assert {c for c in cues if any(c in s["text"] for s in skills)}, skills


def test_the_scripted_failures_are_fixed_by_the_learned_skills_only(
    full_run: tuple[Path, str],
) -> None:
    """Mechanics: the scripted agent fails without the rule and not with it, so the learned arm
    must beat baseline, and the placebo (irrelevant rules) must change nothing."""
    out, _ = full_run
    arms = report_of(out)["arms"]
    assert arms["learned"]["pass_hat_k"]["1"] > arms["baseline"]["pass_hat_k"]["1"]
    assert arms["placebo"]["pass_hat_k"] == arms["baseline"]["pass_hat_k"]
    assert arms["noop"]["pass_hat_k"]["1"] < arms["baseline"]["pass_hat_k"]["1"]
    comparisons = {(c["arm"], c["against"], c["metric"]): c for c in report_of(out)["comparisons"]}
    headline = comparisons[("learned", "placebo", "pass_hat_1")]
    assert headline == report_of(out)["headline"]
    assert headline["delta"] > 0 and headline["ci95"][0] <= headline["delta"] <= headline["ci95"][1]


def test_a_finished_run_resumes_without_repeating_anything(full_run: tuple[Path, str]) -> None:
    out, _ = full_run
    before = {p.name: p.read_text() for p in (out / "results").glob("*.jsonl")}
    learn_log = (out / "learn.log").read_text()
    done = run_eval(out, *FULL)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming the run" in done.stderr
    assert {p.name: p.read_text() for p in (out / "results").glob("*.jsonl")} == before
    assert (out / "learn.log").read_text() == learn_log  # the learner did not run again


def test_other_settings_in_the_same_folder_are_refused(full_run: tuple[Path, str]) -> None:
    out, _ = full_run
    done = run_eval(out, *FULL[:-2], "--trials", "3")
    assert done.returncode == 2
    assert (
        "holds a run with other settings" in done.stderr and "trials: 2 then, 3 now" in done.stderr
    )


# interruption, review and the cost cap


def test_an_interrupted_run_resumes_without_repeating_finished_simulations(tmp_path: Path) -> None:
    require_tau2()
    out = tmp_path / "run"
    args = ("--scripted", "--domain", "airline", "--tasks", "3", "--trials", "2",
            "--arms", "baseline", "--concurrency", "1")  # fmt: skip
    with subprocess.Popen(
        eval_command(out, *args), stderr=subprocess.PIPE, text=True, cwd=ROOT
    ) as harness:
        assert harness.stderr is not None
        for line in harness.stderr:
            if re.search(r"\[test-baseline\] 2/6 simulations", line):
                harness.send_signal(signal.SIGTERM)
                break
        _, rest = harness.communicate(timeout=60)
    assert harness.returncode == 143, rest
    assert "interrupted; finished simulations are kept" in rest
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True)
    assert left.stdout == "", "the proxy or the τ² worker outlived the harness"
    finished = read_results(out / "results" / "test-baseline.jsonl")
    assert 2 <= len(finished) < 6
    done = run_eval(out, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_results(out / "results" / "test-baseline.jsonl")
    assert rows[: len(finished)] == finished  # kept as they were
    # a simulation cut off by the kill ran again under a session of its own: no spliced
    # conversations (the run's own check counts each session's traces against its calls)
    assert report_of(out)["checks"]["traced_under_session_with_reward"]["passed"]
    assert len({r["session_id"] for r in rows}) == len(rows)
    assert sorted((r["task_id"], r["trial"]) for r in rows) == sorted(
        (t, n) for t in splits(3)["test"] for n in range(2)
    )


def test_review_waits_for_a_person_then_goes_on(tmp_path: Path) -> None:
    require_tau2()
    out = tmp_path / "run"
    harness = subprocess.Popen(
        eval_command(out, "--scripted", "--domain", "airline", "--tasks", "6", "--trials", "1",
                     "--arms", "learned", "--review"),
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert harness.stderr is not None
    url = None
    for line in harness.stderr:
        if "wait for your review" in line:
            found = re.search(r"open (http://127\.0\.0\.1:\d+)/ui/", line)
            assert found, line
            url = found.group(1)
            break
    assert url is not None, "the harness never asked for a review"
    time.sleep(3)
    assert harness.poll() is None  # still waiting
    pending = httpx.get(f"{url}/admin/skillbooks/train/skills", params={"status": "pending"})
    ids = [s["id"] for s in pending.json()["data"]]
    assert ids
    keep, drop = ids[:1], ids[1:]
    httpx.post(f"{url}/admin/skillbooks/train/skills/approve", json={"ids": keep})
    if drop:
        httpx.post(f"{url}/admin/skillbooks/train/skills/reject", json={"ids": drop})
    _, rest = harness.communicate(timeout=600)
    assert harness.returncode == 0, rest
    state = json.loads((out / "state.json").read_text())
    assert state["train-e1_approved"] == keep
    assert len(state["learned_ids"]) == 1


def capped_harness(folder: Path, max_cost: float) -> Harness:
    """A harness over `folder` with a cost cap, not started: its checks need no process."""
    plan = make_plan(
        domain="airline", out=str(folder), agent_model=None, user_model=None,
        reflector_model=None, scripted=True, arms="baseline", trials=1, max_cost=max_cost,
    )  # fmt: skip
    domain = Domain("airline", {}, folder / "tasks.json", folder / "policy.md", "26.3")
    return Harness(plan, domain, lambda line: None)


def test_the_cost_cap_stops_the_run(tmp_path: Path) -> None:
    harness = capped_harness(tmp_path, max_cost=0.05)
    harness._progress(
        "test-baseline", {"done": 1, "total": 4, "agent_cost": 0.02, "user_cost": 0.01}
    )
    with pytest.raises(CostCapReached, match=r"reached --max-cost \$0.05 during test-baseline"):
        harness._progress(
            "test-baseline", {"done": 2, "total": 4, "agent_cost": 0.02, "user_cost": 0.01}
        )


def test_a_resumed_run_over_its_cap_stops_before_the_next_phase(tmp_path: Path) -> None:
    """What finished simulations spent is read back from the run folder."""
    harness = capped_harness(tmp_path, max_cost=0.05)
    (tmp_path / "results").mkdir()
    rows = [{"task_id": str(i), "trial": 0, "agent_cost": 0.02, "user_cost": 0.0} for i in range(3)]
    (tmp_path / "results" / "train-e1.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    with pytest.raises(
        CostCapReached, match=r"\$0.0600 has reached --max-cost \$0.05 before test-noop"
    ):
        harness._check_cap("test-noop")


def test_plan_refuses_a_negative_cost_cap(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="--max-cost must be a positive"):
        make_plan(
            domain="airline", out=str(tmp_path), agent_model=None, user_model=None,
            reflector_model=None, scripted=True, arms="baseline", trials=1, max_cost=-1,
        )  # fmt: skip


# the placebo


def test_placebo_matches_count_and_tokens_from_the_other_policy() -> None:
    policy = (
        "# Policy\n\n- **Refunds** go back to the original payment method within five days.\n"
        "- A gift card balance can never be turned back into cash for the user.\n"
        "Short line.\n"
        "Each order can be changed only while its status is still pending in the system.\n"
    )
    sentences = policy_sentences(policy)
    assert sentences == [
        "Refunds go back to the original payment method within five days.",
        "A gift card balance can never be turned back into cash for the user.",
        "Each order can be changed only while its status is still pending in the system.",
    ]
    placebo = choose(sentences, 2, 30, seed=1)
    assert len(placebo.texts) == 2 and len(set(placebo.texts)) == 2
    assert placebo == choose(sentences, 2, 30, seed=1)  # the same on a rerun
    with pytest.raises(ValueError, match="needs 4 sentences"):
        choose(sentences, 4, 30, seed=1)


def test_placebo_leaves_out_rules_the_evaluated_domain_has_too() -> None:
    """A sentence both policies state (confirm before writing) would be a real rule, not a
    placebo; the evaluated domain's own policy is what it is checked against."""
    theirs = [
        "Before taking any action that updates the database, obtain explicit user confirmation.",
        "A gift card balance can never be turned back into cash for the user.",
    ]
    own = (
        "- Before taking any actions that update the booking database, you must obtain "
        "explicit user confirmation.\n"
    )
    assert foreign(theirs, own) == theirs[1:]
