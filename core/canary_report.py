"""A canary's figures per arm, its verdict, and what the skillbook's rules do about it.

The report is built from the sessions the store says a canary is judged on
(`CanaryRepository.sessions`) and the skillbook's rules, by pure functions, so the admin API
(`GET /admin/skills/{id}/canary`) and the proxy's background watch (`proxy.canary_watch`)
read the same numbers. Per arm: sessions, sessions with feedback, feedback count, the mean
score (a label counts as its score: good 1, bad 0, so with labels only it is the success
rate), tokens and turns per conversation. The comparison uses one outcome per session (the
mean of its feedback; a later feedback on a rated session revises that one outcome) in the
order sessions first got feedback, through `core.sequential`. Only rated sessions are
compared: a skill that changes whether clients give feedback at all is compared among those
who did, which the limits say.

Rules: `promote` needs the interval above 0 and at least `min_sessions` rated sessions in the
canary arm (`alpha` and `min_sessions` as the canary fixed them when it started,
`test_rules`); `withdraw` needs the interval below 0 only (the sequence is valid at any count,
and a harmful skill should not wait); `notify` records the verdict in the skill's history
once. Sessions without feedback say nothing: no feedback, no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from core.sequential import METHOD, Interval, compare, observations_needed
from store.canary_rules import effective
from store.records import Canary, CanaryRules, CanarySession

DEFAULT_EFFECT = 0.1
"""The difference in mean score the "needs about N more sessions" line is computed for."""
ASSIGNMENT_TEXT = {
    "disjoint": (
        "disjoint: each session is in at most one canary's treatment (one hash of the session, "
        "each canary owning its own range of it); control is the sessions in no running "
        "canary's treatment"
    ),
    "independent": (
        "independent: each canary hashes the session with its own id, so a session may be in "
        "several treatments; control is every session without this skill"
    ),
}


@dataclass(frozen=True, slots=True)
class ArmFigures:
    sessions: int
    rated_sessions: int
    """Sessions with at least one feedback: only these enter the comparison."""
    feedback: int
    mean_score: float | None
    tokens_per_session: float | None
    turns_per_session: float | None
    interval: Interval | None
    """The always-valid interval of this arm's mean score."""


@dataclass(frozen=True, slots=True)
class Needs:
    effect: float
    more_rated_sessions: int | None
    """More sessions with feedback the canary arm needs (None: more than ten million)."""
    more_sessions: int | None
    """The same in all sessions, at the canary's share and the feedback rate seen so far."""


@dataclass(frozen=True, slots=True)
class CanaryReport:
    canary: Canary
    treatment: ArmFigures
    control: ArmFigures
    difference: float | None
    """Mean score with the skill minus without, over rated sessions."""
    interval: Interval | None
    """Its 95% (1 - alpha) confidence sequence: valid however often it is looked at."""
    verdict: str
    """`better`, `worse`, `none` (the interval holds 0) or `no data`."""
    decision: str
    """What the rules do with this verdict now: promote, withdraw, notify or wait."""
    alpha: float
    """The test's error rate, as fixed when the canary started (`test_values` says)."""
    min_sessions: int
    """Rated sessions the boundary is tuned for and promotion waits for, fixed likewise."""
    test_values: str
    """Where `alpha` and `min_sessions` come from: `fixed at start`, or `skillbook rules`
    for a canary started before they were kept."""
    method: str
    assignment: str
    beside: list[str]
    """Skill ids of other canaries that ran at the same time in this skillbook."""
    needs: Needs | None
    limits: list[str] = field(default_factory=list)


def arm_figures(
    sessions: Sequence[CanarySession], total: float, n: int, interval: Interval | None
) -> ArmFigures:
    count = len(sessions)
    return ArmFigures(
        sessions=count,
        rated_sessions=n,
        feedback=sum(s.feedback for s in sessions),
        mean_score=_round(total / n) if n else None,
        tokens_per_session=_round(sum(s.tokens for s in sessions) / count) if count else None,
        turns_per_session=_round(sum(s.turns for s in sessions) / count) if count else None,
        interval=_rounded(interval),
    )


def build_report(
    canary: Canary,
    sessions: Sequence[CanarySession],
    rules: CanaryRules,
    beside: Sequence[Canary] = (),
    *,
    effect: float = DEFAULT_EFFECT,
) -> CanaryReport:
    rules = test_rules(canary, rules)
    alpha, least = float(rules.alpha or 0.05), int(rules.min_sessions or 1)
    values = "fixed at start" if canary.alpha is not None else "skillbook rules"
    arms = {arm: [s for s in sessions if s.arm == arm] for arm in ("treatment", "control")}
    rated = {
        arm: sorted((s for s in group if s.score is not None), key=lambda s: s.first_feedback or 0)
        for arm, group in arms.items()
    }
    sums = {arm: sum(s.score or 0.0 for s in group) for arm, group in rated.items()}
    result = compare(
        sums["treatment"], len(rated["treatment"]), sums["control"], len(rated["control"]),
        alpha=alpha, planned=least,
    )  # fmt: skip
    treatment = arm_figures(arms["treatment"], sums["treatment"], len(rated["treatment"]),
                            result.treatment)  # fmt: skip
    control = arm_figures(arms["control"], sums["control"], len(rated["control"]), result.control)
    needs = _needs(canary, treatment, control, effect, alpha, least, result.verdict)
    return CanaryReport(
        canary=canary,
        treatment=treatment,
        control=control,
        difference=_round(result.difference),
        interval=_rounded(result.interval),
        verdict=result.verdict,
        decision=decision(result.verdict, treatment.rated_sessions, rules, canary),
        alpha=alpha,
        min_sessions=least,
        test_values=values,
        method=METHOD,
        assignment=ASSIGNMENT_TEXT[canary.assignment],
        beside=[other.skill_id for other in beside],
        needs=needs,
        limits=_limits(treatment, control, alpha, least, values, result.verdict, needs),
    )


def test_rules(canary: Canary, rules: CanaryRules) -> CanaryRules:
    """The effective rules with the test's own values, `alpha` and `min_sessions`, as the
    canary fixed them when it started (a boundary must not move mid-run); the actions,
    `on_win` and `on_loss`, stay the skillbook's current ones."""
    rules = effective(rules)
    return replace(
        rules,
        alpha=rules.alpha if canary.alpha is None else canary.alpha,
        min_sessions=rules.min_sessions if canary.min_sessions is None else canary.min_sessions,
    )


def decision(verdict: str, rated: int, rules: CanaryRules, canary: Canary) -> str:
    """What the (effective) rules do with `verdict` now."""
    if canary.status != "running":
        return canary.status
    if verdict == "better":
        if rules.on_win == "promote":
            return "promote" if rated >= (rules.min_sessions or 1) else "wait"
        return "notify"
    if verdict == "worse":
        return "withdraw" if rules.on_loss == "withdraw" else "notify"
    return "wait"


def _needs(
    canary: Canary,
    treatment: ArmFigures,
    control: ArmFigures,
    effect: float,
    alpha: float,
    least: int,
    verdict: str,
) -> Needs | None:
    if verdict in ("better", "worse"):
        return None
    share = canary.share / 100
    ratio = (
        control.rated_sessions / treatment.rated_sessions
        if treatment.rated_sessions and control.rated_sessions
        else (1 - share) / share
    )
    wanted = observations_needed(effect, ratio, alpha=alpha, planned=least)
    if wanted is None:
        return Needs(effect, None, None)
    more = max(0, wanted - treatment.rated_sessions)
    rate = treatment.rated_sessions / treatment.sessions if treatment.rated_sessions else 1.0
    total = math.ceil(more / rate / share) if more else 0
    return Needs(effect, more, total)


def _limits(
    treatment: ArmFigures,
    control: ArmFigures,
    alpha: float,
    least: int,
    test_values: str,
    verdict: str,
    needs: Needs | None,
) -> list[str]:
    notes = [
        f"The test uses alpha {alpha:g} and min_sessions {least} ({test_values}): changing "
        "the skillbook's rules does not move a running canary's boundary.",
        "Only sessions with feedback count: without feedback there is no verdict.",
        "Sessions are counted by X-Session-Id, else by the learner's episodes once it has "
        "grouped them; a conversation started before the canary is left out.",
        "Only rated sessions are compared: if the skill changes whether clients give feedback, "
        "the comparison is among the sessions that did.",
    ]
    if treatment.rated_sessions == 0 or control.rated_sessions == 0:
        notes.append("No verdict yet: an arm has no session with feedback.")
    if treatment.rated_sessions < least:
        notes.append(
            f"The canary arm has {treatment.rated_sessions} rated sessions; automatic promotion "
            f"waits for {least}."
        )
    if needs is not None and needs.more_rated_sessions:
        notes.append(
            f"To detect a difference of {needs.effect:g} in mean score it needs about "
            f"{needs.more_rated_sessions} more rated sessions in the canary arm "
            f"(about {needs.more_sessions} more sessions in all at this share and feedback rate)."
        )
    if verdict == "none" and needs is not None and not needs.more_rated_sessions:
        notes.append(
            f"The interval holds 0 with enough sessions to see a difference of {needs.effect:g}: "
            "any effect is likely smaller than that."
        )
    return notes


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _rounded(interval: Interval | None) -> Interval | None:
    if interval is None:
        return None
    return Interval(round(interval.low, 4), round(interval.high, 4))
