"""core/sessions.py: the key that keeps a conversation in one canary arm."""

from __future__ import annotations

from core.sessions import assignment_key, first_user_text, session_key


def test_a_named_session_wins_over_the_conversation_text() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "metadata": {"session_id": "m-1"}}
    assert assignment_key("h-1", body, "fp") == "s\0h-1"
    assert assignment_key(None, body, "fp") == "s\0m-1"
    assert session_key(None, {"conversation": {"id": "conv_9"}}) == "conv_9"


def test_without_a_session_the_first_user_message_and_the_key_choose() -> None:
    turn1 = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}
    turn2 = {"messages": [*turn1["messages"], {"role": "assistant", "content": "yo"},
                          {"role": "user", "content": "more"}]}  # fmt: skip
    assert assignment_key(None, turn1, "fp") == assignment_key(None, turn2, "fp")
    assert assignment_key(None, turn1, "fp") != assignment_key(None, turn1, "other")
    assert assignment_key(None, {"messages": []}, "fp") is None


def test_first_user_text_reads_every_format() -> None:
    assert first_user_text({"input": "plain"}) == "plain"
    parts = [{"type": "input_text", "text": "from responses"}]
    assert first_user_text({"input": [{"role": "user", "content": parts}]}) == "from responses"
    blocks = [{"type": "text", "text": "from messages"}]
    assert first_user_text({"messages": [{"role": "user", "content": blocks}]}) == "from messages"
    assert first_user_text({"messages": "junk"}) == ""
