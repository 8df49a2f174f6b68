"""learner/transcript.py: an episode rendered for the reflector within a token budget."""

from __future__ import annotations

import re

import pytest

from core.formats.base import Message, ToolCall
from core.tokens import count_tokens
from learner.transcript import ENCODING, render, render_message

MESSAGES_ELIDED = re.compile(r"\[\.\.\. (\d+) messages elided to fit the context \.\.\.\]")
CHARS_ELIDED = re.compile(r" \[\.\.\. (\d+) characters elided \.\.\.\] ")
INDEX = re.compile(r"^\[(\d+)\] ", re.MULTILINE)


def tokens(text: str) -> int:
    return count_tokens(text, ENCODING)


def long_text(label: str, words: int) -> str:
    """Distinct start and end markers around filler, so what survives can be told apart."""
    return f"START-{label} " + " ".join(f"w{i}" for i in range(words)) + f" END-{label}"


def episode(turns: int, words: int) -> list[Message]:
    return [
        Message("assistant" if i % 2 else "user", long_text(str(i), words)) for i in range(turns)
    ]


def indices(text: str) -> list[int]:
    return [int(i) for i in INDEX.findall(text)]


# render_message


def test_a_message_is_its_index_role_and_content() -> None:
    assert render_message(3, Message("user", "Where is my parcel?")) == (
        "[3] user: Where is my parcel?"
    )


def test_an_empty_message_says_so() -> None:
    assert render_message(0, Message("assistant", "")) == "[0] assistant: (empty)"


def test_tool_calls_and_results_are_shown() -> None:
    calls = (
        ToolCall("call_1", "lookup_order", '{"order": 17}'),
        ToolCall("call_2", "track", '{"parcel": "P9"}'),
    )
    assert render_message(2, Message("assistant", "Checking.", calls)).split("\n") == [
        "[2] assistant: Checking.",
        '→ calls tool lookup_order({"order": 17}) [id call_1]',
        '→ calls tool track({"parcel": "P9"}) [id call_2]',
    ]
    result = Message("tool", '{"status": "delivered"}', tool_call_id="call_1")
    assert render_message(3, result) == '[3] tool result for call_1: {"status": "delivered"}'


def test_a_cap_keeps_the_head_and_tail_and_counts_what_was_cut() -> None:
    text = long_text("x", 400)
    rendered = render_message(0, Message("user", text), cap=100)
    match = CHARS_ELIDED.search(rendered)
    assert match is not None
    head, tail = rendered[len("[0] user: ") : match.start()], rendered[match.end() :]
    assert text.startswith(head) and text.endswith(tail)
    assert head and tail and len(head) + len(tail) == 100
    assert len(head) + int(match.group(1)) + len(tail) == len(text)


def test_a_cap_shortens_tool_arguments_too() -> None:
    arguments = '{"query": "' + "q" * 2000 + '"}'
    rendered = render_message(1, Message("assistant", "", (ToolCall("c", "search", arguments),)))
    assert arguments in rendered
    capped = render_message(
        1, Message("assistant", "", (ToolCall("c", "search", arguments),)), cap=200
    )
    assert arguments not in capped
    assert CHARS_ELIDED.search(capped)
    assert capped.startswith('[1] assistant: → calls tool search({"query": "q')
    assert capped.endswith('q"}) [id c]')


def test_text_within_the_cap_is_untouched() -> None:
    assert render_message(0, Message("user", "x" * 100), cap=100) == "[0] user: " + "x" * 100


# render


def test_a_transcript_that_fits_is_complete_and_not_compacted() -> None:
    messages = episode(4, 20)
    text, compacted = render(messages, 10_000)
    assert compacted is False
    assert text == "\n\n".join(render_message(i, m) for i, m in enumerate(messages))
    assert "elided" not in text


def test_the_exact_budget_still_fits() -> None:
    messages = episode(3, 20)
    full, _ = render(messages, 10_000)
    assert render(messages, tokens(full)) == (full, False)
    assert render(messages, tokens(full) - 1)[1] is True


def test_long_messages_are_shortened_before_any_turn_is_dropped() -> None:
    messages = episode(8, 800)  # ~2,000 tokens a message
    text, compacted = render(messages, 4000)
    assert compacted is True
    assert tokens(text) <= 4000
    assert indices(text) == list(range(8))  # every turn is still there
    assert MESSAGES_ELIDED.search(text) is None
    for i in range(8):  # each one as its head and its tail
        assert f"START-{i} " in text and f" END-{i}" in text
    assert len(CHARS_ELIDED.findall(text)) == 8


def test_shortening_only_goes_as_far_as_the_budget_needs() -> None:
    messages = [Message("user", "short question"), Message("assistant", long_text("a", 3000))]
    loose, _ = render(messages, 3000)
    tight, _ = render(messages, 400)
    assert tokens(tight) <= 400 < tokens(loose) <= 3000
    assert "[0] user: short question" in loose and "[0] user: short question" in tight


@pytest.mark.parametrize("budget", [400, 1000, 2500])
def test_middle_turns_are_elided_keeping_the_opening_and_the_end(budget: int) -> None:
    messages = episode(60, 300)
    text, compacted = render(messages, budget)
    assert compacted is True
    assert tokens(text) <= budget
    kept = indices(text)
    assert kept[:2] == [0, 1]  # the opening request
    assert kept[-1] == 59  # the outcome
    assert kept == sorted(kept)
    assert "END-59" in text
    match = MESSAGES_ELIDED.search(text)
    assert match is not None
    assert int(match.group(1)) == len(messages) - len(kept)
    assert kept[2:] == list(range(kept[2], 60))  # one contiguous gap, after the opening
    assert text.index(match.group(0)) < text.index(f"[{kept[2]}] ")


def test_more_budget_keeps_more_turns() -> None:
    messages = episode(60, 300)
    small = indices(render(messages, 500)[0])
    large = indices(render(messages, 2500)[0])
    assert set(small) < set(large)
