"""Grouping traces into episodes, over trace rows shaped like the proxy writes them."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from core.formats import FORMATS
from learner.conversation_keys import prefix_hashes
from learner.episodes import episode_conversation, group_new_traces
from store import TRACE_COLUMNS
from store.sqlite import SQLiteStore
from store.sqlite.db import open_database

Body = dict[str, Any]
Turn = tuple[Body, Body]
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
_ids = itertools.count()


@pytest.fixture
def db(tmp_path: Path) -> sqlite_utils.Database:
    database = open_database(tmp_path / "x.db")
    SQLiteStore.on(database).migrate()
    return database


def on(db: sqlite_utils.Database) -> SQLiteStore:
    """The store's repositories over the test's own connection (which inspects the tables)."""
    return SQLiteStore.on(db)


def insert_traces(db: sqlite_utils.Database, rows: list[Body]) -> None:
    on(db).traces.insert_values([tuple(map(row.get, TRACE_COLUMNS)) for row in rows])


# --- realistic conversations, one list of (request, response) per format ---------------------


def chat_turns(city: str = "Paris") -> list[Turn]:
    """Three turns: a tool call, its result, a follow-up question."""

    def body(messages: list[Body]) -> Body:
        tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
        return {"model": "gpt-4o-mini", "messages": messages, "tools": [tool]}

    def answer(message: Body) -> Body:
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        return {"id": f"chatcmpl-{next(_ids)}", "object": "chat.completion", "choices": [choice]}

    args = json.dumps({"city": city, "unit": "c"}, separators=(",", ":"))
    call: Body = {
        "id": "call_w1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": args},
    }
    m1: list[Body] = [
        {"role": "system", "content": "You are a travel assistant."},
        {"role": "user", "content": f"What is the weather in {city}?"},
    ]
    a1 = {"role": "assistant", "content": None, "tool_calls": [call]}
    # the client sends the call back re-serialised, as LangChain does: other spacing and order
    respaced = json.dumps({"unit": "c", "city": city})
    resent = {
        **a1,
        "tool_calls": [{**call, "function": {**call["function"], "arguments": respaced}}],
    }
    result = {"role": "tool", "tool_call_id": "call_w1", "content": '{"temp_c": 18}'}
    m2 = [*m1, resent, result]
    a2 = {"role": "assistant", "content": f"It is 18 °C in {city}.", "refusal": None}
    m3 = [*m2, a2, {"role": "user", "content": "Do I need an umbrella tomorrow?"}]
    a3 = {"role": "assistant", "content": "No, tomorrow stays dry."}
    return [(body(m1), answer(a1)), (body(m2), answer(a2)), (body(m3), answer(a3))]


def messages_turns(task: str = "Fix the failing test in tests/test_dates.py") -> list[Turn]:
    """Three turns of a coding agent: thinking, tool_use and tool_result blocks."""
    system = [
        {
            "type": "text",
            "text": "You are a careful coding agent.",
            "cache_control": {"type": "ephemeral"},
        }
    ]

    def body(messages: list[Body]) -> Body:
        thinking = {"type": "enabled", "budget_tokens": 1024}
        return {
            "model": "claude-sonnet-4-5",
            "max_tokens": 2048,
            "system": system,
            "thinking": thinking,
            "messages": messages,
        }

    def answer(content: list[Body]) -> Body:
        return {
            "id": f"msg_{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": content,
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 900, "output_tokens": 80},
        }

    def thought(text: str) -> Body:
        return {"type": "thinking", "thinking": text, "signature": "EqQBCkYIBxgCKkA="}

    read = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "read_file",
        "input": {"path": "tests/test_dates.py"},
    }
    patch = {"path": "src/dates.py", "old": "return d", "new": "return d or None"}
    edit = {"type": "tool_use", "id": "toolu_2", "name": "edit_file", "input": patch}
    c1 = [thought("Read the test first."), {"type": "text", "text": "Reading the test."}, read]
    c2 = [thought("The parser accepts Feb 30."), edit]
    c3 = [{"type": "text", "text": "Fixed: invalid dates give None, and the suite passes."}]
    m1: list[Body] = [{"role": "user", "content": task}]
    failing = "assert parse('2024-02-30') is None"
    r1: list[Body] = [{"type": "tool_result", "tool_use_id": "toolu_1", "content": failing}]
    ok = [{"type": "text", "text": "ok"}]
    r2 = [
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": ok},
        {"type": "text", "text": "Now run the suite.", "cache_control": {"type": "ephemeral"}},
    ]
    m2 = [*m1, {"role": "assistant", "content": c1}, {"role": "user", "content": r1}]
    m3 = [*m2, {"role": "assistant", "content": c2}, {"role": "user", "content": r2}]
    return [(body(m1), answer(c1)), (body(m2), answer(c2)), (body(m3), answer(c3))]


def responses_turns(order: str = "42") -> list[Turn]:
    """Three turns with reasoning, function_call and function_call_output items."""

    def body(items: list[Body]) -> Body:
        return {
            "model": "gpt-5-mini",
            "instructions": "You answer questions about orders.",
            "input": items,
            "store": False,
        }

    def answer(output: list[Body], n: int) -> Body:
        return {
            "id": f"resp_{order}_{n}",
            "object": "response",
            "status": "completed",
            "output": output,
        }

    def said(text: str) -> Body:
        content = [{"type": "output_text", "text": text, "annotations": []}]
        return {
            "type": "message",
            "id": f"msg_{next(_ids)}",
            "role": "assistant",
            "status": "completed",
            "content": content,
        }

    call = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_o1",
        "name": "get_order",
        "arguments": json.dumps({"id": order}),
    }
    o1: list[Body] = [{"type": "reasoning", "id": "rs_1", "summary": []}, call]
    i1: list[Body] = [
        {"role": "user", "content": [{"type": "input_text", "text": f"Where is order {order}?"}]}
    ]
    i2 = [
        *i1,
        *o1,
        {"type": "function_call_output", "call_id": "call_o1", "output": '{"status": "shipped"}'},
    ]
    o2 = [said(f"Order {order} has shipped.")]
    i3 = [*i2, *o2, {"role": "user", "content": "When will it arrive?"}]
    o3 = [said("On Thursday.")]
    return [(body(i1), answer(o1, 1)), (body(i2), answer(o2, 2)), (body(i3), answer(o3, 3))]


TURNS: dict[str, Callable[[], list[Turn]]] = {
    "chat": chat_turns,
    "messages": messages_turns,
    "responses": responses_turns,
}


# --- helpers -------------------------------------------------------------------------------


def row(
    fmt: str | None, request: Body | None, response: Body | None, at: float, **extra: Any
) -> Body:
    values: Body = {
        "id": f"tr_{next(_ids):06d}",
        "created_at": at,
        "skillbook": "default",
        "format": fmt,
        "method": "POST",
        "path": PATHS.get(fmt or "", "/v1/models"),
        "model": (request or {}).get("model"),
        "status": 200,
        "stream": 0,
        "client_disconnected": 0,
        "injected_skill_ids": json.dumps([]),
        "request_json": json.dumps(request) if request is not None else None,
        "response_json": json.dumps(response) if response is not None else None,
    }
    return {**values, **extra}


def rows_of(
    fmt: str, turns: list[Turn], start: float, step: float = 10.0, **extra: Any
) -> list[Body]:
    return [row(fmt, rq, rs, start + i * step, **extra) for i, (rq, rs) in enumerate(turns)]


def group(db: sqlite_utils.Database, *rows: Body, limit: int = 5000) -> None:
    """Insert `rows` and group everything, with the clock just after the newest of them."""
    if rows:
        insert_traces(db, list(rows))
    now = max(r["created_at"] for r in rows) + 0.5 if rows else None
    while group_new_traces(on(db), limit=limit, settle_s=0, now=now).traces_seen == limit:
        pass


def episode_of(db: sqlite_utils.Database, trace: Body) -> str | None:
    found = db.execute("SELECT episode_id FROM traces WHERE id = ?", [trace["id"]]).fetchone()
    return str(found[0]) if found[0] else None


def partition(db: sqlite_utils.Database) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for trace_id, episode in db.execute("SELECT id, episode_id FROM traces ORDER BY id"):
        if episode is not None:
            groups.setdefault(episode, []).append(trace_id)
    return sorted(groups.values())


def episode_row(db: sqlite_utils.Database, episode_id: str | None) -> Body:
    return dict(db.table("episodes").get(str(episode_id)))


def feedback(db: sqlite_utils.Database, **values: Any) -> None:
    db.table("feedback").insert({"skillbook": "default", "created_at": 1.0, **values})


# --- the prefix rule -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["chat", "messages", "responses"])
def test_a_multi_turn_conversation_is_one_episode(db: sqlite_utils.Database, fmt: str) -> None:
    turns = TURNS[fmt]()
    rows = rows_of(fmt, turns, start=100.0)
    insert_traces(db, rows)

    result = group_new_traces(on(db), settle_s=0)

    assert (result.traces_seen, result.grouped, result.new_episodes, result.skipped) == (3, 3, 1, 0)
    (ids,) = partition(db)
    assert ids == [r["id"] for r in rows]
    episode_id = episode_of(db, rows[0])
    episode = episode_row(db, episode_id)
    assert (episode["first_at"], episode["last_at"], episode["trace_count"]) == (100, 120, 3)
    assert (episode["status"], episode["signal"], episode["session_key"]) == ("open", 0, None)
    conversation = episode_conversation(on(db), str(episode_id))
    assert conversation.messages == FORMATS[fmt].conversation(*turns[-1])
    assert conversation.trace_ids == [r["id"] for r in rows]
    assert [t.id for t in on(db).episodes.traces(str(episode_id))] == conversation.trace_ids
    assert {m.role for m in conversation.messages} >= {"user", "assistant", "tool"}


def test_interleaved_conversations_stay_apart(db: sqlite_utils.Database) -> None:
    paris, oslo = (
        rows_of("chat", chat_turns("Paris"), 100),
        rows_of("chat", chat_turns("Oslo"), 105),
    )
    group(db, *sorted(paris + oslo, key=lambda r: r["created_at"]))

    assert partition(db) == sorted([[r["id"] for r in paris], [r["id"] for r in oslo]])


def test_the_same_conversation_in_two_skillbooks_is_two_episodes(db: sqlite_utils.Database) -> None:
    turns = messages_turns()
    group(
        db,
        *rows_of("messages", turns, 100, skillbook="a"),
        *rows_of("messages", turns, 101, skillbook="b"),
    )

    books = db.execute("SELECT skillbook, trace_count FROM episodes ORDER BY skillbook").fetchall()
    assert books == [("a", 3), ("b", 3)]


def test_editing_the_first_user_message_forks_a_new_episode(db: sqlite_utils.Database) -> None:
    original = rows_of("chat", chat_turns("Paris"), 100)
    fork = chat_turns("Paris")
    for request, _ in fork:
        request["messages"][1] = {
            "role": "user",
            "content": "What is the weather in Paris, France?",
        }
    forked = rows_of("chat", fork[1:], 200)  # the edited conversation goes on from turn two
    group(db, *original, *forked)

    assert partition(db) == sorted([[r["id"] for r in original], [r["id"] for r in forked]])


def test_a_retried_turn_stays_in_its_episode(db: sqlite_utils.Database) -> None:
    turns = responses_turns()
    rows = rows_of("responses", turns, 100)
    retry = row("responses", turns[1][0], turns[1][1], 125)  # turn two again, after turn three
    group(db, *rows, retry)

    assert partition(db) == [sorted([*(r["id"] for r in rows), retry["id"]])]


def test_previous_response_id_continues_without_a_prefix(db: sqlite_utils.Database) -> None:
    (first, first_answer), (second, second_answer), _ = responses_turns("7")
    stateful = {**second, "input": second["input"][-1:], "previous_response_id": first_answer["id"]}
    rows = [
        row("responses", first, first_answer, 100),
        row("responses", stateful, second_answer, 110),
    ]
    group(db, *rows)

    (ids,) = partition(db)
    assert len(ids) == 2
    conversation = episode_conversation(on(db), str(episode_of(db, rows[0])))
    assert conversation.messages == FORMATS["responses"].conversation(second, second_answer)


def test_a_turn_that_changes_the_last_answer_starts_a_new_episode(
    db: sqlite_utils.Database,
) -> None:
    (first, first_answer), (second, second_answer), _ = chat_turns()
    edited = json.loads(json.dumps(second))
    edited["messages"][2] = {"role": "assistant", "content": "Let me look that up."}
    rows = [row("chat", first, first_answer, 100), row("chat", edited, second_answer, 110)]
    group(db, *rows)

    assert len(partition(db)) == 2


# --- identical conversations and tenants ----------------------------------------------------

A, B = "fp_aaaaaaaaaaaa", "fp_bbbbbbbbbbbb"


def trial(turns: int, start: float, step: float = 1.0, **extra: Any) -> list[Body]:
    """One trial of a task: the same request and the same answer every time it is run."""
    messages: list[Body] = [
        {"role": "system", "content": "You are a travel agent."},
        {"role": "user", "content": "Book the cheapest flight to Rome."},
    ]
    rows = []
    for turn in range(turns):
        said = {"role": "assistant", "content": "Searching flights."}
        choice = {"index": 0, "message": said, "finish_reason": "stop"}
        answer = {"id": f"chatcmpl-{next(_ids)}", "object": "chat.completion", "choices": [choice]}
        request = {"model": "gpt-4o-mini", "messages": list(messages)}
        rows.append(row("chat", request, answer, start + turn * step, **extra))
        messages += [said, {"role": "user", "content": f"Go on with step {turn + 2}."}]
    return rows


@pytest.mark.parametrize("limit", [5000, 4, 1])
def test_identical_trials_sent_at_once_are_one_episode_each(
    db: sqlite_utils.Database, limit: int
) -> None:
    trials = [trial(n, 100 + i / 10, step=1 + i / 100) for i, n in enumerate([3, 3, 3, 3, 7, 7])]
    group(db, *sorted(itertools.chain(*trials), key=lambda r: r["created_at"]), limit=limit)

    assert sorted(len(ids) for ids in partition(db)) == [3, 3, 3, 3, 7, 7]
    for (episode_id,) in db.execute("SELECT id FROM episodes"):  # each a whole conversation
        traces = on(db).episodes.traces(episode_id)
        sent = [len(t.request_json["messages"]) for t in traces if isinstance(t.request_json, dict)]
        assert sent == [2 + 2 * turn for turn in range(len(traces))]


def test_continuations_of_identical_conversations_spread_over_them(
    db: sqlite_utils.Database,
) -> None:
    (first, first_answer), (second, second_answer), _ = chat_turns()
    firsts = [row("chat", first, first_answer, 100 + n) for n in range(3)]
    seconds = [row("chat", second, second_answer, 110 + n) for n in range(4)]
    group(db, *firsts)
    group(db, *seconds)  # the fourth is a retry: nothing is left that was not continued

    assert sorted(len(ids) for ids in partition(db)) == [2, 2, 3]
    assert episode_of(db, seconds[0]) == episode_of(db, firsts[2])  # the newest first
    assert episode_of(db, seconds[1]) == episode_of(db, firsts[1])
    assert episode_of(db, seconds[3]) == episode_of(db, seconds[2]) == episode_of(db, firsts[0])


def test_two_tenants_identical_conversations_are_two_episodes(db: sqlite_utils.Database) -> None:
    a, b = trial(3, 100, key_fingerprint=A), trial(3, 100.5, key_fingerprint=B)
    keyless = trial(3, 100.7)
    group(db, *sorted(a + b + keyless, key=lambda r: r["created_at"]))

    assert partition(db) == sorted([[r["id"] for r in rows] for rows in (a, b, keyless)])


def test_a_previous_response_id_from_another_tenant_is_not_followed(
    db: sqlite_utils.Database,
) -> None:
    (first, first_answer), (second, second_answer), _ = responses_turns("9")
    stateful = {**second, "input": second["input"][-1:], "previous_response_id": first_answer["id"]}
    rows = [
        row("responses", first, first_answer, 100, key_fingerprint=A),
        row("responses", stateful, second_answer, 110, key_fingerprint=B),
        row("responses", stateful, second_answer, 111, key_fingerprint=A),
    ]
    group(db, *rows)

    assert partition(db) == sorted([[rows[0]["id"], rows[2]["id"]], [rows[1]["id"]]])


def test_two_tenants_naming_the_same_session_are_two_episodes(db: sqlite_utils.Database) -> None:
    a_rows, b_rows = (
        [
            row("chat", _unrelated("chat", n), None, at + n, session_id="s-1", key_fingerprint=fp)
            for n in range(2)
        ]
        for fp, at in ((A, 100.0), (B, 100.5))
    )
    group(db, a_rows[0], b_rows[0])
    group(db, a_rows[1], b_rows[1])  # each found again in a later batch

    assert partition(db) == sorted([[r["id"] for r in a_rows], [r["id"] for r in b_rows]])
    # the first tenant's episode is the session's: feedback by session id reaches it
    assert episode_row(db, episode_of(db, a_rows[0]))["session_key"] == "s-1"
    assert episode_row(db, episode_of(db, b_rows[0]))["session_key"] is None


def test_what_was_grouped_before_tenants_is_claimed_by_the_first_key_to_continue_it(
    db: sqlite_utils.Database,
) -> None:
    """The release before stored plain hashes and one episode per session for every key."""
    (first, first_answer), (second, second_answer), _ = chat_turns()
    for episode_id, session in (("ep_chat", None), ("ep_session", "s-old")):
        db.table("episodes").insert(
            {"id": episode_id, "skillbook": "default", "session_key": session, "first_at": 90.0}
            | {"last_at": 90.0, "trace_count": 1}
        )
    head = prefix_hashes(FORMATS["chat"].conversation(first, first_answer), {})[-1]
    db.table("conversation_heads").insert(
        {"skillbook": "default", "hash": head, "episode_id": "ep_chat"}
    )
    chats = [
        row("chat", second, second_answer, 100 + n, key_fingerprint=fp)
        for n, fp in enumerate([A, B, A])  # the third: tenant A retries
    ]
    sessions = [
        row("chat", _unrelated("chat", n), None, 100.5 + n, session_id="s-old", key_fingerprint=fp)
        for n, fp in enumerate([B, A, B])
    ]
    group(db, chats[0], sessions[0])
    group(db, *chats[1:], *sessions[1:])

    assert [episode_of(db, r) == "ep_chat" for r in chats] == [True, False, True]
    assert [episode_of(db, r) == "ep_session" for r in sessions] == [True, False, True]
    assert episode_row(db, "ep_chat")["trace_count"] == 3


# --- explicit sessions ---------------------------------------------------------------------


def _unrelated(fmt: str, n: int, **body: Any) -> Body:
    if fmt == "messages":
        return {
            "model": "claude-haiku-4-5",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"q{n}"}],
            **body,
        }
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{n}"}], **body}


CLAUDE_CODE = "user_5dd07c33da27e6d2_account_1d4e_session_d2e70091-3007-41a3-a916-cb8b0d3098de"
CLAUDE_CODE_JSON = json.dumps({"device_id": "d0", "account_uuid": "", "session_id": "5e3f-77"})


@pytest.mark.parametrize(
    ("fmt", "body", "column", "key"),
    [
        ("chat", {}, "sess-header", "sess-header"),
        ("chat", {"metadata": {"session_id": "sess-meta"}}, None, "sess-meta"),
        ("chat", {"metadata": {"conversation_id": "conv-9"}}, None, "conv-9"),
        (
            "messages",
            {"metadata": {"user_id": CLAUDE_CODE}},
            None,
            "d2e70091-3007-41a3-a916-cb8b0d3098de",
        ),
        ("messages", {"metadata": {"user_id": CLAUDE_CODE_JSON}}, None, "5e3f-77"),
    ],
)
def test_an_explicit_session_groups_traces_without_a_shared_prefix(
    db: sqlite_utils.Database, fmt: str, body: Body, column: str | None, key: str
) -> None:
    reply = {"id": "r", "content": [{"type": "text", "text": "a"}]} if fmt == "messages" else None
    rows = [
        row(fmt, _unrelated(fmt, n, **body), reply, 100 + n, session_id=column) for n in range(3)
    ]
    other = row(fmt, _unrelated(fmt, 9), reply, 104, session_id="someone-else")
    group(db, *rows[:2])
    group(db, rows[2], other)  # the session's episode is found again in a later batch

    assert partition(db) == sorted([[r["id"] for r in rows], [other["id"]]])
    assert episode_row(db, episode_of(db, rows[0]))["session_key"] == key


def test_the_openai_user_field_is_not_a_session(db: sqlite_utils.Database) -> None:
    rows = [row("chat", _unrelated("chat", n, user="alice"), None, 100 + n) for n in range(2)]
    group(db, *rows)

    assert len(partition(db)) == 2


# --- what is skipped, and what marks the signal --------------------------------------------


def test_failed_passthrough_and_unreadable_traces_are_skipped(db: sqlite_utils.Database) -> None:
    request, _ = chat_turns()[0]
    error = {"error": {"message": "upstream failed", "type": "server_error"}}
    skipped = [
        row("chat", request, error, 100, status=500),
        row(None, None, {"data": []}, 101, method="GET"),
        row("chat", None, None, 102, request_json="not json"),
        row("chat", None, None, 103, request_json=json.dumps({"skillproxy_omitted": True})),
    ]
    insert_traces(db, skipped)

    result = group_new_traces(on(db), settle_s=0)

    assert (result.traces_seen, result.grouped, result.new_episodes, result.skipped) == (4, 0, 0, 4)
    assert partition(db) == [] and db["episodes"].count == 0
    assert group_new_traces(on(db), settle_s=0).traces_seen == 0


def test_a_failed_turn_marks_its_episode_but_stays_out(db: sqlite_utils.Database) -> None:
    turns = chat_turns()
    rows = rows_of("chat", turns, 100)
    failed = row("chat", turns[1][0], None, 105, status=529, error="overloaded")
    group(db, rows[0], failed, *rows[1:])

    (ids,) = partition(db)
    assert failed["id"] not in ids and len(ids) == 3
    assert episode_row(db, episode_of(db, rows[0]))["signal"] == 1


@pytest.mark.parametrize(
    "trouble", [{"error": "upstream closed mid-stream"}, {"client_disconnected": 1}]
)
def test_an_error_or_a_hang_up_marks_the_signal(db: sqlite_utils.Database, trouble: Body) -> None:
    rows = rows_of("messages", messages_turns(), 100)
    rows[1].update(trouble)
    group(db, *rows)

    episode_id = str(episode_of(db, rows[0]))
    assert episode_row(db, episode_id)["signal"] == 1 and on(db).episodes.signal(episode_id)


@pytest.mark.parametrize(
    ("values", "negative"),
    [
        ({"label": "thumbs_down"}, True),
        ({"label": "Thumbs Down"}, True),
        ({"score": 0.2}, True),
        ({"score": 0.9, "label": "good"}, False),
    ],
)
def test_feedback_marks_the_signal(db: sqlite_utils.Database, values: Body, negative: bool) -> None:
    early, late = rows_of("chat", chat_turns("Rome"), 100), rows_of("chat", chat_turns("Bern"), 100)
    feedback(db, trace_id=early[1]["id"], **values)  # posted before grouping
    group(db, *early, *late)
    feedback(db, trace_id=late[2]["id"], **values)  # posted after

    for rows in (early, late):
        assert on(db).episodes.signal(str(episode_of(db, rows[0]))) is negative
    assert episode_row(db, episode_of(db, early[0]))["signal"] == int(negative)
    assert [e.signal for e in on(db).episodes.ready("default", idle_s=0)] == [negative] * 2


def test_feedback_on_a_session_marks_its_episode(db: sqlite_utils.Database) -> None:
    rows = [row("chat", _unrelated("chat", n), None, 100 + n, session_id="s-1") for n in range(2)]
    group(db, *rows)
    episode_id = str(episode_of(db, rows[0]))
    assert not on(db).episodes.signal(episode_id)

    feedback(db, session_id="s-1", label="wrong", comment="it booked the wrong day")

    assert on(db).episodes.signal(episode_id)
    assert [f.comment for f in episode_conversation(on(db), episode_id).feedback] == [
        "it booked the wrong day"
    ]


# --- the cursor ----------------------------------------------------------------------------


def test_a_second_call_finds_nothing_new(db: sqlite_utils.Database) -> None:
    group(db, *rows_of("chat", chat_turns(), 100))
    before = db.execute("SELECT * FROM episodes").fetchall()

    result = group_new_traces(on(db), settle_s=0)

    assert result.traces_seen == 0
    assert db.execute("SELECT * FROM episodes").fetchall() == before


def _mixed() -> list[Body]:
    rows = [
        *rows_of("chat", chat_turns("Paris"), 100, step=3),
        *rows_of("chat", chat_turns("Oslo"), 101, step=3),
        *rows_of("messages", messages_turns(), 102, step=3),
        *rows_of("responses", responses_turns("1"), 100, step=4),
        *rows_of("responses", responses_turns("2"), 100, step=5),  # ties on created_at
        *(row("chat", _unrelated("chat", n), None, 100 + n, session_id="s") for n in range(4)),
        row("chat", chat_turns()[0][0], None, 102, status=500),
    ]
    return sorted(rows, key=lambda r: r["created_at"])


def test_small_batches_give_the_same_episodes(tmp_path: Path) -> None:
    rows = _mixed()
    results = []
    for name, limit in (("big", 5000), ("small", 2)):
        db = open_database(tmp_path / f"{name}.db")
        on(db).migrate()
        insert_traces(db, rows)
        group(db, limit=limit)
        counts = db.execute(
            "SELECT trace_count, signal FROM episodes ORDER BY first_at, trace_count"
        )
        results.append((partition(db), counts.fetchall()))

    assert results[0] == results[1]
    assert len(results[0][0]) == 6


def test_the_cursor_waits_for_slow_requests_to_settle(db: sqlite_utils.Database) -> None:
    insert_traces(db, [row("chat", *chat_turns()[0], 995.0)])

    assert group_new_traces(on(db), settle_s=10, now=1000).traces_seen == 0
    assert group_new_traces(on(db), settle_s=10, now=1006).traces_seen == 1


def test_ready_episodes_honours_idle_time(db: sqlite_utils.Database) -> None:
    old, recent = rows_of("chat", chat_turns("Paris"), 80), rows_of("chat", chat_turns("Oslo"), 480)
    insert_traces(db, [*old, *recent])
    assert on(db).episodes.ready("default", idle_s=0) == []  # nothing grouped yet
    group_new_traces(on(db), settle_s=100, now=650)  # cursor at 550: later traces may still come

    ready = on(db).episodes.ready("default", idle_s=100, now=1000)
    assert [e.id for e in ready] == [episode_of(db, old[0])]
    group_new_traces(on(db), settle_s=0, now=1000)
    ready = on(db).episodes.ready("default", idle_s=100, now=1000)
    assert [e.last_at for e in ready] == [100, 500]
    assert on(db).episodes.ready("default", idle_s=600, now=1000) == ready[:1]
    assert on(db).episodes.ready("other", idle_s=0) == []


def test_a_new_turn_reopens_a_reflected_episode(db: sqlite_utils.Database) -> None:
    rows = rows_of("messages", messages_turns(), 100)
    group(db, *rows[:2])
    episode_id = episode_of(db, rows[0])
    db.execute(
        "UPDATE episodes SET status = 'reflected', reflected_at = 150 WHERE id = ?", [episode_id]
    )

    group(db, rows[2])

    episode = episode_row(db, episode_id)
    assert (episode["status"], episode["trace_count"], episode["last_at"]) == ("open", 3, 120)


# --- what the reflector reads --------------------------------------------------------------


def test_episode_conversation_prefers_the_main_thread_over_side_calls(
    db: sqlite_utils.Database,
) -> None:
    meta = {"metadata": {"user_id": CLAUDE_CODE}}
    turns = [({**request, **meta}, response) for request, response in messages_turns()]
    main = rows_of("messages", turns, 100)
    for n, trace in enumerate(main):
        trace["injected_skill_ids"] = json.dumps(["sk_tests", f"sk_{n % 2}"])
    title = _unrelated("messages", 1, **meta)
    side = row(
        "messages", title, {"id": "m", "content": [{"type": "text", "text": "Fix dates"}]}, 130
    )
    group(db, *main, side)

    conversation = episode_conversation(on(db), str(episode_of(db, side)))

    assert conversation.messages == FORMATS["messages"].conversation(*turns[-1])
    assert [len(t) for t in conversation.threads] == [len(conversation.messages), 2]
    assert conversation.skill_ids == ["sk_tests", "sk_0", "sk_1"]
    assert conversation.trace_ids == [*(r["id"] for r in main), side["id"]]
