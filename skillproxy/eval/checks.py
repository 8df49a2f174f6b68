"""What must hold for an evaluation's figures to mean anything, checked over the run's proxy.

Each arm ran every task k times; every simulation's agent calls are traces under its own
session, carrying its τ² reward as feedback; the learned skills rest on train traces only; and
each test arm's requests carried exactly its frozen set (placebo: the placebo; baseline:
nothing). On scripted models (`make eval-offline`) a failed check fails the run; on real ones
it is reported (a provider retry, say, adds a trace), since the figures may still stand.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skillproxy.admin_client import AdminClient

PAGE = 500


@dataclass(frozen=True)
class Phase:
    name: str
    skillbook: str | None
    """None: not proxied (the do-nothing agent)."""
    tasks: Sequence[str]
    rows: Sequence[Mapping[str, Any]]
    injected: frozenset[str] | None = None
    """The skill ids every request of a test arm must have carried; None: not checked."""


def run_checks(
    admin: AdminClient, phases: Sequence[Phase], trials: int, evidence: Mapping[str, list[str]]
) -> dict[str, dict[str, Any]]:
    """Every check by name: `{"passed": bool, "detail": str}`."""
    traces = {p.skillbook: list(_traces(admin, p.skillbook)) for p in phases if p.skillbook}
    return {
        "every_task_k_times": _every_task(phases, trials),
        "traced_under_session_with_reward": _traced(admin, phases, traces),
        "evidence_from_train_only": _evidence(admin, evidence),
        "arms_carried_their_frozen_skills": _injected(phases, traces),
    }


def _result(problems: list[str], ok: str) -> dict[str, Any]:
    shown = "; ".join(problems[:5]) + (
        f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    )
    return {"passed": not problems, "detail": shown if problems else ok}


def _traces(admin: AdminClient, skillbook: str) -> Iterator[dict[str, Any]]:
    before: float | None = None
    while True:
        page = admin.list_traces(skillbook=skillbook, limit=PAGE, before=before)
        yield from page["data"]
        before = page.get("next_before")
        if before is None or not page["data"]:
            return


def _every_task(phases: Sequence[Phase], trials: int) -> dict[str, Any]:
    problems = []
    for phase in phases:
        ran = sorted((str(r["task_id"]), int(r["trial"])) for r in phase.rows)
        wanted = sorted((t, n) for t in phase.tasks for n in range(trials))
        if ran != wanted:
            problems.append(f"{phase.name} ran {len(ran)} of {len(wanted)} (task, trial) pairs")
    return _result(problems, f"{len(phases)} phases, each task {trials} times")


def _traced(
    admin: AdminClient, phases: Sequence[Phase], traces: Mapping[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    problems, sessions = [], 0
    for phase in phases:
        if phase.skillbook is None:
            continue
        by_session: dict[str, list[dict[str, Any]]] = {}
        for trace in traces[phase.skillbook]:
            by_session.setdefault(trace.get("session_id") or "", []).append(trace)
        for row in phase.rows:
            calls = by_session.get(row["session_id"], [])
            sessions += 1
            if len(calls) != row["agent_calls"]:
                problems.append(
                    f"{row['session_id']}: {len(calls)} traces for {row['agent_calls']} agent calls"
                )
                continue
            scores = [f["score"] for f in admin.get_trace(calls[0]["id"])["feedback"]]
            if scores != [row["reward"]]:
                problems.append(f"{row['session_id']}: feedback {scores}, reward {row['reward']}")
    return _result(problems, f"{sessions} sessions: one trace per agent call, reward as feedback")


def _evidence(admin: AdminClient, evidence: Mapping[str, list[str]]) -> dict[str, Any]:
    problems, seen = [], 0
    for skill_id, trace_ids in evidence.items():
        if not trace_ids:
            problems.append(f"{skill_id} has no evidence")
        for trace_id in trace_ids:
            seen += 1
            trace = admin.get_trace(trace_id)
            if trace["skillbook"] != "train" or not (trace["session_id"] or "").startswith(
                "train-"
            ):
                problems.append(f"{skill_id}: evidence {trace_id} is from {trace['session_id']}")
    return _result(problems, f"{len(evidence)} skills, {seen} evidence traces, all from train")


def _injected(
    phases: Sequence[Phase], traces: Mapping[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    problems, checked = [], 0
    for phase in phases:
        if phase.skillbook is None or phase.injected is None:
            continue
        for trace in traces[phase.skillbook]:
            checked += 1
            carried = frozenset(trace.get("injected_skill_ids") or [])
            if carried != phase.injected:
                problems.append(f"{phase.name} {trace['id']} carried {sorted(carried)}")
    return _result(problems, f"{checked} test requests carried exactly their arm's skills")
