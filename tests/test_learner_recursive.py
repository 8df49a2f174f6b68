"""The recursive reflector: the model runs code over a long episode in a sandbox, then concludes.

Covers learner/recursive.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learner.llm import complete, shared_clients
from learner.recursive import recursive_reflect
from learner.reflector import Spend
from learner.sandbox import sandbox_support
from learner.service import learn_once
from tests.fakes import replies
from tests.harness import RunningProxy
from tests.test_learner_e2e import LESSONS, conversation, learner_config
from tests.test_reflection import episode_with_tools, lessons, support_chat_with_tools

REASON = sandbox_support()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no sandbox here: {REASON}")


def action(**fields: object) -> replies.Reply:
    return replies.text(json.dumps(fields))


def test_model_investigates_with_code_and_hostile_code_stays_inside(proxy: RunningProxy) -> None:
    conversation(proxy, 1)
    proxy.traces(2)
    database = Path(proxy.config.store.location.path).resolve()
    final = {
        "what_happened": "Asked for an address before checking eligibility.",
        "key_insight": "Check the return window first.",
        "new_skill": {"section": "returns", "content": LESSONS[0]},
    }
    proxy.provider.enqueue(
        action(action="final", reflection=final),  # refused: no code run yet
        action(action="run_code", code="print(len(episode), episode[-1]['content'])"),
        action(action="run_code", code=f"print(open({str(database)!r}, 'rb').read(20))"),
        action(
            action="run_code",
            code="import socket\nsocket.create_connection(('127.0.0.1', 1), timeout=1)",
        ),
        action(action="final", reflection=final),
    )
    config = learner_config(proxy, recursive=True, recursive_threshold_tokens=1)
    [summary] = learn_once(config)
    assert (summary.reflections, summary.proposals, summary.llm_calls) == (1, 1, 5)
    sent = [r.json()["messages"][-1]["content"] for r in proxy.provider.received[-4:]]
    assert "Run code at least once" in sent[0]
    assert "5 Sorry, returns are only accepted within 30 days." in sent[1]
    assert "Error" in sent[2] and ("FileNotFoundError" in sent[2] or "PermissionError" in sent[2])
    assert "SQLite format" not in sent[2]
    assert "Error" in sent[3]


def test_out_of_steps_asks_for_the_final_answer_once(proxy: RunningProxy) -> None:
    conversation(proxy, 1)
    proxy.traces(2)
    proxy.provider.enqueue(
        action(action="run_code", code="while True: pass"),  # killed at the time limit
        action(action="run_code", code="x = 1"),
        replies.text("not json at all"),
    )
    config = learner_config(
        proxy,
        recursive=True,
        recursive_threshold_tokens=1,
        recursive_max_steps=2,
        sandbox_timeout_s=1.0,
        max_attempts=1,  # failed at once, not kept for a later run
    )
    [summary] = learn_once(config)
    assert (summary.reflections, summary.failures) == (0, 1)
    timed_out = proxy.provider.received[-2].json()["messages"][-1]["content"]
    assert "Timed out" in timed_out


def test_the_tools_are_in_the_overview_and_the_sandbox_and_lessons_are_capped(
    proxy: RunningProxy,
) -> None:
    support_chat_with_tools(proxy)
    config = learner_config(proxy, recursive=True, max_lessons_per_episode=1)
    final = {"what_happened": "Refunded late.", "correct_approach": "Refund at once."}
    proxy.provider.enqueue(
        action(action="run_code", code="print([t['name'] for t in tools], len(episode))"),
        action(action="final", reflection={**final, "new_skills": lessons(3)}),
    )
    episode, tools = episode_with_tools(config)
    with shared_clients():
        reflection = recursive_reflect(
            lambda messages: complete(config.learner, messages),
            episode,
            {},
            config.learner,
            Spend(),
            tools=tools,
        )
    opening, observed = (r.json()["messages"] for r in proxy.provider.received[-2:])
    assert (
        "`tools` (list of dicts: name, description, parameters, required)" in opening[0]["content"]
    )
    assert "Propose at most 1 new skill, a lesson that" in opening[0]["content"]
    assert "- lookup_order(order_id, email?): Look up an order by its id." in opening[1]["content"]
    assert observed[-1]["content"] == "Output:\n['lookup_order', 'issue_refund'] 5\n"
    assert reflection.correct_approach == "Refund at once."
    assert [n.content for n in reflection.new_skills] == [lessons(1)[0]["content"]]
