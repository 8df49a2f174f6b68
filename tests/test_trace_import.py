"""Importing conversations people already have: `skillproxy traces import` through a real
proxy on loopback, into traces and episodes the learner reflects on.

Covers skillproxy/trace_import.py (the formats), skillproxy/admin/imports.py (the streamed
endpoint), skillproxy/import_formats/privacy.py (`[privacy]` applied to what is imported),
the import part of store/sqlite/traces.py and its migration, and the `traces import` leaf of
skillproxy/admin_cli.py with `AdminClient.import_traces`."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.prices import cost_usd
from learner.episodes import group_new_traces
from skillproxy.trace_import import (
    MAX_LINE_BYTES,
    ImportFormat,
    LineError,
    LineSplitter,
    TooLong,
    parse_line,
)
from store import open_store
from tests.fakes import replies
from tests.harness import ADMIN_TOKEN, Cli, RunningProxy

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "import"
FILES: dict[ImportFormat, Path] = {
    "openai-jsonl": FIXTURES / "openai-chat.jsonl",
    "anthropic-jsonl": FIXTURES / "anthropic-messages.jsonl",
}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LESSON = (
    "When a customer asks to return an item, check the return window "
    "before asking for the shipping address."
)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text().splitlines() if text.strip()]


def episodes(proxy: RunningProxy, skillbook: str) -> list[dict[str, Any]]:
    answer = httpx.get(proxy.url + "/admin/episodes", params={"skillbook": skillbook}, headers=AUTH)
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def imported(proxy: RunningProxy, skillbook: str) -> list[Any]:
    store = open_store(proxy.config.store.url)
    try:
        return list(store.traces.imported(skillbook))
    finally:
        store.close()


# --------------------------------------------------------------------------- the fixtures


def _openai_message_ok(message: dict[str, Any]) -> bool:
    role = message["role"]
    if role == "assistant":
        calls = message.get("tool_calls", [])
        return ("content" in message or bool(calls)) and all(
            c["type"] == "function" and isinstance(c["function"]["arguments"], str)
            and {"id", "function"} <= set(c) and "name" in c["function"]
            for c in calls
        )  # fmt: skip
    if role == "tool":
        return {"tool_call_id", "content"} <= set(message)
    return role in ("system", "developer", "user") and "content" in message


def _anthropic_response_ok(message: dict[str, Any]) -> bool:
    required = {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    usage = message.get("usage", {})
    return required <= set(message) and {"input_tokens", "output_tokens"} <= set(usage)


def _anthropic_request_ok(request: dict[str, Any]) -> bool:
    return {"model", "max_tokens", "messages"} <= set(request) and all(
        m["role"] in ("user", "assistant") and "content" in m for m in request["messages"]
    )


def test_each_fixture_line_has_its_formats_required_fields() -> None:
    """The fixtures follow the published shapes (OpenAI's fine-tuning line, Anthropic's
    Messages request and response, a Message Batches result line), not our reading of them."""
    for line in lines(FILES["openai-jsonl"]):
        assert line["messages"] and all(_openai_message_ok(m) for m in line["messages"]), line
        for tool in line.get("tools", []):
            assert tool["type"] == "function" and "name" in tool["function"]
    shapes = set()
    for line in lines(FILES["anthropic-jsonl"]):
        if "params" in line:
            shapes.add("batch")
            assert isinstance(line["custom_id"], str) and _anthropic_request_ok(line["params"])
            assert line["result"]["type"] == "succeeded"
            assert _anthropic_response_ok(line["result"]["message"])
        else:
            shapes.add("response" if "response" in line else "request")
            assert _anthropic_request_ok(line)
            assert "response" not in line or _anthropic_response_ok(line["response"])
        for tool in line.get("tools", []):
            assert {"name", "input_schema"} <= set(tool)
    assert shapes == {"batch", "response", "request"}


# --------------------------------------------------------------------------- pure parts


def test_the_splitter_numbers_lines_skips_blanks_and_drops_an_overlong_one_as_it_streams() -> None:
    splitter = LineSplitter(limit=10)
    body = b'{"a":1}\n\n' + b"x" * 25 + b"\n{}\n" + b'{"b":2}'
    got = [out for i in range(0, len(body), 3) for out in splitter.feed(body[i : i + 3])]
    got += list(splitter.close())
    assert [n for n, _ in got] == [1, 3, 4, 5]
    assert got[0][1] == b'{"a":1}' and got[2][1] == b"{}" and got[3][1] == b'{"b":2}'
    assert isinstance(got[1][1], TooLong) and got[1][1].size == 25


def test_each_assistant_turn_is_a_trace_whose_request_is_the_conversation_before_it() -> None:
    first = lines(FILES["openai-jsonl"])[2]
    conversation = parse_line("openai-jsonl", json.dumps(first).encode())
    assert conversation.score == 0.9 and conversation.source == "import:openai-jsonl"
    one, two = (json.loads(t.request_json) for t in conversation.turns)
    assert [m["role"] for m in two["messages"]] == ["developer", "user", "assistant", "user"]
    assert one["messages"] == two["messages"][:2]
    assert all("weight" not in m for m in two["messages"])  # a training switch, not content
    answer = json.loads(conversation.turns[1].response_json)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Yes: Paris."}
    again = parse_line("openai-jsonl", json.dumps(first, indent=1, sort_keys=True).encode())
    assert again.source_id == conversation.source_id  # the JSON, not its spelling
    batch = lines(FILES["anthropic-jsonl"])[2]
    assert parse_line("anthropic-jsonl", json.dumps(batch).encode()).source_id == (
        "anthropic-jsonl:batch-req-1"
    )


@pytest.mark.parametrize(
    ("kind", "line", "error"),
    [
        ("openai-jsonl", b"{not json", "not JSON"),
        ("openai-jsonl", b"[1, 2]", "not a JSON object"),
        ("openai-jsonl", b'{"prompt": "hi"}', "messages: a non-empty array"),
        ("openai-jsonl", b'{"messages": [{"role": "robot", "content": "x"}]}', "role: 'robot'"),
        ("openai-jsonl", b'{"messages": [{"role": "user", "content": "x"}]}', "no assistant"),
        (
            "openai-jsonl",
            b'{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", '
            b'"content": "y"}], "label": "meh"}',
            "'meh' is not one of the accepted labels",
        ),
        (
            "openai-jsonl",
            b'{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", '
            b'"content": "y"}], "label": "bad", "score": 0.9}',
            "disagree",
        ),
        (
            "openai-jsonl",
            b'{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", '
            b'"content": "y"}], "score": 2}',
            "score",
        ),
        ("anthropic-jsonl", b'{"messages": [{"role": "system", "content": "x"}]}', "role"),
        (
            "anthropic-jsonl",
            b'{"custom_id": "r1", "params": {"messages": [{"role": "user", "content": "x"}]}, '
            b'"result": {"type": "errored", "error": {}}}',
            "not 'succeeded'",
        ),
        ("anthropic-jsonl", b'{"params": {"messages": []}}', "custom_id"),
        ("openai-jsonl", b'{"messages": [{"role": [], "content": "x"}]}', "role: an array is"),
        ("anthropic-jsonl", b'{"messages": [{"role": {}, "content": "x"}]}', "role: an object"),
    ],
)
def test_a_line_that_is_not_a_conversation_says_why(
    kind: ImportFormat, line: bytes, error: str
) -> None:
    with pytest.raises(LineError, match=error.replace("(", r"\(")):
        parse_line(kind, line)


# --------------------------------------------------------------------------- through a proxy


@pytest.mark.parametrize("kind", ["openai-jsonl", "anthropic-jsonl"])
def test_import_through_the_cli_makes_one_episode_per_conversation_once(
    kind: ImportFormat, cli: Cli, proxy: RunningProxy
) -> None:
    path = FILES[kind]
    code, out, err = cli("traces", "import", str(path), "--format", kind, "--skillbook", "old")
    assert code == 0, err
    assert "3 conversations" in out and "0 already imported, 0 failed" in out
    stored = imported(proxy, "old")
    turns = [len(parse_line(kind, json.dumps(line).encode()).turns) for line in lines(path)]
    assert len(stored) == sum(turns)
    assert {t.source for t in stored} == {f"import:{kind}"}
    assert len({t.source_id for t in stored}) == 3

    store = open_store(proxy.config.store.url)
    try:
        group_new_traces(store, settle_s=0)
        labelled = next(t for t in stored if t.session_id.startswith(("ft-", "anthropic-")))
        [feedback] = store.feedback.for_trace(labelled.trace_id)
        assert feedback.label in ("thumbs_down", "bad") and feedback.session_id is not None
    finally:
        store.close()
    found = episodes(proxy, "old")
    assert sorted(e["trace_count"] for e in found) == sorted(turns)
    assert {e["session_key"] for e in found} == {t.session_id for t in stored}
    assert any(e["signal"] for e in found)  # the negative label marks its episode

    code, out, err = cli("traces", "import", str(path), "--format", kind, "--skillbook", "old")
    assert code == 0, err
    assert "0 conversations (0 traces), 3 already imported" in out
    assert len(imported(proxy, "old")) == len(stored)


def test_an_imported_trace_shows_its_source_and_what_it_cost(cli: Cli, proxy: RunningProxy) -> None:
    """Priced like a proxied trace, from the model's published prices and the turn's usage;
    a fine-tuning line, which carries no usage, stays unpriced rather than guessed."""
    for kind in ("anthropic-jsonl", "openai-jsonl"):
        code, _, err = cli(
            "traces", "import", str(FILES[kind]), "--format", kind, "--skillbook", "paid"
        )
        assert code == 0, err
    details = [
        httpx.get(f"{proxy.url}/admin/traces/{t.trace_id}", headers=AUTH).json()
        for t in imported(proxy, "paid")
    ]
    by_source = {d["source"] for d in details}
    assert by_source == {"import:anthropic-jsonl", "import:openai-jsonl"}
    answered = next(d for d in details if d["response_json"].get("id") == "msg_01A")
    assert answered["cost_usd"] == cost_usd("claude-sonnet-4-5", 21, 9) and answered["cost_usd"] > 0
    assert all(d["cost_usd"] is None for d in details if d["source"] == "import:openai-jsonl")


def test_bad_lines_are_reported_by_number_and_the_good_ones_imported(
    cli: Cli, proxy: RunningProxy, tmp_path: Path
) -> None:
    good = FILES["openai-jsonl"].read_text().splitlines()
    bad = [
        good[0],
        "{this is not json",
        '{"prompt": "no messages"}',
        '{"messages": [{"role": "robot", "content": "hi"}]}',
        json.dumps({**json.loads(good[1]), "label": "so-so"}),
        json.dumps({"messages": [{"role": "user", "content": "x" * MAX_LINE_BYTES}]}),
        good[1],
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(bad) + "\n")
    code, out, err = cli("traces", "import", str(path), "--format", "openai-jsonl")
    assert code == 1
    assert "2 conversations (4 traces), 0 already imported, 5 failed" in out
    reported = {int(text.split(":")[0].split()[1]): text for text in err.splitlines()
                if text.startswith("line ")}  # fmt: skip
    assert sorted(reported) == [2, 3, 4, 5, 6]
    assert "not JSON" in reported[2] and "messages" in reported[3]
    assert "'robot'" in reported[4] and "'so-so'" in reported[5]
    assert f"over {MAX_LINE_BYTES} bytes" in reported[6]
    assert "5 lines of" in err and "failed; the others were imported" in err
    assert len(imported(proxy, "default")) == 4


@pytest.mark.parametrize("kind", ["openai-jsonl", "anthropic-jsonl"])
def test_a_value_of_the_wrong_type_fails_its_line_and_the_others_are_stored(
    kind: ImportFormat, cli: Cli, proxy: RunningProxy, tmp_path: Path
) -> None:
    """A role that is an array (unhashable) once aborted the whole import, storing nothing."""
    good = FILES[kind].read_text().splitlines()
    odd = json.loads(good[0])
    messages = odd["params"]["messages"] if "params" in odd else odd["messages"]
    messages[0]["role"] = []
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join([good[0], json.dumps(odd), good[1]]) + "\n")
    code, out, err = cli("traces", "import", str(path), "--format", kind)
    assert code == 1
    assert "2 conversations" in out and "1 failed" in out, out
    assert "line 2: " in err and "role: an array is not one of" in err, err
    assert len({t.source_id for t in imported(proxy, "default")}) == 2


def test_privacy_redacts_imported_bodies_as_it_does_proxied_ones(make_proxy: Any) -> None:
    """`privacy.stored_skillbooks` applies to what an import stores, as to proxied traces."""
    proxy = make_proxy(privacy={"stored_skillbooks": ["*"]})
    line = {"messages": [
        {"role": "user", "content": "Write to jane.doe@example.com about my order"},
        {"role": "assistant", "content": "Done: jane.doe@example.com has it."},
    ]}  # fmt: skip
    answer = httpx.post(
        proxy.url + "/admin/skillbooks/default/traces/import", params={"format": "openai-jsonl"},
        content=json.dumps(line).encode() + b"\n", headers=AUTH,
    )  # fmt: skip
    assert answer.status_code == 200 and '"imported":1' in answer.text.replace(" ", "")
    [trace] = imported(proxy, "default")
    detail = httpx.get(f"{proxy.url}/admin/traces/{trace.trace_id}", headers=AUTH).json()
    bodies = json.dumps([detail["request_json"], detail["response_json"]])
    assert "jane.doe@example.com" not in bodies and bodies.count("[EMAIL]") == 2


def test_a_failure_after_the_answer_began_ends_it_with_a_summary(proxy: RunningProxy) -> None:
    """Once the NDJSON answer has begun, an unexpected failure (here the database refuses the
    insert: a trigger of a schema the store does not expect) ends it with a summary carrying
    `error`, not a 500 page written into the stream."""
    database = proxy.config.store.url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_imports BEFORE INSERT ON trace_imports "
            "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
        )
    url = proxy.url + "/admin/skillbooks/refused/traces/import"
    body = FILES["openai-jsonl"].read_bytes()
    with httpx.stream(
        "POST", url, params={"format": "openai-jsonl"}, content=[body], headers=AUTH
    ) as answer:
        assert answer.status_code == 200
        sent = [json.loads(text) for text in answer.iter_lines() if text]
    assert sent[-1]["done"] is True and "internal error" in sent[-1]["error"], sent
    assert sent[-1]["imported"] == 0 and imported(proxy, "refused") == []


def test_the_endpoint_streams_ndjson_and_refuses_an_unknown_format(proxy: RunningProxy) -> None:
    url = proxy.url + "/admin/skillbooks/raw/traces/import"
    body = FILES["anthropic-jsonl"].read_bytes()
    with httpx.stream(
        "POST", url, params={"format": "anthropic-jsonl"}, content=[body], headers=AUTH
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("application/x-ndjson")
        sent = [json.loads(text) for text in answer.iter_lines() if text]
    assert sent[0] == {"line": 3, "imported": 3, "skipped": 0, "failed": 0}
    assert sent[-1]["done"] is True and sent[-1]["traces"] == 4 and sent[-1]["failed"] == []
    refused = httpx.post(url, params={"format": "csv"}, content=body, headers=AUTH)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_query"


def test_the_learner_learns_from_imported_conversations(
    cli: Cli, proxy: RunningProxy, tmp_path: Path
) -> None:
    """`skillproxy learn --once --now` reflects on an imported episode, and the skill it
    proposes cites an imported trace as its evidence."""
    line = lines(FILES["openai-jsonl"])[1]  # the returns conversation, labelled thumbs-down
    source = tmp_path / "returns.jsonl"
    source.write_text(json.dumps(line) + "\n")
    assert cli("traces", "import", str(source), "--format", "openai-jsonl",
               "--skillbook", "support")[0] == 0  # fmt: skip
    answer = {
        "what_happened": "The agent asked for a shipping address before checking eligibility.",
        "what_went_wrong": "The return window had passed; the customer gave details for nothing.",
        "root_cause": "Eligibility was not checked first.",
        "key_insight": "Check the return window first.",
        "skill_tags": [],
        "new_skill": {"section": "returns", "content": LESSON, "reason": "saves a wasted turn"},
    }
    proxy.provider.enqueue(replies.text("```json\n" + json.dumps(answer) + "\n```"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SKILLPROXY_")}
    environ["SKILLPROXY_LEARNER__JUDGE_PAIRS"] = "false"
    argv = [
        sys.executable, "-m", "skillproxy", "learn", "--once", "--now", "--db",
        proxy.config.store.url, "--model", "openai/reflector-model",
        "--api-base", proxy.provider_url + "/v1",
    ]  # fmt: skip
    done = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "support: 1 episodes read, 1 reflected, 0 failed" in done.stdout
    sent = proxy.provider.received[-1].json()
    assert "60 days ago" in sent["messages"][1]["content"]  # the imported conversation
    skills = httpx.get(proxy.url + "/admin/skillbooks/support/skills", headers=AUTH).json()
    [skill] = skills["data"]
    assert skill["content"] == LESSON and skill["status"] == "pending"
    detail = httpx.get(proxy.url + f"/admin/skills/{skill['id']}", headers=AUTH).json()
    ids = {t.trace_id for t in imported(proxy, "support")}
    assert detail["evidence"] and {e["trace_id"] for e in detail["evidence"]} <= ids


def test_a_line_whose_turns_would_store_too_much_fails_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("skillproxy.import_formats.turns.MAX_CONVERSATION_BYTES", 400)
    line = json.dumps(lines(FILES["openai-jsonl"])[1]).encode()
    with pytest.raises(LineError, match="split the conversation"):
        parse_line("openai-jsonl", line)


def test_an_unpaired_surrogate_in_a_stored_field_fails_its_line_not_the_batch() -> None:
    line = b'{"session_id": "\\ud800", "messages": [{"role": "user", "content": "\\udfff"}, '
    line += b'{"role": "assistant", "content": "ok"}]}'
    with pytest.raises(LineError, match="session_id: holds an unpaired surrogate"):
        parse_line("openai-jsonl", line)
    body = parse_line("openai-jsonl", line.replace(b'"session_id": "\\ud800", ', b""))
    assert "\\udfff" in body.turns[0].request_json  # escaped in the body, so storable


def test_stdin_in_small_store_calls_and_imports_placed_past_the_grouping_cursor(
    cli: Cli, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grouping never reads behind its cursor: a file imported after a grouping pass still
    becomes episodes. Small `STORE_BYTES` splits the file into several store calls."""
    monkeypatch.setattr("skillproxy.admin.imports.STORE_BYTES", 1)
    first, second = FILES["openai-jsonl"], FILES["anthropic-jsonl"]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(first.read_bytes())))
    code, out, err = cli("traces", "import", "-", "--format", "openai-jsonl")
    assert code == 0 and "imported stdin into default: 3 conversations" in out, err
    store = open_store(proxy.config.store.url)
    try:
        assert group_new_traces(store, settle_s=0).grouped == 6
        assert store.episodes.cursor() is not None
        code, out, err = cli("traces", "import", str(second), "--format", "anthropic-jsonl")
        assert code == 0, err
        assert group_new_traces(store, settle_s=0).grouped == 4
    finally:
        store.close()
    assert len(episodes(proxy, "default")) == 6
