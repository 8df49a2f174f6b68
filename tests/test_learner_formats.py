"""Anthropic Messages and OpenAI Responses traffic feeds the learner like Chat Completions does."""

from __future__ import annotations

from learner.service import learn_once
from tests.fakes import replies
from tests.harness import RunningProxy
from tests.test_learner_e2e import LESSONS, learner_config, reflection


def test_an_anthropic_conversation_with_tools_is_one_episode_the_learner_reflects_on(
    proxy: RunningProxy,
) -> None:
    claude = proxy.anthropic("claude")
    history: list[dict[str, object]] = [{"role": "user", "content": "Refund order 42"}]
    proxy.provider.enqueue(replies.tool_calls([{"name": "lookup", "arguments": '{"id": 42}'}]))
    first = claude.messages.create(
        model="claude-test-model",
        max_tokens=50,
        system="You handle refunds.",
        tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
        messages=history,  # type: ignore[arg-type]
    )
    call = first.content[-1]
    history += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "not found"}],  # type: ignore[union-attr]
        },
    ]
    proxy.provider.enqueue(replies.text("I could not find that order."))
    claude.messages.create(
        model="claude-test-model",
        max_tokens=50,
        system="You handle refunds.",
        tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
        messages=history,  # type: ignore[arg-type]
    )
    proxy.traces(2)
    proxy.provider.enqueue(reflection(LESSONS[0]))
    [summary] = learn_once(learner_config(proxy), skillbook="claude")
    assert (summary.episodes, summary.reflections, summary.proposals) == (1, 1, 1)
    transcript = proxy.provider.last.json()["messages"][1]["content"]
    assert "calls tool lookup" in transcript and "not found" in transcript
    assert "I could not find that order." in transcript


def test_a_responses_conversation_is_one_episode_the_learner_reflects_on(
    proxy: RunningProxy,
) -> None:
    client = proxy.openai("coder")
    proxy.provider.enqueue(replies.text("Which Python version?"))
    first = client.responses.create(model="gpt-5", instructions="You code.", input="write a parser")
    proxy.provider.enqueue(replies.text("Here is a 3.12 parser."))
    client.responses.create(
        model="gpt-5",
        instructions="You code.",
        input=[
            {"role": "user", "content": "write a parser"},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "3.12 please"},
        ],
    )
    proxy.traces(2)
    proxy.provider.enqueue(reflection(LESSONS[1]))
    [summary] = learn_once(learner_config(proxy), skillbook="coder")
    assert (summary.episodes, summary.reflections) == (1, 1)
    transcript = proxy.provider.last.json()["messages"][1]["content"]
    assert "3.12 please" in transcript and "Here is a 3.12 parser." in transcript
