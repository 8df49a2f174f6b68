"""A learner that never loses work and shows what it did, end to end: real traffic through the
proxy, real litellm calls to a scripted model on loopback, the admin API and the CLI.

Covers skillproxy/admin/episodes.py, skillproxy/episodes_cli.py, the waiting and re-queueing
in store/sqlite/learner.py, and learner/runner.py's deferral."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from learner.service import learn_once
from skillproxy.cli import main
from tests.fakes import replies
from tests.harness import ADMIN_TOKEN, RunningProxy
from tests.test_learner_e2e import LESSONS, admin, conversation, learner_config, reflection

OUTAGE = replies.error(503, {"error": {"message": "overloaded", "type": "server_error"}})


def cli(proxy: RunningProxy, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([*argv, "--url", proxy.url, "--token", ADMIN_TOKEN])
    out, err = capsys.readouterr()
    return code, out + err


def test_an_outage_leaves_episodes_waiting_and_a_later_run_reflects_them(
    proxy: RunningProxy,
) -> None:
    for n in range(2):
        conversation(proxy, n)
    proxy.traces(4)
    proxy.provider.enqueue(OUTAGE, OUTAGE)
    [down] = learn_once(learner_config(proxy, retries=0))
    assert (down.reflections, down.deferred, down.failures) == (0, 2, 0)
    assert down.stopped is not None and "every reflection failed: model unreachable" in down.stopped
    [run] = admin(proxy, "GET", "/learner/runs").json()["data"]
    assert run["status"] == "failed" and "model unreachable" in run["error"]
    waiting = admin(proxy, "GET", "/episodes", params={"status": "open"}).json()["data"]
    assert [(e["attempts"], e["error"].split(":")[0]) for e in waiting] == [
        (1, "model unreachable"), (1, "model unreachable"),
    ]  # fmt: skip

    proxy.provider.enqueue(reflection(LESSONS[0]), reflection(LESSONS[1]))
    [back] = learn_once(learner_config(proxy, retries=0))
    assert (back.reflections, back.deferred, back.failures) == (2, 0, 0)
    statuses = {e["status"] for e in admin(proxy, "GET", "/episodes").json()["data"]}
    assert statuses == {"reflected"}


def test_after_max_attempts_an_episode_fails_and_retry_requeues_it(
    proxy: RunningProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    conversation(proxy, 1)
    proxy.traces(2)
    config = learner_config(proxy, retries=0, max_attempts=2)
    for _ in range(2):
        proxy.provider.enqueue(replies.text("not json"), replies.text("still not json"))
        learn_once(config)
    [failed] = admin(proxy, "GET", "/episodes", params={"status": "failed"}).json()["data"]
    assert failed["error"].startswith("malformed answer:") and "(2 attempts)" in failed["error"]
    assert learn_once(config) == []  # nothing waits: failed is final until re-queued

    code, out = cli(proxy, capsys, "episodes", "list", "--status", "failed")
    assert code == 0 and failed["id"] in out and "malformed answer" in out
    code, out = cli(proxy, capsys, "episodes", "retry", "--failed", "--skillbook", "support")
    assert (code, out) == (0, "re-queued 1 episode\n")
    again = admin(proxy, "GET", f"/episodes/{failed['id']}").json()
    assert (again["status"], again["attempts"]) == ("open", 0)
    refused = admin(proxy, "POST", f"/episodes/{failed['id']}/retry")
    assert refused.status_code == 409 and "only failed ones" in refused.json()["error"]["message"]

    proxy.provider.enqueue(reflection(LESSONS[0], correct_approach="Check the window first."))
    [summary] = learn_once(config)
    assert summary.reflections == 1


def test_an_episode_shows_its_traces_feedback_reflection_and_the_skill_links_back(
    proxy: RunningProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    last = conversation(proxy, 1)
    proxy.traces(2)
    proxy.provider.enqueue(
        reflection(
            LESSONS[0],
            correct_approach="Check the return window before asking for anything.",
            new_skills=[{"section": "returns", "content": "Ask for the API key first, always."}],
        )
    )
    [summary] = learn_once(learner_config(proxy))
    assert summary.reflections == 1 and summary.proposals == 1
    [episode] = admin(proxy, "GET", "/episodes", params={"skillbook": "support"}).json()["data"]
    detail = admin(proxy, "GET", f"/episodes/{episode['id']}").json()
    assert [t["id"] for t in detail["traces"]][-1] == last
    [stored] = detail["reflections"]
    assert stored["reflection"]["correct_approach"].startswith("Check the return window")
    assert stored["reflection"]["root_cause"] == "Eligibility was not checked first."
    [refused] = detail["refused"]
    assert refused["content"] == "Ask for the API key first, always."
    assert "credentials" in refused["rule"] or "secret" in refused["rule"]
    listed = admin(proxy, "GET", "/skillbooks/support/refused").json()["data"]
    assert [r["seq"] for r in listed] == [refused["seq"]]

    [skill] = admin(proxy, "GET", "/skillbooks/support/skills").json()["data"]
    evidence = admin(proxy, "GET", f"/skills/{skill['id']}").json()["evidence"]
    assert evidence[0]["reflection"] == stored["seq"]
    why = admin(proxy, "GET", f"/reflections/{stored['seq']}").json()
    assert why["episode_id"] == episode["id"]

    code, out = cli(proxy, capsys, "episodes", "show", episode["id"])
    assert code == 0 and "correct_approach: Check the return window" in out
    assert "rule:" in out


def test_learn_once_exits_non_zero_with_the_reason_when_every_reflection_failed(
    proxy: RunningProxy,
) -> None:
    conversation(proxy, 1)
    proxy.traces(2)
    proxy.provider.enqueue(OUTAGE)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SKILLPROXY_")}
    environ |= {"SKILLPROXY_LEARNER__RETRIES": "0"}
    argv = [
        sys.executable, "-m", "skillproxy", "learn", "--once", "--db", proxy.config.store.url,
        "--model", "openai/reflector-model", "--api-base", proxy.provider_url + "/v1",
    ]  # fmt: skip
    waiting = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=120)
    assert waiting.returncode == 0
    assert "nothing to learn from yet: 2 traces still settling" in waiting.stderr
    assert "the first is ready at" in waiting.stderr and "--now" in waiting.stderr

    done = subprocess.run(
        [*argv, "--now"], env=environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert "1 waiting to retry" in done.stdout
    assert "could do nothing useful for support: every reflection failed: model unreachable" in (
        done.stderr
    )


def test_harmful_votes_and_a_removal_become_retire_proposals_and_the_cap_proposes_one(
    proxy: RunningProxy,
) -> None:
    doomed = proxy.add_skill("support", "returns", "When a customer is upset, offer a voucher.")
    removed = proxy.add_skill("support", "tone", "When greeting, use the customer's first name.")
    conversation(proxy, 1)
    proxy.traces(2)
    harmful = [{"skill_id": doomed, "tag": "harmful", "reason": "made it worse"}]
    proxy.provider.enqueue(
        reflection(None, tags=harmful, removals=[{"skill_id": removed, "reason": "rude"}])
    )
    learn_once(learner_config(proxy))
    first = admin(proxy, "GET", f"/skills/{doomed}").json()
    assert first["harmful"] == 1 and first["retire_reason"] is None  # one vote proves nothing
    gone = admin(proxy, "GET", f"/skills/{removed}").json()
    assert gone["status"] == "active" and gone["retire_reason"].startswith("removal suggested")
    for n in range(2, 5):
        conversation(proxy, n)
        proxy.traces(2 * n)
        proxy.provider.enqueue(reflection(None, tags=harmful))
        learn_once(learner_config(proxy))
    doomed_now = admin(proxy, "GET", f"/skills/{doomed}").json()
    assert doomed_now["harmful"] == 4 and doomed_now["status"] == "active"
    assert "harmful outweighs helpful" in doomed_now["retire_reason"]
    assert doomed_now["history"][-1]["action"] == "retire proposed"

    capped = admin(proxy, "PATCH", "/skillbooks/capped/settings", json={"max_active": 1})
    assert capped.status_code == 200 and capped.json()["max_active"] == 1
    old = proxy.add_skill("capped", "a", "When a date is missing, ask for it before booking.")
    new = proxy.add_skill("capped", "b", "When a flight is full, offer the next one first.")
    assert admin(proxy, "GET", f"/skills/{new}").json()["retire_reason"] is None
    reason = admin(proxy, "GET", f"/skills/{old}").json()["retire_reason"]
    assert "at most 1 active skills" in reason


def test_reflections_are_kept_as_answered_with_every_field(proxy: RunningProxy) -> None:
    conversation(proxy, 1)
    proxy.traces(2)
    proxy.provider.enqueue(reflection(LESSONS[0], correct_approach="Check first."))
    learn_once(learner_config(proxy))
    [episode] = admin(proxy, "GET", "/episodes").json()["data"]
    [stored] = admin(proxy, "GET", f"/episodes/{episode['id']}").json()["reflections"]
    kept: dict[str, Any] = stored["reflection"]
    assert {"what_happened", "what_went_wrong", "root_cause", "key_insight"} <= kept.keys()
    assert json.dumps(kept)  # plain JSON all the way down


def test_a_failure_recurring_across_episodes_becomes_one_skill_with_all_of_them_as_evidence(
    proxy: RunningProxy,
) -> None:
    """learner/patterns.py: the pass runs once `pattern_every` new reflections are in."""
    last_traces = [conversation(proxy, n) for n in range(5)]
    proxy.traces(10)
    lesson = "When a return is asked for, check the delivery date before anything else."
    pattern = {
        "patterns": [
            {"section": "returns", "content": lesson, "reason": "asked for details first",
             "episodes": ["E1", "E3", "E5", "E5", "E9"]},  # a repeat and a made-up label
            {"section": "returns", "content": "When sad, cry.", "episodes": ["E2"]},  # one only
        ]
    }  # fmt: skip
    proxy.provider.enqueue(*[reflection(None) for _ in range(5)], replies.text(json.dumps(pattern)))
    [summary] = learn_once(learner_config(proxy, pattern_every=5))
    assert (summary.reflections, summary.patterns, summary.proposals) == (5, 1, 1), summary.refused
    assert summary.llm_calls == 6
    [skill] = admin(proxy, "GET", "/skillbooks/support/skills").json()["data"]
    assert (skill["content"], skill["status"]) == (lesson, "pending")
    evidence = admin(proxy, "GET", f"/skills/{skill['id']}").json()["evidence"]
    assert {e["trace_id"] for e in evidence} == {last_traces[0], last_traces[2], last_traces[4]}
    assert all(e["reason"].startswith("recurs in 3 episodes") for e in evidence)

    conversation(proxy, 9)
    proxy.traces(12)
    proxy.provider.enqueue(reflection(None))
    [later] = learn_once(learner_config(proxy, pattern_every=5))
    assert (later.reflections, later.llm_calls, later.patterns) == (1, 1, 0)  # 1 new: no pass


@pytest.mark.parametrize(
    ("existing", "lesson", "verdict"),
    [
        (
            "When a customer asks for a refund, always grant it before checking the order.",
            "When a customer asks for a refund, never grant it before checking the order.",
            "contradicts",
        ),
        (
            "When a customer asks to return an item, check the return window first.",
            "When a customer wants to send an item back, verify the return window first.",
            "same",
        ),
        (
            "When a customer asks to return an item, check the return window first.",
            "When a customer asks to return an item, check the return window and the receipt "
            "first.",
            "refines",
        ),
    ],
)
def test_a_lesson_close_to_a_skill_is_judged_and_handled_by_the_verdict(
    proxy: RunningProxy, existing: str, lesson: str, verdict: str
) -> None:
    """learner/close_lessons.py: embeddings find the pair, the model's verdict decides."""
    skill = proxy.add_skill("support", "returns", existing)
    conversation(proxy, 1)
    proxy.traces(2)
    answer = json.dumps({"verdict": verdict, "reason": "compared"})
    proxy.provider.enqueue(reflection(lesson), replies.text(answer))
    [summary] = learn_once(learner_config(proxy, judge_pairs=True))
    assert summary.llm_calls == 2, "the pair was not close enough to be judged"
    judged = proxy.provider.last.body.decode()
    assert existing in judged and lesson in judged
    skills = {s["id"]: s for s in admin(proxy, "GET", "/skillbooks/support/skills").json()["data"]}
    others = [s for sid, s in skills.items() if sid != skill]
    if verdict == "same":
        assert others == [] and summary.merged == 1
        assert len(admin(proxy, "GET", f"/skills/{skill}").json()["evidence"]) == 1
        return
    [new] = others
    assert new["content"] == lesson
    if verdict == "contradicts":
        assert (new["contradicts"], new["status"]) == (skill, "pending")
    else:
        assert new["supersedes"] == skill and new["status"] == "pending"
