"""core/canary_report.py and store/canary_rules.py: per-arm figures by hand, the rules'
decisions, the sessions-needed line, and the checks on rule values."""

from __future__ import annotations

from typing import Literal

import pytest

from core.canary_report import build_report, decision
from store.canary_rules import check_rules, check_share, effective
from store.errors import InvalidContent
from store.records import Canary, CanaryRules, CanarySession

Arm = Literal["treatment", "control"]
CANARY = Canary(1, "rule-00001", "book", 50.0, "disjoint", 0, 5000, "running", "pending",
                100.0, "alice")  # fmt: skip


def session(
    i: int, arm: Arm, score: float | None, turns: int = 2, tokens: int = 100
) -> CanarySession:
    return CanarySession(
        f"s:{i}",
        arm,
        100.0 + i,
        turns,
        tokens,
        0 if score is None else 1,
        score,
        None if score is None else i,
    )


def test_arm_figures_are_the_plain_means() -> None:
    sessions = [
        session(1, "treatment", 1.0, turns=2, tokens=100),
        session(2, "treatment", 0.5, turns=4, tokens=300),
        session(3, "treatment", None, turns=3, tokens=200),
        session(4, "control", 0.0),
        session(5, "control", 1.0),
    ]
    report = build_report(CANARY, sessions, CanaryRules())
    t, c = report.treatment, report.control
    assert (t.sessions, t.rated_sessions, t.feedback) == (3, 2, 2)
    assert t.mean_score == 0.75 and t.turns_per_session == 3.0 and t.tokens_per_session == 200.0
    assert (c.sessions, c.rated_sessions, c.mean_score) == (2, 2, 0.5)
    assert report.difference == 0.25
    assert report.verdict == "none" and report.decision == "wait"
    assert report.needs is not None and report.needs.more_rated_sessions
    # 2 of 3 treatment sessions rated at a 50% share: total = more / (2/3) / 0.5
    assert report.needs.more_sessions == pytest.approx(report.needs.more_rated_sessions * 3, abs=1)


def test_no_feedback_no_verdict() -> None:
    report = build_report(CANARY, [session(1, "treatment", None), session(2, "control", None)],
                          CanaryRules())  # fmt: skip
    assert report.verdict == "no data" and report.difference is None
    assert any("no session with feedback" in line for line in report.limits)


def test_rules_decide_what_a_verdict_does() -> None:
    auto = effective(CanaryRules(on_win="promote", on_loss="withdraw", min_sessions=30))
    assert decision("better", 29, auto, CANARY) == "wait"
    assert decision("better", 30, auto, CANARY) == "promote"
    assert decision("worse", 3, auto, CANARY) == "withdraw"
    assert decision("none", 300, auto, CANARY) == "wait"
    told = effective(CanaryRules())
    assert decision("better", 300, told, CANARY) == "notify"
    assert decision("worse", 300, told, CANARY) == "notify"


def test_rule_values_are_checked() -> None:
    assert check_share(12.345) == 12.35
    for bad in (0, 100, -1, 101, "20", True, float("nan"), 0.001):
        with pytest.raises(InvalidContent):
            check_share(bad)
    for changes in ({"on_win": "yes"}, {"alpha": 0.5}, {"min_sessions": 0}, {"nope": 1},
                    {"assignment": "random"}):  # fmt: skip
        with pytest.raises(InvalidContent):
            check_rules(changes)
    check_rules({"share": 20, "alpha": 0.1, "on_loss": "withdraw", "min_sessions": None})
