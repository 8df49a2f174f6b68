"""core/formats/responses.py: the OpenAI Responses adapter."""

import copy
import json
from typing import Any

from core.formats import FORMATS, RESPONSES, Message, ToolCall, Usage

RESPONSE = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
    "object": "response",
    "created_at": 1741476542,
    "status": "in_progress",
    "error": None,
    "incomplete_details": None,
    "instructions": "Be terse.",
    "model": "gpt-4.1-2025-04-14",
    "output": [],
    "parallel_tool_calls": True,
    "usage": None,
}
MESSAGE_ITEM = {
    "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e6",
    "type": "message",
    "status": "completed",
    "role": "assistant",
    "content": [
        {"type": "output_text", "annotations": [], "logprobs": [], "text": "Let me check."}
    ],
}
CALL_ITEM = {
    "id": "fc_12345xyz",
    "type": "function_call",
    "status": "completed",
    "arguments": '{"city":"Beijing"}',
    "call_id": "call_2FQdm3Br7Qb35YUBSkDR7kue",
    "name": "get_weather",
}
USAGE = {
    "input_tokens": 45,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 25,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 70,
}


def sse(events: list[dict[str, Any]]) -> bytes:
    """Events framed as OpenAI frames them: an `event:` line naming the type, compact JSON."""
    out = []
    for number, event in enumerate(events):
        data = json.dumps({**event, "sequence_number": number}, separators=(",", ":"))
        out.append(f"event: {event['type']}\ndata: {data}\n\n")
    return "".join(out).encode()


def in_progress(item: dict[str, Any]) -> dict[str, Any]:
    empty: dict[str, Any] = (
        {"arguments": ""} if item["type"] == "function_call" else {"content": []}
    )
    return {**item, "status": "in_progress", **empty}


TEXT_PART = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
EVENTS: list[dict[str, Any]] = [
    {"type": "response.created", "response": RESPONSE},
    {"type": "response.in_progress", "response": RESPONSE},
    {"type": "response.output_item.added", "output_index": 0, "item": in_progress(MESSAGE_ITEM)},
    {
        "type": "response.content_part.added",
        "item_id": MESSAGE_ITEM["id"],
        "output_index": 0,
        "content_index": 0,
        "part": TEXT_PART,
    },
    *(
        {
            "type": "response.output_text.delta",
            "item_id": MESSAGE_ITEM["id"],
            "output_index": 0,
            "content_index": 0,
            "delta": delta,
            "logprobs": [],
        }
        for delta in ("Let me", " check.")
    ),
    {"type": "response.output_item.done", "output_index": 0, "item": MESSAGE_ITEM},
    {"type": "response.output_item.added", "output_index": 1, "item": in_progress(CALL_ITEM)},
    *(
        {
            "type": "response.function_call_arguments.delta",
            "item_id": CALL_ITEM["id"],
            "output_index": 1,
            "delta": delta,
        }
        for delta in ('{"city":', '"Beijing"}')
    ),
    {
        "type": "response.function_call_arguments.done",
        "item_id": CALL_ITEM["id"],
        "output_index": 1,
        "arguments": CALL_ITEM["arguments"],
    },
    {"type": "response.output_item.done", "output_index": 1, "item": CALL_ITEM},
    {
        "type": "response.completed",
        "response": {
            **RESPONSE,
            "status": "completed",
            "output": [MESSAGE_ITEM, CALL_ITEM],
            "usage": USAGE,
        },
    },
]
STREAM = sse(EVENTS)


def request() -> dict[str, Any]:
    return {
        "model": "gpt-4.1",
        "instructions": "Be terse.",
        "stream": True,
        "input": [
            {"role": "developer", "content": "Prefer Celsius."},
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Beijing?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA..."},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking."}],
            },
            {
                "type": "function_call",
                "call_id": "call_0",
                "name": "get_weather",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_0", "output": "missing city"},
        ],
    }


def test_registered_under_its_name() -> None:
    assert FORMATS["responses"] is RESPONSES and RESPONSES.name == "responses"


def test_system_text_is_instructions() -> None:
    assert RESPONSES.system_text(request()) == "Be terse."
    assert RESPONSES.system_text({"input": "hi"}) == ""


def test_inject_appends_to_instructions_and_leaves_input_alone() -> None:
    body = request()
    before = copy.deepcopy(body)
    out = RESPONSES.inject(body, "## Skillbook")
    assert out is not None
    assert out["instructions"] == "Be terse.\n\n## Skillbook"
    assert out["input"] is body["input"]
    assert body == before
    assert {k for k in out if out[k] is not body[k]} == {"instructions"}


def test_inject_creates_instructions() -> None:
    assert RESPONSES.inject({"input": "hi"}, "S") == {"input": "hi", "instructions": "S"}
    out = RESPONSES.inject({"input": "hi", "instructions": None}, "S")
    assert out is not None and out["instructions"] == "S"


def test_latest_user_text() -> None:
    assert RESPONSES.latest_user_text(request()) == "Weather in Beijing?"
    assert RESPONSES.latest_user_text({"input": "plain string"}) == "plain string"
    assert RESPONSES.latest_user_text({}) == ""


def test_fold_takes_the_completed_response() -> None:
    folded = RESPONSES.fold_stream(STREAM)
    assert folded["status"] == "completed"
    assert folded["output"] == [MESSAGE_ITEM, CALL_ITEM]
    assert "incomplete" not in folded
    assert RESPONSES.usage(folded) == Usage(45, 25)


def test_fold_rebuilds_from_deltas_when_cut_off() -> None:
    cut = STREAM[: STREAM.index(b"response.function_call_arguments.done")]
    folded = RESPONSES.fold_stream(cut)
    assert folded["incomplete"] is True
    assert folded["id"] == RESPONSE["id"]
    assert folded["output"][0] == MESSAGE_ITEM  # its done event arrived
    assert folded["output"][1]["arguments"] == '{"city":"Beijing"}'
    assert folded["output"][1]["call_id"] == CALL_ITEM["call_id"]


def test_fold_rebuilds_text_mid_message() -> None:
    cut = STREAM[: STREAM.index(b"event: response.output_item.done")]
    folded = RESPONSES.fold_stream(cut)
    assert folded["output"][0]["content"][0]["text"] == "Let me check."
    assert folded["output"][0]["status"] == "in_progress"
    assert folded["incomplete"] is True
    assert RESPONSES.fold_stream(b"") == {"object": "response", "output": [], "incomplete": True}


def test_fold_records_a_stream_error() -> None:
    error = {"type": "error", "code": "server_error", "message": "boom", "param": None}
    folded = RESPONSES.fold_stream(sse([*EVENTS[:3], error]))
    assert folded["error"] == {"code": "server_error", "message": "boom", "param": None}
    assert folded["incomplete"] is True


def test_fold_failed_response_is_final() -> None:
    failed = {**RESPONSE, "status": "failed", "error": {"code": "server_error", "message": "x"}}
    folded = RESPONSES.fold_stream(
        sse([EVENTS[0], {"type": "response.failed", "response": failed}])
    )
    assert folded == failed


def test_fold_fills_output_a_bare_completed_event_left_empty() -> None:
    bare = {"type": "response.completed", "response": {**RESPONSE, "status": "completed"}}
    folded = RESPONSES.fold_stream(sse([*EVENTS[:-1], bare]))
    assert folded["output"] == [MESSAGE_ITEM, CALL_ITEM]


def test_conversation_merges_calls_into_the_assistant_turn() -> None:
    answer = RESPONSES.fold_stream(STREAM)
    assert RESPONSES.conversation(request(), answer) == [
        Message("system", "Be terse."),
        Message("system", "Prefer Celsius."),
        Message("user", "Weather in Beijing?"),
        Message("assistant", "Checking.", (ToolCall("call_0", "get_weather", "{}"),)),
        Message("tool", "missing city", tool_call_id="call_0"),
        Message(
            "assistant",
            "Let me check.",
            (ToolCall("call_2FQdm3Br7Qb35YUBSkDR7kue", "get_weather", '{"city":"Beijing"}'),),
        ),
    ]
    assert RESPONSES.conversation({"input": "hi"}, None) == [Message("user", "hi")]


def test_error_body_is_openai_shaped() -> None:
    body = json.loads(RESPONSES.error_body(400, "bad", "invalid_request_error", "bad_json"))
    assert body == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": None,
            "code": "bad_json",
        }
    }
