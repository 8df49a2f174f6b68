"""The report of `skillproxy eval tau2`: report.json for machines, report.md and plots for people.

The report says first whether its models were real or scripted, since a scripted run only
proves the pipeline works, and words its headline (learned skills against as many irrelevant
ones) no more strongly than its tests allow. matplotlib is imported only to draw, so the
harness can build and check a report without it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

from skillproxy.eval.stats import arm_pass_hat_ks, compare, metric_k, trials_per_task

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

METRICS = ("pass_hat_1", "pass_hat_k")
HEADLINE = ("learned", "placebo")
"""Learned skills against as many irrelevant ones: the placebo takes the same prompt space, so
the difference is what the skills say, not that something was added."""
AGREEMENT = 1e-9
ALPHA = 0.05
MODEL_ROLES = ("agent", "user", "reflector")


@dataclass(frozen=True)
class ArmResult:
    rewards: Mapping[str, Sequence[float]]
    """Task id → that task's rewards, one per trial."""
    tokens: int
    """The agent's tokens (prompt and completion); the user simulator's are `user_tokens`."""
    cost_usd: float
    """The agent's and the user simulator's, together."""
    user_tokens: int = 0


def build_report(
    *,
    models: Mapping[str, object],
    domain: str,
    split: str,
    arms: Mapping[str, ArmResult],
    learning: Mapping[str, object],
    comparisons: Sequence[tuple[str, str]],
    tau2_pass_hat_k: Mapping[str, Mapping[int, float]] | None = None,
    resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """The report as JSON-ready data. `tau2_pass_hat_k` is what τ²'s own code computed per
    arm: the report shows those numbers, and any that differ from ours beyond 1e-9 raise
    ValueError, since one of the two computations is then wrong. Comparisons naming an arm
    that did not run are left out."""
    _check_models(models)
    theirs = tau2_pass_hat_k or {}
    unknown = sorted(theirs.keys() - arms.keys())
    if unknown:
        raise ValueError(f"τ² pass^k given for arms that did not run: {', '.join(unknown)}")
    ran = [(a, b) for a, b in comparisons if a in arms and b in arms]
    entries = [
        compare(a, b, arms[a].rewards, arms[b].rewards, m, resamples=resamples, seed=seed)
        for a, b in ran
        for m in _metrics(arms[a], arms[b])
    ]
    return {
        "models": dict(models),
        "domain": domain,
        "split": split,
        "arms": {name: _arm(name, arm, theirs.get(name)) for name, arm in arms.items()},
        "comparisons": entries,
        "learning": dict(learning),
        "headline": _headline(arms, entries, resamples, seed),
    }


def _metrics(a: ArmResult, b: ArmResult) -> tuple[str, ...]:
    """With one trial per task pass^k is pass^1: compared once, not twice under two names."""
    one_trial = min(trials_per_task(a.rewards), trials_per_task(b.rewards)) == 1
    return METRICS[:1] if one_trial else METRICS


def _check_models(models: Mapping[str, object]) -> None:
    missing = [role for role in (*MODEL_ROLES, "scripted") if role not in models]
    if missing:
        raise ValueError(f"models lacks {', '.join(missing)}")
    if not isinstance(models["scripted"], bool):
        raise ValueError("models['scripted'] must be True or False: the report's title says it")


def _arm(name: str, arm: ArmResult, tau2: Mapping[int, float] | None) -> dict[str, Any]:
    ours = arm_pass_hat_ks(arm.rewards)
    if tau2 is not None:
        _check_agreement(name, ours, tau2)
    shown = ours if tau2 is None else tau2
    return {
        "pass_hat_k": {str(k): float(shown[k]) for k in sorted(shown)},
        # τ²'s avg_reward: the mean over simulations, so a task with more trials weighs more.
        "avg_reward": fmean(r for trials in arm.rewards.values() for r in trials),
        "tasks": len(arm.rewards),
        "trials": trials_per_task(arm.rewards),
        "tokens": arm.tokens + arm.user_tokens,
        "agent_tokens": arm.tokens,
        "user_tokens": arm.user_tokens,
        "cost_usd": arm.cost_usd,
    }


def _check_agreement(name: str, ours: Mapping[int, float], tau2: Mapping[int, float]) -> None:
    if set(ours) != set(tau2):
        raise ValueError(
            f"arm {name}: τ² computed pass^k for k in {sorted(tau2)}, we for k in {sorted(ours)}"
        )
    for k, value in ours.items():
        if abs(value - tau2[k]) > AGREEMENT:
            raise ValueError(f"arm {name}: pass^{k} is {tau2[k]!r} by τ² but {value!r} by us")


def _headline(
    arms: Mapping[str, ArmResult], entries: Sequence[Mapping[str, Any]], resamples: int, seed: int
) -> dict[str, Any] | None:
    arm, against = HEADLINE
    if arm not in arms or against not in arms:
        return None
    for entry in entries:
        if (entry["arm"], entry["against"], entry["metric"]) == (arm, against, "pass_hat_1"):
            return dict(entry)
    a, b = arms[arm].rewards, arms[against].rewards
    return compare(arm, against, a, b, "pass_hat_1", resamples=resamples, seed=seed)


def write_report(out_dir: Path, report: Mapping[str, Any]) -> list[Path]:
    """report.json, report.md, pass_hat_k.png and deltas.png in `out_dir`; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in ("report.json", "report.md")]
    paths[0].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    paths[1].write_text(render_markdown(report), "utf-8")
    return [*paths, *_plots(out_dir, report)]


def render_markdown(report: Mapping[str, Any]) -> str:
    sections = [
        [title(report), "", *_models_md(report["models"])],
        _arms_md(report["arms"]),
        _comparisons_md(report),
        ["## Headline", "", headline_sentence(report)],
        _learning_md(report["learning"]),
        _checks_md(report.get("checks") or {}),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _checks_md(checks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not checks:
        return []
    lines = [
        f"- {'PASS' if c['passed'] else 'FAIL'} {name}: {c['detail']}" for name, c in checks.items()
    ]
    return ["## Mechanics checks", "", *lines]


def title(report: Mapping[str, Any]) -> str:
    """The first line: whether the numbers can say anything about learning at all."""
    kind = (
        "SCRIPTED models — this checks the mechanics, not learning quality"
        if report["models"]["scripted"]
        else "real models"
    )
    return f"# τ²-bench {report['domain']} ({report['split']} split): {kind}"


def _models_md(models: Mapping[str, Any]) -> list[str]:
    labels = {"agent": "agent", "user": "user simulator", "reflector": "reflector"}
    return [
        f"- {label}: `{models[role]}`" if models[role] else f"- {label}: none"
        for role, label in labels.items()
    ]


def _arms_md(arms: Mapping[str, Mapping[str, Any]]) -> list[str]:
    ks = [str(k) for k in range(1, max((arm["trials"] for arm in arms.values()), default=0) + 1)]
    header = ["arm", *(f"pass^{k}" for k in ks)]
    header += ["avg reward", "tasks", "trials", "tokens", "cost (USD)"]
    rows = [_arm_row(name, arm, ks) for name, arm in arms.items()]
    return ["## Arms", "", *_table(header, rows)]


def _arm_row(name: str, arm: Mapping[str, Any], ks: Sequence[str]) -> list[str]:
    pass_hat_ks = [_fixed(arm["pass_hat_k"].get(k)) for k in ks]
    counts = [str(arm["tasks"]), str(arm["trials"]), f"{arm['tokens']:,}"]
    return [name, *pass_hat_ks, _fixed(arm["avg_reward"]), *counts, _usd(arm["cost_usd"])]


def _comparisons_md(report: Mapping[str, Any]) -> list[str]:
    header = ["comparison", "metric", "Δ", "95% CI", "p-value", "tasks"]
    header += ["discordant (arm / against)", "method"]
    rows = [_comparison_row(report, entry) for entry in report["comparisons"]]
    body = _table(header, rows) if rows else ["No comparisons between arms that ran."]
    return ["## Comparisons", "", *body]


def _comparison_row(report: Mapping[str, Any], entry: Mapping[str, Any]) -> list[str]:
    discordant = f"{entry['discordant']['arm_only']} / {entry['discordant']['against_only']}"
    return [
        _pair(entry),
        _metric_label(report, entry),
        _signed(entry["delta"]),
        _interval(entry["ci95"]),
        _p(entry["p_value"]),
        str(entry["tasks"]),
        discordant,
        entry["method"],
    ]


def headline_sentence(report: Mapping[str, Any]) -> str:
    """learned - placebo, called significant only when McNemar's p is below 0.05 and the
    bootstrap interval leaves out 0: either alone can be luck on a few dozen tasks."""
    entry = report["headline"]
    if entry is None:
        return "No headline: it needs both the learned and the placebo arm."
    lo, hi = entry["ci95"]
    measured = (
        f"Learned skills minus as many placebo skills: Δ pass^1 = {_signed(entry['delta'])} "
        f"(95% CI {_interval(entry['ci95'])}, exact McNemar p = {_p(entry['p_value'])}, "
        f"{entry['tasks']} tasks)"
    )
    if entry["p_value"] >= ALPHA or lo <= 0 <= hi:
        verdict = "Not significant at 0.05: this run cannot tell the two apart."
    else:
        better = "better" if entry["delta"] > 0 else "worse"
        verdict = f"Significant at 0.05: the learned skills did {better} than the placebo."
    caveat = " The models were scripted, so this says nothing about learning quality."
    return f"{measured}. {verdict}" + (caveat if report["models"]["scripted"] else "")


def _learning_md(learning: Mapping[str, Any]) -> list[str]:
    skills = learning.get("skills") or []
    items = [_skill_md(skill) for skill in skills] or ["No skills were learned."]
    totals = (
        f"Learning: {learning.get('episodes', 0)} episodes, {learning.get('tokens', 0):,} "
        f"tokens, {_usd(learning.get('cost_usd', 0.0))}."
    )
    return ["## Learned skills", "", *items, "", totals]


def _skill_md(skill: Mapping[str, Any]) -> str:
    evidence = skill.get("evidence", 0)
    count = evidence if isinstance(evidence, int) else len(evidence)
    lines = str(skill.get("text", "")).strip().splitlines() or [""]
    # Continuation lines indented, so a skill's own Markdown stays inside its list item.
    body = "\n".join([lines[0], *(f"  {line}" for line in lines[1:])])
    return f"- `{skill.get('id', '?')}` (evidence: {count}): {body}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), line(["---"] * len(header)), *map(line, rows)]


def _pair(entry: Mapping[str, Any]) -> str:
    return f"{entry['arm']} - {entry['against']}"


def _metric_label(report: Mapping[str, Any], entry: Mapping[str, Any]) -> str:
    arms = report["arms"]
    trials = min(arms[entry["arm"]]["trials"], arms[entry["against"]]["trials"])
    return f"pass^{metric_k(entry['metric'], trials)}"


def _fixed(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _interval(ci: Sequence[float]) -> str:
    return f"[{_signed(ci[0])}, {_signed(ci[1])}]"


def _p(value: float) -> str:
    return f"{value:.3g}"


def _usd(value: float) -> str:
    return f"${value:,.4f}"


def _plots(out_dir: Path, report: Mapping[str, Any]) -> list[Path]:
    scripted = " (scripted models)" if report["models"]["scripted"] else ""
    pass_hat_k_png, deltas_png = out_dir / "pass_hat_k.png", out_dir / "deltas.png"
    _plot_pass_hat_k(pass_hat_k_png, report, scripted)
    pass_hat_1 = [c for c in report["comparisons"] if c["metric"] == "pass_hat_1"]
    _plot_deltas(deltas_png, pass_hat_1, scripted)
    return [pass_hat_k_png, deltas_png]


def _plot_pass_hat_k(path: Path, report: Mapping[str, Any], scripted: str) -> None:
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure(height=4.2)
    for name, arm in report["arms"].items():
        ks = sorted(arm["pass_hat_k"], key=int)
        axes.plot([int(k) for k in ks], [arm["pass_hat_k"][k] for k in ks], marker="o", label=name)
    axes.set(xlabel="k", ylabel="pass^k", ylim=(-0.02, 1.02))
    axes.set_title(f"τ²-bench {report['domain']}: pass^k by arm{scripted}")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if report["arms"]:
        axes.legend()
    figure.savefig(path, format="png")


def _plot_deltas(path: Path, entries: Sequence[Mapping[str, Any]], scripted: str) -> None:
    figure, axes = _figure(height=1.2 + 0.5 * max(len(entries), 1))
    rows = list(range(len(entries)))
    axes.hlines(rows, [c["ci95"][0] for c in entries], [c["ci95"][1] for c in entries])
    axes.plot([c["delta"] for c in entries], rows, "o")
    axes.axvline(0, color="grey", linewidth=0.8)
    axes.set_yticks(rows, [_pair(c) for c in entries])
    axes.invert_yaxis()  # the first comparison on top, as in report.md
    axes.set_xlabel("Δ pass^1 (95% CI)")
    axes.set_title(f"Paired differences{scripted}")
    figure.savefig(path, format="png")


def _figure(height: float) -> tuple[Figure, Axes]:
    """A figure on its own Agg canvas: no pyplot, so no global state shared between threads.
    matplotlib is imported here, on first use, because it takes a second to import."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()
