"""OpenAI Responses API through the proxy with the real `openai` SDK."""

from __future__ import annotations

import openai

from proxy.render import HEADER
from tests.fakes import replies
from tests.harness import RunningProxy

RULE = "When the user asks for code, state the language version you are targeting first."


def approve_skill(proxy: RunningProxy, skillbook: str = "coder") -> None:
    proxy.add_skill(skillbook, "coding", RULE)


def sdk(proxy: RunningProxy) -> openai.OpenAI:
    return proxy.openai("coder")


def test_instructions_get_the_section_and_input_is_untouched(proxy: RunningProxy) -> None:
    approve_skill(proxy)
    proxy.provider.enqueue(replies.text("Python 3.12 it is."))
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "write a parser"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA=="},
    ]
    raw = sdk(proxy).responses.with_raw_response.create(
        model="gpt-5",
        instructions="You are a coding agent.",
        input=items,  # type: ignore[arg-type]
    )
    assert raw.parse().output_text == "Python 3.12 it is."
    sent = proxy.provider.last.json()
    assert (
        sent["instructions"] == "You are a coding agent.\n\n" + HEADER + "\n\n## coding\n- " + RULE
    )
    assert sent["input"] == items
    trace = proxy.trace(raw.headers["X-Trace-Id"])
    assert trace["format"] == "responses" and trace["injected_skill_ids"]


def test_instructions_are_created_when_absent(proxy: RunningProxy) -> None:
    approve_skill(proxy)
    sdk(proxy).responses.create(model="gpt-5", input="hello")
    sent = proxy.provider.last.json()
    assert sent["instructions"].startswith(HEADER) and sent["input"] == "hello"


def test_stream_is_relayed_and_folded(proxy: RunningProxy) -> None:
    proxy.provider.enqueue(replies.text("streamed answer here"))
    with sdk(proxy).responses.stream(model="gpt-5", input="hi") as stream:
        events = [event.type for event in stream]
        final = stream.get_final_response()
    assert events[0] == "response.created" and events[-1] == "response.completed"
    assert final.output_text == "streamed answer here"
    [trace] = proxy.traces(1)
    assert trace["stream"] is True
    folded = trace["response_json"]
    assert folded["output"][0]["content"][0]["text"] == "streamed answer here"
    assert trace["output_tokens"] == final.usage.output_tokens  # type: ignore[union-attr]


def test_other_responses_routes_pass_through(proxy: RunningProxy) -> None:
    created = sdk(proxy).responses.create(model="gpt-5", input="remember me")
    fetched = sdk(proxy).responses.retrieve(created.id)
    assert fetched.id == created.id
    traces = proxy.traces(2)
    assert traces[1]["method"] == "GET" and traces[1]["format"] is None
    assert traces[1]["path"] == f"/v1/responses/{created.id}"
