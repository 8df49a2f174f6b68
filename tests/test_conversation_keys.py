"""learner/conversation_keys.py: a request's explicit session key and its message-prefix hashes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.formats import FORMATS
from core.formats.base import Message, ToolCall
from learner.conversation_keys import (
    canonical_json,
    claim_keys,
    conversation_hasher,
    encode_message,
    head_keys,
    is_content_hash,
    json_object,
    prefix_hashes,
    response_key,
    session_head,
    session_key,
)

CLAUDE_USER_ID = (
    "user_4f2a9c0e8b7d_account_6b1c2d3e-0000-4a5b-9c8d-112233445566"
    "_session_0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
)


def hashes(messages: list[Message]) -> list[str]:
    return prefix_hashes(messages, {})


def encode(message: Message) -> bytes:
    return encode_message(message, {})


def call(arguments: str, *, name: str = "search", id: str = "call_1") -> ToolCall:
    return ToolCall(id=id, name=name, arguments=arguments)


# session_key


def test_the_header_session_id_wins_over_everything_in_the_body() -> None:
    body = {"metadata": {"session_id": "meta"}, "conversation": "conv"}
    assert session_key("header", body) == "header"


def test_an_empty_header_session_id_falls_through_to_the_body() -> None:
    assert session_key("", {"metadata": {"session_id": "meta"}}) == "meta"


def test_metadata_session_id_then_conversation_id() -> None:
    both = {"metadata": {"session_id": "s", "conversation_id": "c"}}
    assert session_key(None, both) == "s"
    assert session_key(None, {"metadata": {"conversation_id": "c"}}) == "c"
    assert session_key(None, {"metadata": {"session_id": "", "conversation_id": "c"}}) == "c"


def test_metadata_values_that_are_not_strings_are_ignored() -> None:
    body = {"metadata": {"session_id": 42, "conversation_id": ["c"]}, "conversation": "conv"}
    assert session_key(None, body) == "conv"


@pytest.mark.parametrize("metadata", [None, "session_x", ["session_id", "x"], 3])
def test_metadata_that_is_not_an_object_is_ignored(metadata: object) -> None:
    assert session_key(None, {"metadata": metadata}) is None
    assert session_key(None, {"metadata": metadata, "conversation": "conv"}) == "conv"


def test_a_responses_conversation_as_string_or_object() -> None:
    assert session_key(None, {"conversation": "conv_123"}) == "conv_123"
    assert session_key(None, {"conversation": {"id": "conv_456"}}) == "conv_456"
    assert session_key(None, {"conversation": {"id": ""}}) is None
    assert session_key(None, {"conversation": {"name": "x"}}) is None
    assert session_key(None, {"conversation": 7}) is None


def test_metadata_ids_win_over_the_conversation() -> None:
    body = {"metadata": {"conversation_id": "meta"}, "conversation": {"id": "conv"}}
    assert session_key(None, body) == "meta"


def test_the_conversation_wins_over_the_user_id() -> None:
    body = {"metadata": {"user_id": CLAUDE_USER_ID}, "conversation": "conv"}
    assert session_key(None, body) == "conv"


def test_a_claude_code_user_id_names_its_session() -> None:
    body = {"metadata": {"user_id": CLAUDE_USER_ID}}
    assert session_key(None, body) == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def test_a_json_user_id_names_its_session() -> None:
    user_id = '{"device_id": "d-1", "account_uuid": "a-1", "session_id": "sess-9"}'
    assert session_key(None, {"metadata": {"user_id": user_id}}) == "sess-9"


@pytest.mark.parametrize(
    "user_id",
    [
        "user_4f2a9c0e8b7d",
        "",
        '{"device_id": "d-1"}',
        '{"session_id": ""}',
        '{"session_id": 12}',
        '{"session_id": "x"',  # truncated JSON: not read with the Claude pattern either
        '{"note": "session_abc"}',
        42,
        None,
    ],
)
def test_a_user_id_without_a_session_names_nothing(user_id: object) -> None:
    assert session_key(None, {"metadata": {"user_id": user_id}}) is None


def test_a_request_that_names_nothing_has_no_key() -> None:
    assert session_key(None, {}) is None
    assert session_key(None, {"model": "gpt-4o", "messages": []}) is None


# encode_message


def test_equal_messages_encode_alike() -> None:
    first = Message("assistant", "Sure.", (call('{"q": "shoes"}'),))
    second = Message("assistant", "Sure.", (ToolCall("call_1", "search", '{"q": "shoes"}'),))
    assert first is not second
    assert encode(first) == encode(second)


def test_messages_differing_in_any_field_encode_differently() -> None:
    variants = [
        Message("user", "hello"),
        Message("assistant", "hello"),
        Message("user", "hello!"),
        Message("user", ""),
        Message("tool", "hello", tool_call_id="call_1"),
        Message("tool", "hello", tool_call_id="call_2"),
        Message("tool", "hello"),
        Message("user", "hello", (call("{}"),)),
        Message("user", "hello", (call("{}", name="lookup"),)),
        Message("user", "hello", (call('{"q": 1}'),)),
        Message("user", "hello", (call("{}"), call("{}"))),
    ]
    assert len({encode(m) for m in variants}) == len(variants)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Message("user", "x"), Message("use", "rx")),
        (Message("tool", "1", tool_call_id="2"), Message("tool", "12")),
        (Message("user", "a"), Message("user", "a0:0:")),
        (
            Message("assistant", "", (call("ab", name="f"),)),
            Message("assistant", "", (call("b", name="fa"),)),
        ),
        (
            Message("assistant", "", (call("1", name="f"), call("2", name="g"))),
            Message("assistant", "", (call("1", name="f1:21:g"),)),
        ),
        (  # the content's text spelling out the fields that follow it
            Message("assistant", "c", (call("0:0:", name="f"),)),
            Message("assistant", "c0:1:1:f4:"),
        ),
    ],
)
def test_field_boundaries_cannot_be_confused(first: Message, second: Message) -> None:
    assert encode(first) != encode(second)


def test_tool_call_ids_are_left_out() -> None:
    first = Message("assistant", "", (call("{}", id="call_abc"),))
    second = Message("assistant", "", (call("{}", id="toolu_xyz"),))
    assert encode(first) == encode(second)


def test_tool_arguments_compare_as_json_values() -> None:
    compact = Message("assistant", "", (call('{"q":"shoes","page":[1,2]}'),))
    spaced = Message("assistant", "", (call('{ "page": [1, 2],  "q": "shoes" }'),))
    escaped = Message("assistant", "", (call('{"page":[1,2],"q":"sh\\u006fes"}'),))
    different = Message("assistant", "", (call('{"q":"shoes","page":[2,1]}'),))
    assert encode(compact) == encode(spaced) == encode(escaped)
    assert encode(compact) != encode(different)


def test_arguments_that_are_not_json_compare_as_text() -> None:
    first = Message("assistant", "", (call("not json"),))
    second = Message("assistant", "", (call("not  json"),))
    assert encode(first) != encode(second)
    assert encode(first) == encode(Message("assistant", "", (call("not json"),)))


def test_canonical_remembers_rewritten_arguments() -> None:
    canonical: dict[str, str] = {}
    raw = '{"b": 1, "a": "é"}'
    message = Message("assistant", "", (call(raw),))
    first = encode_message(message, canonical)
    assert canonical == {raw: '{"a":"é","b":1}'}
    assert encode_message(message, canonical) == first


def test_canonical_json() -> None:
    assert (
        canonical_json('{"b": [1, {"d": 2, "c": 3}], "a": "ü"}')
        == '{"a":"ü","b":[1,{"c":3,"d":2}]}'
    )
    assert canonical_json("not json") == "not json"
    assert canonical_json("") == ""


# prefix_hashes


def conversation() -> list[Message]:
    return [
        Message("system", "You are a support agent."),
        Message("user", "I want to return my order."),
        Message("assistant", "", (call('{"order": 17}', name="lookup_order"),)),
        Message("tool", '{"status": "delivered"}', tool_call_id="call_1"),
        Message("assistant", "It was delivered on Monday; I can start a return."),
    ]


def test_one_hash_per_message_and_none_for_no_messages() -> None:
    out = hashes(conversation())
    assert len(out) == len(conversation())
    assert len(set(out)) == len(out)
    assert all(isinstance(h, str) and h for h in out)
    assert hashes([]) == []


def test_hashes_are_stable() -> None:
    assert hashes(conversation()) == hashes(conversation())


def test_a_prefix_hashes_like_the_start_of_the_whole() -> None:
    whole = hashes(conversation())
    for k in range(len(whole) + 1):
        assert hashes(conversation()[:k]) == whole[:k]


def test_a_change_alters_the_hashes_from_that_message_on() -> None:
    original = hashes(conversation())
    changed = conversation()
    changed[2] = Message("assistant", "", (call('{"order": 18}', name="lookup_order"),))
    altered = hashes(changed)
    assert altered[:2] == original[:2]
    assert all(a != b for a, b in zip(altered[2:], original[2:], strict=True))


def test_order_matters() -> None:
    messages = conversation()
    swapped = [messages[0], messages[2], messages[1], *messages[3:]]
    assert hashes(swapped)[-1] != hashes(messages)[-1]


def test_splitting_or_merging_messages_changes_the_hash() -> None:
    merged = [Message("user", "ab")]
    split = [Message("user", "a"), Message("user", "b")]
    assert hashes(merged)[-1] != hashes(split)[-1]


def test_a_client_reserialising_tool_arguments_continues_the_same_conversation() -> None:
    resent = conversation()
    resent[2] = Message("assistant", "", (call('{"order":17}', name="lookup_order", id="x"),))
    assert hashes(resent) == hashes(conversation())


# tenants and head keys


def tenant_hash(tenant: str | None) -> str:
    hasher = conversation_hasher(tenant)
    for message in conversation():
        hasher.update(encode(message))
    return hasher.hexdigest()


def test_the_hash_before_tenants_is_the_plain_one() -> None:
    assert tenant_hash(None) == hashes(conversation())[-1]


def test_each_tenant_hashes_the_same_conversation_its_own_way() -> None:
    tenants = [None, "", "fp_0123456789ab", "fp_0123456789ac", "x" * 60, "x" * 61]
    assert len({tenant_hash(t) for t in tenants}) == len(tenants)
    assert tenant_hash("fp_0123456789ab") == tenant_hash("fp_0123456789ab")


def test_response_session_and_claim_keys_name_the_tenant() -> None:
    assert response_key(None, "resp_1") == "resp:resp_1"  # as grouping wrote it before tenants
    names = [
        *(response_key(t, "resp_1") for t in (None, "", "fp_a", "fp_b")),
        *(session_head(t, "s") for t in ("", "fp_a", "fp_b")),
        *claim_keys("fp_a", "ep_1"),
        claim_keys("fp_b", "ep_1")[0],
    ]
    assert len(set(names)) == len(names)
    assert claim_keys("fp_a", "ep_1")[1] == claim_keys("fp_b", "ep_1")[1]  # someone claimed it


def test_a_turn_looks_up_the_head_the_turn_before_left_for_its_tenant() -> None:
    chat = FORMATS["chat"]
    said = {"role": "assistant", "content": "Which city?"}
    first = {"messages": [{"role": "user", "content": "Weather?"}]}
    reply = {"choices": [{"index": 0, "message": said, "finish_reason": "stop"}]}
    second = {"messages": [*first["messages"], said, {"role": "user", "content": "Oslo"}]}
    left = head_keys(chat, first, reply, "fp_a", {})
    asked = head_keys(chat, second, None, "fp_a", {})
    other = head_keys(chat, second, None, "fp_b", {})
    assert left is not None and asked is not None and other is not None
    assert left.lookups == [] and asked.heads == []  # nothing before it; no answer to leave
    assert asked.lookups == left.heads and other.lookups != left.heads
    assert list(asked.legacy) == list(other.legacy) == [hashes(chat.conversation(first, reply))[-1]]
    assert head_keys(chat, {"messages": []}, reply, "fp_a", {}) is None


def test_only_content_hashes_are_shared_by_several_episodes() -> None:
    assert all(is_content_hash(h) for h in hashes(conversation()))
    names = [response_key("", "r"), session_head("", "s"), *claim_keys("", "ep_1"), "ab" * 17]
    assert not any(is_content_hash(name) for name in names)


# json_object


def test_json_object_reads_only_stored_objects() -> None:
    assert json_object('{"model": "gpt-4o"}') == {"model": "gpt-4o"}
    assert json_object("[1, 2]") is None
    assert json_object("not json") is None
    assert json_object(None) is None
    assert json_object(b'{"a": 1}') is None


def test_json_object_treats_a_size_capped_body_as_absent() -> None:
    omitted: dict[str, Any] = {"skillproxy_omitted": True, "content_type": "x", "bytes": 9}
    assert json_object(json.dumps(omitted)) is None
    assert json_object('{"skillproxy_omitted": false, "a": 1}') == {
        "skillproxy_omitted": False,
        "a": 1,
    }
