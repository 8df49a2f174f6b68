"""core/formats/messages.py: the Anthropic Messages adapter."""

import copy
import json
from typing import Any

from core.formats import FORMATS, MESSAGES, Message, ToolCall, Usage

# As Anthropic streams it (extended thinking, then text, then a tool call), spaces and all.
STREAM = b"".join(
    f"event: {name}\ndata: {data}\n\n".encode()
    for name, data in [
        (
            "message_start",
            '{"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929",'
            '"id":"msg_01Y6V41gqPaKWEw7iPouH7iW","type":"message","role":"assistant","content":[],'
            '"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":69,'
            '"cache_creation_input_tokens":0,"cache_read_input_tokens":2048,"output_tokens":2,'
            '"service_tier":"standard"}}}',
        ),
        (
            "content_block_start",
            '{"type":"content_block_start","index":0,"content_block":'
            '{"type":"thinking","thinking":"","signature":""}}',
        ),
        ("ping", '{"type": "ping"}'),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta",'
            '"thinking":"925 \\u00f7 5"}}',
        ),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta",'
            '"thinking":" = 185"}}',
        ),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta",'
            '"signature":"EvQBCkYICxgCKkAxhD4NUKFz"}}',
        ),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        (
            "content_block_start",
            '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
        ),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta",'
            '"text":"It is "}}',
        ),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"185."}}',
        ),
        ("content_block_stop", '{"type":"content_block_stop","index":1}'),
        (
            "content_block_start",
            '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use",'
            '"id":"toolu_01KFbKqPYSuAKujiL6mTfzYA","name":"record","input":{}}}',
        ),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta",'
            '"partial_json":""}}',
        ),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta",'
            '"partial_json":"{\\"value\\": 18"}}',
        ),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta",'
            '"partial_json":"5}"}}',
        ),
        ("content_block_stop", '{"type":"content_block_stop","index":2}'),
        (
            "message_delta",
            '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
            '"usage":{"input_tokens":69,"cache_read_input_tokens":2048,"output_tokens":53}}',
        ),
        ("message_stop", '{"type":"message_stop"}'),
    ]
)

THINKING = {"type": "thinking", "thinking": "Let me add.", "signature": "WaUjzkypQ2mUEVM36O2T"}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}


def request(system: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "messages": [
            {"role": "user", "content": "What is 900 + 25?"},
            {
                "role": "assistant",
                "content": [
                    THINKING,
                    REDACTED,
                    {"type": "text", "text": "Adding."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "add",
                        "input": {"a": 900, "b": 25},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "925"}],
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
            {"role": "assistant", "content": "925."},
            {"role": "user", "content": [{"type": "text", "text": "Now divide by 5."}]},
        ],
    }
    if system is not None:
        body["system"] = system
    return body


def test_registered_under_its_name() -> None:
    assert FORMATS["messages"] is MESSAGES and MESSAGES.name == "messages"


def test_system_text_from_string_or_blocks() -> None:
    assert MESSAGES.system_text(request("Be exact.")) == "Be exact."
    blocks = [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
    assert MESSAGES.system_text(request(blocks)) == "A\nB"
    assert MESSAGES.system_text(request()) == ""


def test_inject_keeps_a_string_a_string() -> None:
    body = request("Be exact.")
    before = copy.deepcopy(body)
    out = MESSAGES.inject(body, "## Skillbook")
    assert out is not None
    assert out["system"] == "Be exact.\n\n## Skillbook"
    assert out["messages"] is body["messages"]
    assert body == before


def test_inject_creates_a_missing_system() -> None:
    out = MESSAGES.inject(request(), "S")
    assert out is not None
    assert out["system"] == "S"
    out = MESSAGES.inject(request(""), "S")
    assert out is not None and out["system"] == "S"


def test_inject_appends_a_block_after_the_clients_cached_blocks() -> None:
    system = [
        {"type": "text", "text": "Tools manual", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Persona", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    body = request(system)
    before = copy.deepcopy(body)
    out = MESSAGES.inject(body, "## Skillbook")
    assert out is not None
    assert body == before
    assert out["system"][:2] == system and out["system"][0] is system[0]
    assert out["system"][1] is system[1]
    assert out["system"][2] == {"type": "text", "text": "## Skillbook"}  # no cache_control
    assert len(out["system"]) == 3
    assert json.dumps(out).count("cache_control") == json.dumps(body).count("cache_control")


def test_inject_leaves_signed_thinking_blocks_as_the_same_objects() -> None:
    body = request("S0")
    out = MESSAGES.inject(body, "S")
    assert out is not None
    assert out["messages"] is body["messages"]
    assert out["messages"][1]["content"][0] is THINKING
    assert out["messages"][1]["content"][1] is REDACTED
    assert {k for k in out if out[k] is not body[k]} == {"system"}


def test_latest_user_text_skips_bare_tool_results() -> None:
    assert MESSAGES.latest_user_text(request()) == "Now divide by 5."
    body = request()
    body["messages"] = body["messages"][:3]
    assert MESSAGES.latest_user_text(body) == "What is 900 + 25?"


def test_fold_thinking_text_and_tool_use() -> None:
    folded = MESSAGES.fold_stream(STREAM)
    assert folded["id"] == "msg_01Y6V41gqPaKWEw7iPouH7iW"
    assert folded["stop_reason"] == "tool_use"
    assert folded["content"] == [
        {"type": "thinking", "thinking": "925 ÷ 5 = 185", "signature": "EvQBCkYICxgCKkAxhD4NUKFz"},
        {"type": "text", "text": "It is 185."},
        {
            "type": "tool_use",
            "id": "toolu_01KFbKqPYSuAKujiL6mTfzYA",
            "name": "record",
            "input": {"value": 185},
        },
    ]
    assert folded["usage"] == {
        "input_tokens": 69,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2048,
        "output_tokens": 53,  # message_delta's cumulative count replaces message_start's 2
        "service_tier": "standard",
    }
    assert "incomplete" not in folded
    assert MESSAGES.usage(folded) == Usage(69 + 2048, 53)


def test_fold_cut_off_mid_tool_arguments() -> None:
    cut = STREAM[: STREAM.index(b'"5}"')]
    folded = MESSAGES.fold_stream(cut)
    assert folded["incomplete"] is True
    assert folded["stop_reason"] is None
    tool = folded["content"][2]
    assert tool["input"] == {} and tool["partial_json"] == '{"value": 18'
    assert folded["usage"]["output_tokens"] == 2
    assert MESSAGES.fold_stream(b"") == {
        "type": "message",
        "role": "assistant",
        "content": [],
        "incomplete": True,
    }


def test_fold_tool_without_arguments_keeps_empty_input() -> None:
    raw = STREAM.replace(b'{\\"value\\": 18', b"").replace(
        b'"partial_json":"5}"', b'"partial_json":""'
    )
    assert MESSAGES.fold_stream(raw)["content"][2]["input"] == {}


def test_fold_redacted_thinking_prepopulated_content_and_error() -> None:
    raw = (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"id":"msg_2","type":"message",'
        b'"role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"tool_use",'
        b'"id":"toolu_9","name":"lookup","input":{"id":"c_123"}}],"stop_reason":null,'
        b'"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}\n\n'
        b"event: content_block_start\n"
        b'data: {"type":"content_block_start","index":1,"content_block":'
        b'{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"}}\n\n'
        b"event: content_block_stop\n"
        b'data: {"type":"content_block_stop","index":1}\n\n'
        b"event: error\n"
        b'data: {"type": "error", "error": {"type": "overloaded_error", '
        b'"message": "Overloaded"}}\n\n'
    )
    folded = MESSAGES.fold_stream(raw)
    assert folded["content"] == [
        {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"id": "c_123"}},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
    ]
    assert folded["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert folded["incomplete"] is True


def test_conversation_normalises_blocks() -> None:
    answer = MESSAGES.fold_stream(STREAM)
    system = [{"type": "text", "text": "Be exact.", "cache_control": {"type": "ephemeral"}}]
    assert MESSAGES.conversation(request(system), answer) == [
        Message("system", "Be exact."),
        Message("user", "What is 900 + 25?"),
        Message("assistant", "Adding.", (ToolCall("toolu_1", "add", '{"a": 900, "b": 25}'),)),
        Message("tool", "925", tool_call_id="toolu_1"),
        Message("assistant", "925."),
        Message("user", "Now divide by 5."),
        Message(
            "assistant",
            "It is 185.",
            (ToolCall("toolu_01KFbKqPYSuAKujiL6mTfzYA", "record", '{"value": 185}'),),
        ),
    ]


def test_usage_without_cache_fields() -> None:
    assert MESSAGES.usage({"usage": {"input_tokens": 5, "output_tokens": 7}}) == Usage(5, 7)
    assert MESSAGES.usage({}) == Usage()


def test_error_body_is_anthropic_shaped() -> None:
    body = json.loads(MESSAGES.error_body(429, "slow down", "rate_limit_error", "ignored"))
    assert body == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
