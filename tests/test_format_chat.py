"""core/formats/chat.py and the shared readers in core/formats/base.py: finding the
system prompt, adding the section, normalising messages, folding a stream."""

import copy
import json
from typing import Any

from core.formats import CHAT, FORMATS, Message, ToolCall, Usage

HEAD = (
    '{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk",'
    '"created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default",'
    '"system_fingerprint":"fp_eb9dce56a8",'
)


def chunk(choices: str, usage: str = "null") -> bytes:
    return f'data: {HEAD}"choices":[{choices}],"usage":{usage}}}\n\n'.encode()


# Two parallel tool calls, as OpenAI streams them with stream_options.include_usage.
TOOL_STREAM = b"".join(
    [
        chunk(
            '{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,'
            '"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":'
            '{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,'
            '"finish_reason":null}'
        ),
        chunk(
            '{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"lo"}}]},'
            '"logprobs":null,"finish_reason":null}'
        ),
        chunk(
            '{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_ABC","type":"function",'
            '"function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}'
        ),
        chunk(
            '{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":'
            '"cation\\": \\"Paris\\"}"}}]},"logprobs":null,"finish_reason":null}'
        ),
        chunk(
            '{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]},'
            '"logprobs":null,"finish_reason":null}'
        ),
        chunk('{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}'),
        f'data: {HEAD}"choices":[],"usage":{{"prompt_tokens":81,"completion_tokens":35,'
        f'"total_tokens":116,"prompt_tokens_details":{{"cached_tokens":0}}}}}}\n\n'.encode(),
        b"data: [DONE]\n\n",
    ]
)

# Azure opens with an empty-id prompt-filter chunk; text arrives in pieces.
TEXT_STREAM = (
    b'data: {"choices":[],"created":0,"id":"","model":"","object":"",'
    b'"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}\n\n'
    + chunk(
        '{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
        '"logprobs":{"content":[{"token":"","logprob":0.0,"bytes":[],"top_logprobs":[]}],'
        '"refusal":null},"finish_reason":null}'
    )
    + chunk(
        '{"index":0,"delta":{"content":"Capital of"},"logprobs":{"content":[{"token":'
        '"Capital of","logprob":-0.1,"bytes":[67],"top_logprobs":[]}],"refusal":null},'
        '"finish_reason":null}'
    )
    + chunk('{"index":0,"delta":{"content":" Denmark."},"logprobs":null,"finish_reason":null}')
    + chunk('{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}')
    + b"data: [DONE]\n\n"
)


def request() -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "stream": True,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, cloudy"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    }


def test_registered_under_its_name() -> None:
    assert FORMATS["chat"] is CHAT and CHAT.name == "chat"


def test_system_text_joins_system_and_developer() -> None:
    assert CHAT.system_text(request()) == "You are terse.\n\nUse metric units."
    assert CHAT.system_text({"messages": [{"role": "user", "content": "hi"}]}) == ""


def test_inject_into_last_leading_system_message_keeps_parts_type() -> None:
    body = request()
    before = copy.deepcopy(body)
    out = CHAT.inject(body, "## Skillbook\n- check units")
    assert out is not None
    assert body == before  # input untouched
    assert out["messages"][1]["content"] == [
        {"type": "text", "text": "Use metric units."},
        {"type": "text", "text": "## Skillbook\n- check units"},
    ]
    assert out["messages"][1]["role"] == "developer"
    assert out["messages"][1]["content"][0] is body["messages"][1]["content"][0]
    for i in (0, 2, 3, 4, 5):
        assert out["messages"][i] is body["messages"][i]
    assert out["tools"] is body["tools"]
    assert len(out["messages"]) == len(body["messages"])


def test_inject_into_string_system_message() -> None:
    body = {
        "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "x"}]
    }
    out = CHAT.inject(body, "S")
    assert out is not None
    assert out["messages"][0] == {"role": "system", "content": "Be kind.\n\nS"}
    assert out["messages"][1] is body["messages"][1]
    assert body["messages"][0]["content"] == "Be kind."


def test_inject_without_leading_system_inserts_one() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "late system"},  # not leading: left alone
        ]
    }
    before = copy.deepcopy(body)
    out = CHAT.inject(body, "S")
    assert out is not None
    assert out["messages"][0] == {"role": "system", "content": "S"}
    assert out["messages"][1] is body["messages"][0]
    assert out["messages"][2] is body["messages"][1]
    assert body == before
    assert CHAT.inject({"messages": []}, "S") == {"messages": [{"role": "system", "content": "S"}]}


def test_inject_tolerates_null_content_and_bad_bodies() -> None:
    out = CHAT.inject({"messages": [{"role": "system", "content": None}]}, "S")
    assert out is not None
    assert out["messages"][0]["content"] == "S"
    assert CHAT.inject({"model": "x"}, "S") == {
        "model": "x",
        "messages": [{"role": "system", "content": "S"}],
    }


def test_latest_user_text_uses_text_parts() -> None:
    assert CHAT.latest_user_text(request()) == "And tomorrow?"
    assert CHAT.latest_user_text({"messages": []}) == ""


def test_fold_tool_call_stream() -> None:
    folded = CHAT.fold_stream(TOOL_STREAM)
    assert folded["id"] == "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
    assert folded["object"] == "chat.completion"
    assert folded["created"] == 1741570283
    assert folded["system_fingerprint"] == "fp_eb9dce56a8"
    assert "incomplete" not in folded
    [choice] = folded["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
        },
        {"id": "call_ABC", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert folded["usage"]["prompt_tokens"] == 81
    assert CHAT.usage(folded) == Usage(81, 35)


def test_fold_text_stream_with_logprobs_and_empty_first_chunk() -> None:
    folded = CHAT.fold_stream(TEXT_STREAM)
    assert folded["id"] == "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"  # not Azure's ""
    [choice] = folded["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Capital of Denmark.",
        "refusal": None,
    }
    assert [t["token"] for t in choice["logprobs"]["content"]] == ["", "Capital of"]
    assert "usage" not in folded
    assert CHAT.usage(folded) == Usage()


def test_fold_cut_off_stream_keeps_what_arrived() -> None:
    cut = TOOL_STREAM[: TOOL_STREAM.index(b"get_time") + 20]  # mid-chunk, before [DONE]
    folded = CHAT.fold_stream(cut)
    assert folded["incomplete"] is True
    [call] = folded["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"lo'}
    assert folded["choices"][0]["finish_reason"] is None
    assert CHAT.fold_stream(b"")["incomplete"] is True


def test_fold_refusal_several_choices_and_midstream_error() -> None:
    raw = (
        chunk('{"index":1,"delta":{"role":"assistant","refusal":"I can"},"finish_reason":null}')
        + chunk('{"index":0,"delta":{"role":"assistant","content":"A"},"finish_reason":null}')
        + chunk('{"index":1,"delta":{"refusal":"not."},"finish_reason":"stop"}')
        + b'data: {"error":{"message":"overloaded","type":"server_error","code":null}}\n\n'
    )
    folded = CHAT.fold_stream(raw)
    assert [c["index"] for c in folded["choices"]] == [0, 1]
    assert folded["choices"][0]["message"]["content"] == "A"
    assert folded["choices"][1]["message"]["refusal"] == "I cannot."
    assert folded["error"]["type"] == "server_error"
    assert folded["incomplete"] is True


def test_fold_tolerates_compatible_server_quirks() -> None:
    # No `index` on tool call deltas, name repeated, arguments as an object, reasoning_content.
    raw = (
        b"".join(
            f"data: {json.dumps(c)}\n\n".encode()
            for c in [
                {"choices": [{"delta": {"reasoning_content": "think"}}]},
                {"choices": [{"delta": {"tool_calls": [{"id": "a", "function": {"name": "f"}}]}}]},
                {
                    "choices": [
                        {"delta": {"tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}}
                    ]
                },
                {"choices": [{"delta": {"tool_calls": [{"function": {"arguments": "}"}}]}}]},
                {
                    "choices": [
                        {
                            "delta": {
                                "tool_calls": [
                                    {"id": "b", "function": {"name": "g", "arguments": {"x": 1}}}
                                ]
                            }
                        }
                    ]
                },
                {"choices": None, "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
            ]
        )
        + b"data: [DONE]"
    )
    folded = CHAT.fold_stream(raw)
    message = folded["choices"][0]["message"]
    assert message["reasoning_content"] == "think"
    assert [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]
    ] == [
        ("a", "f", "{}"),
        ("b", "g", '{"x": 1}'),
    ]
    assert "incomplete" not in folded
    assert CHAT.usage(folded) == Usage(3, 4)


def test_conversation_normalises_request_and_answer() -> None:
    answer = CHAT.fold_stream(TEXT_STREAM)
    assert CHAT.conversation(request(), answer) == [
        Message("system", "You are terse."),
        Message("system", "Use metric units."),
        Message("user", "Weather in Paris?"),
        Message("assistant", "", (ToolCall("call_1", "get_weather", '{"location":"Paris"}'),)),
        Message("tool", "18C, cloudy", tool_call_id="call_1"),
        Message("user", "And tomorrow?"),
        Message("assistant", "Capital of Denmark."),
    ]
    assert CHAT.conversation({"messages": [{"role": "user", "content": "q"}]}, None) == [
        Message("user", "q")
    ]


def test_error_body_is_openai_shaped() -> None:
    body = json.loads(CHAT.error_body(502, "upstream unreachable", "upstream_error", None))
    assert body == {
        "error": {
            "message": "upstream unreachable",
            "type": "upstream_error",
            "param": None,
            "code": None,
        }
    }
