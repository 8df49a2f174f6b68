"""Canary rollouts end to end: a scripted agent, the real proxy, feedback, and the decisions.

The "model" is scripted on the test's side of the fake provider: after each turn the test
reads the system prompt the provider received, and the agent's session succeeds with a
chance that depends only on whether the canary's rule was in it. Feedback goes through
`POST /v1/feedback`; the proxy's own background watch (proxy/canary_watch.py) promotes or
withdraws. Covers proxy/canary_watch.py, store/sqlite/canaries.py, the canary admin routes and
the canary parts of proxy/skillbook_cache.py and proxy/injection.py.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.harness import Cli, RunningProxy, wait_for

BOOK = "support"
RULE = "When a customer asks for a refund, check the order date before promising anything."
OTHER = "When a customer is upset, acknowledge the problem before proposing any fix."
BASE = "Always answer in the language the customer wrote in, even when it is not English."


@dataclass
class Run:
    sessions: int
    with_rule: int
    arms: dict[str, bool]
    """Session id -> whether its turns carried the rule (every turn alike, or the test fails)."""


def system_of(proxy: RunningProxy) -> str:
    messages = proxy.provider.last.json()["messages"]
    return str(messages[0]["content"]) if messages[0]["role"] == "system" else ""


def drive(
    proxy: RunningProxy,
    rule: str,
    chance: Callable[[bool], float],
    *,
    sessions: int,
    seed: int,
    prefix: str,
    until: Callable[[], bool] = lambda: False,
    turns: int = 2,
) -> Run:
    """`sessions` conversations of `turns` turns each, every one rated by feedback; stops
    early once `until()` holds (checked every ten sessions)."""
    rng = random.Random(seed)
    client = proxy.openai(BOOK)
    arms: dict[str, bool] = {}
    done = 0
    with httpx.Client() as http:
        for i in range(sessions):
            sid = f"{prefix}-{i}"
            messages: list[Any] = [
                {"role": "system", "content": "You are a support agent."},
                {"role": "user", "content": f"Customer {i}: I want my money back."},
            ]
            seen: set[bool] = set()
            for _ in range(turns):
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=messages, extra_headers={"X-Session-Id": sid}
                )
                seen.add(rule in system_of(proxy))
                messages += [
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "and then?"},
                ]
            if len(seen) > 1:  # only a decision may change what a running session gets
                assert until(), f"session {sid} changed arm mid-way"
                break
            arms[sid] = seen.pop()
            success = rng.random() < chance(arms[sid])
            answer = http.post(
                f"{proxy.sb(BOOK)}/feedback",
                json={"session_id": sid, "score": 1.0 if success else 0.0},
            )
            assert answer.status_code in (201, 202), answer.text
            done += 1
            if i % 10 == 9 and until():
                break
    return Run(done, sum(arms.values()), arms)


def rules(proxy: RunningProxy, **changes: Any) -> dict[str, Any]:
    answer = proxy.admin("PATCH", f"/skillbooks/{BOOK}/canary-rules", json=changes)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def start(proxy: RunningProxy, skill_id: str, share: float) -> dict[str, Any]:
    answer = proxy.admin("POST", f"/skills/{skill_id}/canary", json={"share": share})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def skill(proxy: RunningProxy, skill_id: str) -> dict[str, Any]:
    return dict(proxy.admin("GET", f"/skills/{skill_id}").json())


def report(proxy: RunningProxy, skill_id: str) -> dict[str, Any]:
    answer = proxy.admin("GET", f"/skills/{skill_id}/canary")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


WAIT_S = 5.0
"""How long a canary decision may take to show: the watch looks every 50 ms here."""


def ended(proxy: RunningProxy, skill_id: str) -> Callable[[], bool]:
    def check() -> bool:
        time.sleep(0.15)  # the watch polls every refresh interval (50 ms here)
        return bool(skill(proxy, skill_id)["canary"]["status"] != "running")

    return check


@pytest.fixture
def canary_proxy(make_proxy: Callable[..., RunningProxy]) -> RunningProxy:
    proxy = make_proxy()
    proxy.add_skill(BOOK, "language", BASE)
    rules(proxy, on_win="promote", on_loss="withdraw", min_sessions=20)
    return proxy


def test_a_helpful_rule_is_promoted_on_evidence(canary_proxy: RunningProxy) -> None:
    proxy = canary_proxy
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    started = start(proxy, rule_id, 50)
    assert (started["status"], started["share"], started["assignment"]) == (
        "running",
        50.0,
        "disjoint",
    )
    run = drive(
        proxy, RULE, lambda has: 0.9 if has else 0.2, sessions=300, seed=1, prefix="help",
        until=ended(proxy, rule_id),
    )  # fmt: skip
    wait_for(ended(proxy, rule_id), timeout=WAIT_S)
    shown = skill(proxy, rule_id)
    assert shown["status"] == "active"
    assert shown["canary"]["status"] == "promoted"
    assert 0 < run.with_rule < run.sessions  # both arms were served
    approval = [e for e in shown["history"] if e["action"] == "approve"][-1]
    assert approval["actor"] == "canary"
    figures = approval["detail"]
    assert figures["verdict"] == "better" and figures["interval"]["low"] > 0
    assert figures["treatment"]["rated_sessions"] >= 20
    assert figures["decision"] == "promote"
    # promoted: now injected for every session, in one section for all
    drive(proxy, RULE, lambda has: 1.0, sessions=3, seed=2, prefix="after")
    assert RULE in system_of(proxy)


def test_a_harmful_rule_is_withdrawn_and_a_person_can_bring_it_back(
    canary_proxy: RunningProxy,
) -> None:
    proxy = canary_proxy
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    start(proxy, rule_id, 50)
    drive(
        proxy, RULE, lambda has: 0.2 if has else 0.9, sessions=300, seed=3, prefix="harm",
        until=ended(proxy, rule_id),
    )  # fmt: skip
    wait_for(ended(proxy, rule_id), timeout=WAIT_S)
    shown = skill(proxy, rule_id)
    assert (shown["status"], shown["canary"]["status"]) == ("archived", "withdrawn")
    archive = [e for e in shown["history"] if e["action"] == "archive"][-1]
    assert archive["actor"] == "canary" and archive["detail"]["verdict"] == "worse"
    assert archive["detail"]["interval"]["high"] < 0
    drive(proxy, RULE, lambda has: 1.0, sessions=2, seed=4, prefix="gone")
    assert RULE not in system_of(proxy) and BASE in system_of(proxy)
    restored = proxy.admin("POST", f"/skills/{rule_id}/restore")
    assert restored.json()["status"] == "pending"  # reversible: back in the review queue


def test_a_neutral_rule_gets_no_verdict_within_the_session_limit(
    canary_proxy: RunningProxy,
) -> None:
    proxy = canary_proxy
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    start(proxy, rule_id, 50)
    run = drive(proxy, RULE, lambda has: 0.5, sessions=120, seed=5, prefix="same")
    time.sleep(0.3)  # let the watch look at the last feedback
    shown = skill(proxy, rule_id)
    assert (shown["status"], shown["canary"]["status"]) == ("pending", "running")
    figures = report(proxy, rule_id)
    assert figures["verdict"] == "none" and figures["decision"] == "wait"
    treated, control = figures["treatment"], figures["control"]
    assert treated["sessions"] + control["sessions"] == run.sessions == 120
    assert treated["sessions"] == run.with_rule
    assert treated["rated_sessions"] == treated["sessions"]
    assert treated["turns_per_session"] == control["turns_per_session"] == 2
    assert treated["tokens_per_session"] > 0
    low, high = figures["interval"]["low"], figures["interval"]["high"]
    assert low < 0 < high
    assert figures["needs"]["effect"] == 0.1 and figures["needs"]["more_rated_sessions"] > 0
    assert any("more rated sessions" in line for line in figures["limits"])
    assert "Howard" in figures["method"]
    wider = proxy.admin("GET", f"/skills/{rule_id}/canary", params={"effect": 0.3}).json()
    assert wider["needs"]["more_rated_sessions"] < figures["needs"]["more_rated_sessions"]


def test_assignment_is_stable_per_session_and_follows_the_share(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy()
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    start(proxy, rule_id, 30)
    first = drive(proxy, RULE, lambda has: 0.5, sessions=80, seed=6, prefix="s", turns=3)
    again = drive(proxy, RULE, lambda has: 0.5, sessions=80, seed=6, prefix="s", turns=1)
    assert again.arms == first.arms  # the same session, later: the same arm
    assert 10 <= first.with_rule <= 40  # about 30% of 80
    client = proxy.openai(BOOK)
    # without X-Session-Id: the conversation's first user message keeps it in one arm
    seen: dict[str, set[bool]] = {}
    for i in range(30):
        messages: list[Any] = [{"role": "user", "content": f"Headerless customer {i} asks"}]
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            seen.setdefault(str(i), set()).add(RULE in system_of(proxy))
            messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "?"}]
    assert all(len(arms) == 1 for arms in seen.values())
    assert 0 < sum(True in arms for arms in seen.values()) < 30
    # each arm's bytes are the same for all its sessions: two distinct system prompts
    traces = proxy.traces(80 * 4 + 90)
    injected = {tuple(t["injected_skill_ids"] or ()) for t in traces}
    assert injected == {(rule_id,), ()}


def test_several_canaries_get_disjoint_arms_and_the_report_says_so(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy()
    base_id = proxy.add_skill(BOOK, "language", BASE)
    first = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    second = proxy.add_skill(BOOK, "tone", OTHER, approve=False)
    a, b = start(proxy, first, 40), start(proxy, second, 40)
    assert (a["bucket_lo"], a["bucket_hi"], b["bucket_lo"], b["bucket_hi"]) == (0, 4000, 4000, 8000)
    refused = proxy.admin("POST", f"/skills/{base_id}/canary", json={"share": 30})
    assert refused.status_code == 409 and "no room" in refused.json()["error"]["message"]
    drive(proxy, RULE, lambda has: 0.5, sessions=60, seed=7, prefix="two", turns=1)
    traces = proxy.traces(60)
    combos = {frozenset(t["injected_skill_ids"]) - {base_id} for t in traces}
    assert combos == {frozenset(), frozenset({first}), frozenset({second})}
    shown = report(proxy, first)
    assert shown["assignment"].startswith("disjoint") and shown["beside"] == [second]
    listed = proxy.admin("GET", f"/skillbooks/{BOOK}/canaries").json()["data"]
    assert [r["canary"]["skill_id"] for r in listed] == [first, second]
    # control is the sessions in neither treatment
    in_second = sum(frozenset({second}) <= frozenset(t["injected_skill_ids"]) for t in traces)
    assert shown["treatment"]["sessions"] + shown["control"]["sessions"] == 60 - in_second


def test_independent_assignment_lets_sessions_be_in_several_treatments(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy()
    first = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    second = proxy.add_skill(BOOK, "tone", OTHER, approve=False)
    rules(proxy, assignment="independent")
    start(proxy, first, 60)
    start(proxy, second, 60)
    drive(proxy, RULE, lambda has: 0.5, sessions=40, seed=8, prefix="ind", turns=1)
    combos = {frozenset(t["injected_skill_ids"]) for t in proxy.traces(40)}
    assert frozenset({first, second}) in combos and len(combos) == 4
    assert report(proxy, first)["assignment"].startswith("independent")


def test_a_skillbook_rule_makes_every_approval_a_canary(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy()
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    view = rules(proxy, share=25)
    assert view["rules"]["share"] == 25 and view["effective"]["on_win"] == "notify"
    approved = proxy.admin("POST", f"/skills/{rule_id}/approve").json()
    assert approved["status"] == "pending" and approved["canary"]["share"] == 25
    assert approved["history"][-1]["action"] == "canary start 25%"
    # a person approving it again promotes it: the canary ends, the skill is live
    promoted = proxy.admin("POST", f"/skills/{rule_id}/approve").json()
    assert promoted["status"] == "active" and promoted["canary"]["status"] == "promoted"


def test_notify_records_the_verdict_once_and_acts_on_nothing(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy()
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    start(proxy, rule_id, 50)

    def told() -> bool:
        time.sleep(0.1)
        return any(e["action"] == "canary verdict better" for e in skill(proxy, rule_id)["history"])

    drive(
        proxy, RULE, lambda has: 1.0 if has else 0.0, sessions=200, seed=9, prefix="tell",
        until=told,
    )  # fmt: skip
    wait_for(told, timeout=WAIT_S)
    drive(proxy, RULE, lambda has: 1.0 if has else 0.0, sessions=10, seed=10, prefix="more")
    time.sleep(0.3)
    shown = skill(proxy, rule_id)
    assert shown["status"] == "pending" and shown["canary"]["status"] == "running"
    told_events = [e for e in shown["history"] if e["action"].startswith("canary verdict")]
    assert len(told_events) == 1 and told_events[0]["detail"]["decision"] == "notify"


def test_stop_leaves_the_skill_as_it_was(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy()
    live = proxy.add_skill(BOOK, "refunds", RULE)
    start(proxy, live, 50)  # an active skill: now only in its treatment arm
    drive(proxy, RULE, lambda has: 0.5, sessions=20, seed=11, prefix="stop", turns=1)
    assert {tuple(t["injected_skill_ids"] or ()) for t in proxy.traces(20)} == {(live,), ()}
    stopped = proxy.admin("POST", f"/skills/{live}/canary/stop", json={"note": "enough"})
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    shown = skill(proxy, live)
    assert shown["status"] == "active" and shown["canary"]["end_reason"] == "enough"
    again = proxy.admin("POST", f"/skills/{live}/canary/stop")
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"share": 0}, 422, None),
        ({"share": 100}, 422, None),
        ({"share": 150}, 422, None),
        ({"share": 99.999}, 422, None),  # rounds to 100%: no control left
        ({"share": 0.004}, 422, None),  # rounds to 0%
        ({"share": -5}, 422, None),
        ({"share": "20"}, 422, None),
        ({}, 422, None),
        ({"share": 20, "extra": 1}, 422, None),
    ],
)
def test_bad_shares_are_refused_in_the_admin_error_format(
    proxy: RunningProxy, body: dict[str, Any], status: int, code: str | None
) -> None:
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    answer = proxy.admin("POST", f"/skills/{rule_id}/canary", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["message"] and error["type"] and error["code"]


def test_canaries_refuse_unknown_rejected_and_doubled_skills(proxy: RunningProxy) -> None:
    missing = proxy.admin("POST", "/skills/nope-00099/canary", json={"share": 20})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert proxy.admin("GET", "/skills/nope-00099/canary").status_code == 404
    rejected = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    proxy.admin("POST", f"/skills/{rejected}/reject")
    refused = proxy.admin("POST", f"/skills/{rejected}/canary", json={"share": 20})
    assert refused.status_code == 409
    assert "only pending or active" in refused.json()["error"]["message"]
    never = proxy.add_skill(BOOK, "tone", OTHER, approve=False)
    assert proxy.admin("GET", f"/skills/{never}/canary").status_code == 404
    start(proxy, never, 20)
    doubled = proxy.admin("POST", f"/skills/{never}/canary", json={"share": 20})
    assert doubled.status_code == 409 and "already a canary" in doubled.json()["error"]["message"]
    bad_rules = proxy.admin("PATCH", f"/skillbooks/{BOOK}/canary-rules", json={"on_win": "yes"})
    assert bad_rules.status_code == 422
    assert proxy.admin("GET", "/skillbooks/nowhere/canary-rules").status_code == 404
    unknown = proxy.admin("PATCH", "/skillbooks/nowhere/canary-rules", json={"share": 20})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert proxy.admin("GET", "/skillbooks/nowhere").status_code == 404  # none was made
    stop_unknown = proxy.admin("POST", "/skills/nope-00099/canary/stop")
    assert stop_unknown.status_code == 404
    assert stop_unknown.json()["error"]["code"] == "not_found"
    odd_bodies: list[object] = [[], 0, "note"]
    for body in odd_bodies:
        odd = proxy.admin("POST", f"/skills/{never}/canary/stop", json=body)
        assert odd.status_code == 422, (body, odd.text)
    assert skill(proxy, never)["canary"]["status"] == "running"


def test_an_edit_stops_the_canary_and_the_history_says_why(proxy: RunningProxy) -> None:
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    start(proxy, rule_id, 20)
    proxy.admin("PATCH", f"/skills/{rule_id}", json={"content": RULE + " Always."})
    canary = skill(proxy, rule_id)["canary"]
    assert canary["status"] == "stopped" and canary["end_reason"].startswith("edit")


def test_the_cli_approves_as_a_canary_and_shows_its_figures(proxy: RunningProxy, cli: Cli) -> None:
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    code, out, _ = cli("skills", "approve", rule_id, "--canary", "20%")
    assert code == 0 and f"canary {rule_id}: 20% of sessions" in out
    code, out, _ = cli("skills", "canary", rule_id)
    assert code == 0 and "SESSIONS" in out and "verdict     no data" in out
    with pytest.raises(SystemExit) as exit_:
        cli("skills", "approve", rule_id, "--canary", "150%")
    assert exit_.value.code == 2
    code, out, _ = cli("skills", "canary", rule_id, "--stop")
    assert code == 0 and skill(proxy, rule_id)["canary"]["status"] == "stopped"


@pytest.mark.parametrize("ranking", ["usefulness", "relevance"])
def test_in_its_arm_a_canary_goes_first_so_the_budget_never_leaves_it_out(
    make_proxy: Callable[..., RunningProxy], ranking: str
) -> None:
    proxy = make_proxy()
    base = proxy.add_skill(BOOK, "language", BASE)
    alone = proxy.admin("GET", f"/skillbooks/{BOOK}/prompt").json()["tokens"]
    settings = {"token_budget": alone + 4, "ranking": ranking}  # room for one skill only
    assert proxy.admin("PATCH", f"/skillbooks/{BOOK}/settings", json=settings).status_code == 200
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    start(proxy, rule_id, 50)
    drive(proxy, RULE, lambda has: 0.5, sessions=30, seed=12, prefix=ranking, turns=1)
    injected = {tuple(t["injected_skill_ids"] or ()) for t in proxy.traces(30)}
    assert injected == {(rule_id,), (base,)}  # treatment: the canary in the base skill's place


def test_freezing_the_skillbook_stops_its_canaries(proxy: RunningProxy) -> None:
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    start(proxy, rule_id, 20)
    frozen = proxy.admin("PATCH", f"/skillbooks/{BOOK}/settings", json={"frozen": True})
    assert frozen.status_code == 200
    canary = skill(proxy, rule_id)["canary"]
    assert (canary["status"], canary["end_reason"]) == ("stopped", "the skillbook was frozen")
    refused = proxy.admin("POST", f"/skills/{rule_id}/canary", json={"share": 20})
    assert refused.status_code == 409 and "frozen" in refused.json()["error"]["message"]


def test_a_share_rule_never_blocks_an_approval(proxy: RunningProxy) -> None:
    first = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    second = proxy.add_skill(BOOK, "tone", OTHER, approve=False)
    third = proxy.add_skill(BOOK, "language", BASE, approve=False)
    rules(proxy, share=60)
    assert proxy.admin("POST", f"/skills/{first}/approve").json()["canary"]["share"] == 60
    # no room for another 60%: a plain approval, and the history says why
    answer = proxy.admin("POST", f"/skills/{second}/approve")
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["status"] == "active" and shown["canary"] is None
    assert "approved without a canary" in shown["history"][-1]["note"]
    # frozen: approvals go on, as plain ones
    frozen = proxy.admin("PATCH", f"/skillbooks/{BOOK}/settings", json={"frozen": True})
    assert frozen.status_code == 200
    answer = proxy.admin("POST", f"/skills/{third}/approve")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "active"
    assert "frozen" in answer.json()["history"][-1]["note"]


def test_disjoint_canaries_always_leave_a_control(proxy: RunningProxy) -> None:
    first = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    second = proxy.add_skill(BOOK, "tone", OTHER, approve=False)
    start(proxy, first, 50)
    refused = proxy.admin("POST", f"/skills/{second}/canary", json={"share": 50})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] and "leave no control arm" in error["message"]
    assert start(proxy, second, 49.99)["bucket_lo"] == 5000


def test_changing_the_rules_wakes_the_watch(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy()
    rule_id = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    rules(proxy, min_sessions=5)
    start(proxy, rule_id, 50)

    def told() -> bool:
        time.sleep(0.1)
        return any(e["action"] == "canary verdict better" for e in skill(proxy, rule_id)["history"])

    drive(
        proxy, RULE, lambda has: 1.0 if has else 0.0, sessions=200, seed=13, prefix="wake",
        until=told, turns=1,
    )  # fmt: skip
    wait_for(told, timeout=WAIT_S)
    time.sleep(1.2)  # past the watch's gap (20 intervals): every feedback has been looked at
    rules(proxy, on_win="promote")  # no feedback comes after this: only the rules moved
    wait_for(ended(proxy, rule_id), timeout=WAIT_S)
    assert skill(proxy, rule_id)["status"] == "active"


def test_the_cli_starts_canaries_all_or_none_and_tells_a_rule_made_one(
    proxy: RunningProxy, cli: Cli
) -> None:
    first = proxy.add_skill(BOOK, "refunds", RULE, approve=False)
    rejected = proxy.add_skill(BOOK, "tone", OTHER, approve=False)
    proxy.admin("POST", f"/skills/{rejected}/reject")
    code, _, err = cli("skills", "approve", first, rejected, "--canary", "20%")
    assert code == 1 and rejected in err and f"stopped again (none started): {first}" in err
    shown = skill(proxy, first)
    assert (shown["status"], shown["canary"]["status"]) == ("pending", "stopped")
    assert shown["canary"]["end_reason"] == f"undone: {rejected} could not start"
    rules(proxy, share=20)
    code, out, _ = cli("skills", "approve", first)
    assert code == 0 and f"approved {first} as a canary: 20% of sessions" in out
    assert "now pending" not in out
