"""learner/transcript.py: an episode rendered for the reflector within a token budget, and the
summary of the tools the agent was offered."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from core.formats.base import Message, ToolCall
from core.tokens import count_tokens
from learner.transcript import (
    ENCODING,
    ToolSpec,
    evidence,
    render,
    render_message,
    render_tools,
    tools_of,
)

LEFT_OUT = re.compile(
    r"\[\.\.\. (\d+) messages? left out here: \[(\d+)\](?: to \[(\d+)\])? \.\.\.\]"
)
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


def gaps(text: str) -> list[tuple[int, int, int]]:
    """Each marker as (count, first, last)."""
    return [
        (int(count), int(first), int(last or first))
        for count, first, last in LEFT_OUT.findall(text)
    ]


def coding_episode(turns: int, errors: Sequence[int] = ()) -> list[Message]:
    """A coding agent's long session: a system prompt, one request, then tool calls and their
    results; the results at `errors` are a traceback."""
    messages = [
        Message("system", "You are a coding agent working in a Python repository. " * 6),
        Message("user", "The date parser test fails on leap years, please fix it. " * 2),
    ]
    for i in range(2, turns):
        if i % 2 == 0:
            call = ToolCall(f"c{i}", "read_file", f'{{"path": "src/module_{i}.py"}}')
            messages.append(Message("assistant", f"Reading module {i} next. " * 6, (call,)))
        elif i in errors:
            text = f"Traceback (most recent call last): ValueError: day out of range in {i}"
            messages.append(Message("tool", text, tool_call_id=f"c{i - 1}"))
        else:
            body = "".join(f"def f{i}_{j}(x):\n    return x + {j}\n" for j in range(12))
            messages.append(Message("tool", body, tool_call_id=f"c{i - 1}"))
    return messages


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


# render: everything fits, or every message is shortened


def test_a_transcript_that_fits_is_complete_and_not_compacted() -> None:
    messages = episode(4, 20)
    text, compacted = render(messages, 10_000)
    assert compacted is False
    assert text == "\n\n".join(render_message(i, m) for i, m in enumerate(messages))
    assert "elided" not in text and "left out" not in text


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
    assert gaps(text) == []
    for i in range(8):  # each one as its head and its tail
        assert f"START-{i} " in text and f" END-{i}" in text
    assert len(CHARS_ELIDED.findall(text)) == 8


def test_shortening_only_goes_as_far_as_the_budget_needs() -> None:
    messages = [Message("user", "short question"), Message("assistant", long_text("a", 3000))]
    loose, _ = render(messages, 3000)
    tight, _ = render(messages, 400)
    assert tokens(tight) <= 400 < tokens(loose) <= 3000
    assert "[0] user: short question" in loose and "[0] user: short question" in tight


# render: whole messages left out


def test_a_400_message_episode_fills_the_budget_around_its_start_end_and_error() -> None:
    messages = coding_episode(400, errors=[201])
    budget = 12_000
    full = "\n\n".join(render_message(i, m) for i, m in enumerate(messages))
    assert tokens(full) > 3 * budget
    text, compacted = render(messages, budget)
    assert compacted is True
    assert 0.7 * budget <= tokens(text) <= budget
    kept = indices(text)
    assert kept == sorted(kept)
    assert {0, 1, 399} <= set(kept)  # the system prompt, the request, the outcome
    assert {200, 201, 202} <= set(kept)  # the failing call, its traceback, the next step
    assert "ValueError: day out of range in 201" in text
    # every left-out run is marked where it was, with its size, and they add up
    marked = gaps(text)
    assert marked and sum(count for count, _, _ in marked) == len(messages) - len(kept)
    for count, first, last in marked:
        assert last - first + 1 == count
        assert first - 1 in kept and (last + 1 in kept or last == len(messages) - 1)
        assert not set(range(first, last + 1)) & set(kept)
    # the budget goes to the start, the error and the end in proportion, not to one of them
    around_error = [i for i in kept if 150 <= i <= 250]
    assert len(around_error) >= 20
    assert len([i for i in kept if i < 100]) >= 20 and len([i for i in kept if i > 300]) >= 20


@pytest.mark.parametrize("turns", [120, 180, 190, 250, 400, 800])
def test_no_cliff_the_compacted_transcript_uses_most_of_the_budget_at_any_length(
    turns: int,
) -> None:
    """Past ~180 messages this once fell to 8 messages of ~600 tokens against 12,000."""
    text, _ = render(coding_episode(turns, errors=[turns // 2 + 1]), 12_000)
    assert 0.7 * 12_000 <= tokens(text) <= 12_000
    assert len(indices(text)) >= 60


def test_more_budget_keeps_more_turns_in_proportion() -> None:
    messages = coding_episode(400, errors=[201])
    kept = []
    for budget in (3000, 6000, 12_000, 24_000):
        text, _ = render(messages, budget)
        assert 0.7 * budget <= tokens(text) <= budget
        kept.append(set(indices(text)))
    assert kept[0] < kept[1] < kept[2] < kept[3]
    assert len(kept[3]) > 1.6 * len(kept[2]) > 1.6 * 1.6 * len(kept[1])


@pytest.mark.parametrize("budget", [400, 1000, 2500])
def test_tight_budgets_keep_the_opening_and_the_end(budget: int) -> None:
    messages = episode(60, 300)
    text, compacted = render(messages, budget)
    assert compacted is True
    assert tokens(text) <= budget
    kept = indices(text)
    assert kept[0] == 0 and kept[-1] == 59  # the request and the outcome
    assert "END-59" in text
    assert sum(count for count, _, _ in gaps(text)) == len(messages) - len(kept)


def test_when_errors_cannot_all_stay_the_first_the_last_and_ones_between_do() -> None:
    errors = list(range(21, 380, 20))  # 18 failing calls
    messages = coding_episode(400, errors=errors)
    text, _ = render(messages, 2500)
    kept = set(indices(text))
    assert errors[0] in kept and errors[-1] in kept
    assert 3 <= len(kept & set(errors)) < len(errors)
    assert kept & set(errors[6:12])  # the middle is not skipped


def test_a_user_correcting_the_agent_is_kept_with_its_neighbours() -> None:
    messages = episode(200, 300)
    messages[120] = Message("user", "No, that's wrong: I asked for the March invoice, not April.")
    text, _ = render(messages, 3000)
    assert {119, 120, 121} <= set(indices(text))
    assert "I asked for the March invoice" in text


def test_evidence_is_errors_in_tool_results_and_user_messages_and_user_corrections() -> None:
    messages = [
        Message("system", "You are helpful."),
        Message("user", "Book me a flight."),
        Message("assistant", "That error should not count: the assistant said it."),
        Message("tool", '{"status": 404, "error": "reservation not found"}', tool_call_id="c"),
        Message("tool", '{"seats": 3}', tool_call_id="d"),
        Message("user", "That is not what I wanted, you forgot the return leg."),
        Message("user", "I get a 500 error when I pay."),
        Message("user", "Thanks, that works."),
    ]
    assert evidence(messages) == [3, 5, 6]


def test_a_tiny_budget_still_returns_something_within_it() -> None:
    text, compacted = render(coding_episode(400, errors=[201]), 200)
    assert compacted is True and tokens(text) <= 200
    assert indices(text)[-1] == 399


# the agent's tools


CHAT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order by its id.\nReturns status, items and dates.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "email": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {"type": "function", "function": {"name": "list_refunds"}},
]
ANTHROPIC_TOOLS = [
    {
        "name": "cancel_reservation",
        "description": "  \n  Cancel a reservation.   Only before departure.",
        "input_schema": {
            "type": "object",
            "properties": {"reservation_id": {}, "reason": {}},
            "required": ["reservation_id", "reason"],
        },
    },
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
]
RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "run_tests",
        "description": "Run the test suite.",
        "parameters": {"type": "object", "properties": {"path": {}}},
    },
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "mcp", "server_label": "github", "server_url": "https://example.invalid/mcp"},
]


def test_tools_are_read_from_all_three_request_shapes() -> None:
    assert tools_of([{"tools": CHAT_TOOLS}]) == [
        ToolSpec(
            "lookup_order", "Look up an order by its id.", ("order_id", "email"), ("order_id",)
        ),
        ToolSpec("list_refunds"),
    ]
    assert tools_of([{"tools": ANTHROPIC_TOOLS}]) == [
        ToolSpec(
            "cancel_reservation",
            "Cancel a reservation. Only before departure.",
            ("reservation_id", "reason"),
            ("reservation_id", "reason"),
        ),
        ToolSpec("web_search", "built-in tool (web_search_20250305)"),
    ]
    assert tools_of([{"tools": RESPONSES_TOOLS}]) == [
        ToolSpec("run_tests", "Run the test suite.", ("path",)),
        ToolSpec("file_search", "built-in tool (file_search)"),
        ToolSpec("mcp:github", "built-in tool (mcp)"),
    ]
    legacy = {"functions": [{"name": "get_weather", "parameters": {"properties": {"city": {}}}}]}
    assert tools_of([legacy]) == [ToolSpec("get_weather", "", ("city",))]


def test_each_tool_once_in_first_offered_order_as_last_defined() -> None:
    later = {"type": "function", "function": {"name": "list_refunds", "description": "New."}}
    requests = [{"tools": CHAT_TOOLS[:1]}, {"tools": [later, CHAT_TOOLS[0]]}, {"tools": []}]
    assert [(t.name, t.description) for t in tools_of(requests)] == [
        ("lookup_order", "Look up an order by its id."),
        ("list_refunds", "New."),
    ]


@pytest.mark.parametrize(
    "request_body",
    [None, "text", [], {}, {"tools": "x"}, {"tools": [1, None, {}, {"function": "x"}]}],
)
def test_malformed_tool_lists_are_skipped(request_body: object) -> None:
    assert tools_of([request_body]) == []


def test_long_descriptions_and_parameter_lists_are_cut() -> None:
    wordy = "Search the knowledge base for articles that match the query. " * 10
    many: dict[str, object] = {f"p{i}": {} for i in range(30)}
    [tool] = tools_of(
        [{"tools": [{"name": "kb", "description": wordy, "input_schema": {"properties": many}}]}]
    )
    assert len(tool.description) <= 160
    assert tool.description.startswith("Search the knowledge base") and "\n" not in tool.description
    assert len(tool.parameters) == 13 and tool.parameters[-1] == "..."


def test_tools_render_one_line_each_with_optional_parameters_marked() -> None:
    text = render_tools(tools_of([{"tools": CHAT_TOOLS}]), 500)
    assert text.split("\n") == [
        "- lookup_order(order_id, email?): Look up an order by its id.",
        "- list_refunds()",
    ]


def test_tools_past_the_budget_are_named_only() -> None:
    tools = [
        ToolSpec(f"tool_{i}", "Does a thing with a fairly long description. " * 3)
        for i in range(40)
    ]
    text = render_tools(tools, 300)
    assert tokens(text) <= 300
    lines = text.split("\n")
    assert lines[0].startswith("- tool_0(): Does a thing")
    assert lines[-1].startswith(f"- and {40 - (len(lines) - 1)} more: tool_")
    assert len(lines) > 3


def test_a_tool_list_too_long_even_for_names_is_cut_with_a_count() -> None:
    tools = [ToolSpec(f"a_rather_long_tool_name_{i}") for i in range(200)]
    text = render_tools(tools, 100)
    assert tokens(text) <= 100
    assert text.startswith("- ") and "more: a_rather_long_tool_name_" in text
    assert text.endswith(", ...")
