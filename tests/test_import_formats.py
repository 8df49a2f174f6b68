"""The formats whose conversations span lines, imported through a real proxy on loopback:
`--format claude-code`, `langfuse` and `otlp-json`.

Covers skillproxy/import_formats/claude_code.py, skillproxy/import_formats/langfuse.py,
skillproxy/import_formats/otlp_file.py, skillproxy/import_formats/otlp_json.py,
skillproxy/import_formats/genai_spans.py, skillproxy/import_formats/grouping.py and
skillproxy/import_formats/turns.py, with the grouped path of skillproxy/admin/imports.py.
The fixtures are written by hand after each format's published shape; the first tests check
them against it (for OTLP, against opentelemetry-proto's own message definitions)."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from learner.episodes import group_new_traces
from skillproxy.admin.imports import TraceImportQuery
from skillproxy.admin_cli import TRACE_FORMATS
from skillproxy.admin_client import TraceFormat
from skillproxy.import_formats.grouping import Group, Groups, finished
from skillproxy.import_formats.otlp_json import Span, any_value, spans
from skillproxy.import_formats.turns import LineError
from skillproxy.trace_import import IMPORT_FORMATS, ImportFormat, grouped
from store import open_store
from store.records import ImportedConversation
from tests.harness import ADMIN_TOKEN, Cli, RunningProxy

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "import"
FILES: dict[str, Path] = {
    "claude-code": FIXTURES / "claude-code-sessions.jsonl",
    "langfuse": FIXTURES / "langfuse-export.jsonl",
    "otlp-json": FIXTURES / "otlp-genai.jsonl",
}
EXPECTED = {  # conversations, traces, conversations with feedback
    "claude-code": (2, 4, 0),
    "langfuse": (3, 4, 2),  # the third's score is named "verdict", not a default name
    "otlp-json": (5, 6, 1),
}
HEX = re.compile(r"^[0-9a-fA-F]*$")
LANGFUSE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text().splitlines() if text.strip()]


def read(kind: ImportFormat, body: bytes) -> list[Any]:
    """What a reader makes of `body`: conversations, and LineErrors where lines fail."""
    reader, found = grouped(kind), list[Any]()
    for number, raw in enumerate(body.splitlines(), 1):
        try:
            reader.feed(number, raw)
        except LineError as exc:
            found.append((number, exc))
    return found + [outcome for _, outcome in reader.finish()]


# --------------------------------------------------------------------------- the fixtures


def test_every_format_is_offered_by_the_cli_the_client_and_the_api() -> None:
    assert set(TRACE_FORMATS) == set(IMPORT_FORMATS) == set(get_args(TraceFormat))
    query = TraceImportQuery.model_fields["format"].annotation
    assert set(get_args(query)) == set(IMPORT_FORMATS)


def test_the_claude_code_fixture_has_a_transcripts_fields() -> None:
    """User and assistant lines carry what Claude Code writes on each (uuid, parentUuid,
    sessionId, timestamp, isSidechain, message), parents come before children, and assistant
    messages are Messages API responses."""
    seen: set[str] = set()
    kinds = set()
    for line in lines(FILES["claude-code"]):
        kinds.add(line["type"])
        if line["type"] == "summary":
            assert set(line) == {"type", "summary", "leafUuid"}
        if line["type"] not in ("user", "assistant"):
            continue
        required = {"uuid", "parentUuid", "sessionId", "timestamp", "isSidechain", "message"}
        assert required <= set(line) and ISO_TIME.match(line["timestamp"]), line
        assert line["parentUuid"] is None or line["parentUuid"] in seen
        seen.add(line["uuid"])
        message = line["message"]
        assert message["role"] == line["type"]
        if line["type"] == "assistant":
            shape = {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence"}
            assert shape <= set(message) and message["type"] == "message"
            assert {"input_tokens", "output_tokens"} <= set(message["usage"])
            assert all(b["type"] in ("text", "tool_use", "thinking") for b in message["content"])
        elif isinstance(message["content"], list):
            assert all(
                b["type"] == "tool_result" and "tool_use_id" in b for b in message["content"]
            )
    assert {"summary", "user", "assistant", "system", "file-history-snapshot"} <= kinds


LANGFUSE_OBSERVATION = {
    "id", "trace_id", "project_id", "environment", "type", "parent_observation_id",
    "start_time", "end_time", "name", "metadata", "level", "status_message", "version",
    "input", "output", "provided_model_name", "model_parameters", "usage_details",
    "cost_details", "completion_start_time", "prompt_name", "prompt_version", "total_cost",
    "latency", "time_to_first_token", "model_id", "created_at", "updated_at",
}  # fmt: skip
LANGFUSE_TRACE = {
    "id", "timestamp", "name", "environment", "project_id", "metadata", "user_id",
    "session_id", "release", "version", "public", "bookmarked", "tags", "input", "output",
    "created_at", "updated_at",
}  # fmt: skip
LANGFUSE_SCORE = {"id", "timestamp", "trace_id", "name", "value", "source", "data_type"}


def test_the_langfuse_fixture_has_the_exports_fields() -> None:
    """Blob storage export records (snake_case, input and output as JSON text, times without
    `T`) and an API `TraceWithFullDetails` (camelCase, with observations and scores)."""
    shapes = set()
    for record in lines(FILES["langfuse"]):
        if "observations" in record:
            shapes.add("api trace")
            assert {"id", "timestamp", "observations", "scores"} <= set(record)
            for observation in record["observations"]:
                assert {"id", "traceId", "type", "startTime", "input", "output"} <= set(observation)
                assert ISO_TIME.match(observation["startTime"])
            for score in record["scores"]:
                assert {"id", "traceId", "name", "value", "dataType", "source"} <= set(score)
        elif "type" in record:
            shapes.add("observation")
            assert set(record) >= LANGFUSE_OBSERVATION, LANGFUSE_OBSERVATION - set(record)
            assert LANGFUSE_TIME.match(record["start_time"])
            assert isinstance(record["input"], str) and isinstance(record["output"], str)
            assert record["type"] in ("SPAN", "GENERATION", "EVENT")
        elif "data_type" in record:
            shapes.add("score")
            assert set(record) >= LANGFUSE_SCORE
            assert record["data_type"] in ("NUMERIC", "CATEGORICAL", "BOOLEAN")
            assert record["source"] in ("API", "ANNOTATION", "EVAL")
        else:
            shapes.add("trace")
            assert set(record) >= LANGFUSE_TRACE, LANGFUSE_TRACE - set(record)
    assert shapes == {"api trace", "observation", "score", "trace"}


def _as_proto_json(document: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON as proto3's JSON mapping spells it: ids in base64 instead of hex."""
    copy: dict[str, Any] = json.loads(json.dumps(document))
    for resource in copy["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    assert HEX.match(span.get(key, "")), span
                    span[key] = base64.b64encode(bytes.fromhex(span.get(key, ""))).decode()
    return copy


def test_the_otlp_fixture_is_otlp_json_of_genai_spans() -> None:
    """Each line is an ExportTraceServiceRequest: every field name is one the proto defines
    (parsed without ignoring unknown fields), ids are hex of the right length, int64s are
    strings or numbers; inference spans carry the GenAI attributes the conventions require."""
    forms = set()
    for document in lines(FILES["otlp-json"]):
        ParseDict(_as_proto_json(document), ExportTraceServiceRequest())
        for resource in document["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
                    assert isinstance(span["kind"], int) and 0 <= span["kind"] <= 5
                    assert str(span["startTimeUnixNano"]).isdigit()
                    attrs = {a["key"]: any_value(a["value"], a["key"]) for a in span["attributes"]}
                    for item in span["attributes"]:
                        assert len(item["value"]) == 1, item  # an AnyValue holds one value
                        if "intValue" in item["value"]:
                            assert isinstance(item["value"]["intValue"], str)
                    if not any(k.startswith("gen_ai.") for k in attrs):
                        continue
                    if attrs.get("gen_ai.operation.name") == "execute_tool":
                        assert "gen_ai.tool.name" in attrs  # no model, so no provider
                        continue
                    assert "gen_ai.provider.name" in attrs or "gen_ai.system" in attrs
                    forms |= _forms(attrs, span.get("events", []))
    assert forms == {"current", "prompt attribute", "message events", "indexed", "prompt event"}


def _forms(attrs: dict[str, Any], events: list[dict[str, Any]]) -> set[str]:
    names = {e["name"] for e in events}
    if "gen_ai.input.messages" in attrs:
        for message in json.loads(attrs["gen_ai.input.messages"]):
            assert message["role"] in ("system", "user", "assistant", "tool")
            assert all(p["type"] in ("text", "tool_call", "tool_call_response")
                       for p in message["parts"])  # fmt: skip
        output = json.loads(attrs["gen_ai.output.messages"])
        assert all({"role", "parts", "finish_reason"} <= set(m) for m in output)
        assert attrs["gen_ai.operation.name"] == "chat"
        return {"current"}
    if "gen_ai.prompt" in attrs:
        return {"prompt attribute"}
    if "gen_ai.prompt.0.content" in attrs:
        return {"indexed"}
    if "gen_ai.content.prompt" in names:
        return {"prompt event"}
    if {"gen_ai.user.message", "gen_ai.choice"} <= names:
        return {"message events"}
    return set()


# --------------------------------------------------------------------------- through a proxy


@pytest.mark.parametrize("kind", ["claude-code", "langfuse", "otlp-json"])
def test_each_format_imports_as_episodes_with_feedback_once(
    kind: ImportFormat, cli: Cli, proxy: RunningProxy
) -> None:
    path = FILES[kind]
    conversations, traces, judged = EXPECTED[kind]
    code, out, err = cli("traces", "import", str(path), "--format", kind, "--skillbook", "sb")
    assert code == 0, err
    assert f"{conversations} conversations ({traces} traces), 0 already imported, 0 failed" in out
    store = open_store(proxy.config.store.url)
    try:
        stored = store.traces.imported("sb")
        assert len(stored) == traces and {t.source for t in stored} == {f"import:{kind}"}
        assert len({t.session_id for t in stored}) == conversations
        group_new_traces(store, settle_s=0)
        with_feedback = {t.session_id for t in stored if store.feedback.for_trace(t.trace_id)}
        assert len(with_feedback) == judged
        first = store.traces.get(stored[0].trace_id)
        assert first is not None and first.status == 200
    finally:
        store.close()
    found = proxy.admin("GET", "/episodes", params={"skillbook": "sb"}).json()["data"]
    assert sorted(e["trace_count"] for e in found) == sorted(_turns_per_conversation(kind))

    code, out, err = cli("traces", "import", str(path), "--format", kind, "--skillbook", "sb")
    assert code == 0, err
    assert f"0 conversations (0 traces), {conversations} already imported" in out


def _turns_per_conversation(kind: ImportFormat) -> list[int]:
    return [len(c.turns) for c in read(kind, FILES[kind].read_bytes())]


def test_progress_counts_the_conversations_held_then_those_stored(
    cli: Cli, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grouped format stores nothing until the file ends: progress says how many
    conversations it holds, then how many it has stored (it once said 0 imported)."""
    monkeypatch.setattr("skillproxy.admin.imports.PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr("skillproxy.admin.imports.STORE_BYTES", 1)  # a store call each
    url = proxy.url + "/admin/skillbooks/held/traces/import"
    with httpx.stream(
        "POST", url, params={"format": "langfuse"}, content=[FILES["langfuse"].read_bytes()],
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as answer:  # fmt: skip
        sent = [json.loads(text) for text in answer.iter_lines() if text]
    *progress, done = sent
    assert [(p["imported"], p["held"]) for p in progress] == [(0, 3), (1, 2), (2, 1), (3, 0)]
    assert done["imported"] == 3
    code, _, err = cli("traces", "import", str(FILES["claude-code"]), "--format", "claude-code")
    assert code == 0 and "0 imported, 0 skipped, 0 failed, 2 conversations held" in err, err


def test_only_langfuse_scores_of_the_names_taken_become_feedback(
    cli: Cli, proxy: RunningProxy, tmp_path: Path
) -> None:
    """A "toxicity" score is high when the answer is bad: it must not read as praise. Only
    the default names (or those given with --score-name) are taken."""
    good = FILES["langfuse"].read_text().splitlines()
    scored = {json.loads(t)["trace_id"] for t in good if '"user-feedback"' in t}
    [trace] = scored
    toxic = {"id": "score-toxic", "trace_id": trace, "name": "toxicity", "value": 0.95,
             "data_type": "NUMERIC", "source": "EVAL"}  # fmt: skip
    body = "\n".join([json.dumps(toxic), *good]).encode()
    found = {c.source_id.split(":")[1]: c for c in read("langfuse", body)}
    assert found[trace].score == 0.2  # user-feedback's, though the toxicity score came first
    path = tmp_path / "toxic.jsonl"
    path.write_bytes(body)
    code, _, err = cli("traces", "import", str(path), "--format", "langfuse",
                         "--skillbook", "tox", "--score-name", "Toxicity",
                         "--score-name", "verdict")  # fmt: skip
    assert code == 0, err
    store = open_store(proxy.config.store.url)
    try:
        group_new_traces(store, settle_s=0)
        verdicts = {(f.score, f.label) for t in store.traces.imported("tox")
                    for f in store.feedback.for_trace(t.trace_id)}  # fmt: skip
    finally:
        store.close()
    assert verdicts == {(0.95, None), (None, "helpful")}  # user-feedback and correct not named
    refused = proxy.admin("POST", "/skillbooks/x/traces/import", content=b"",
                          params={"format": "otlp-json", "score_names": "a"})  # fmt: skip
    assert refused.status_code == 400 and "only for format=langfuse" in refused.text


def test_an_otlp_trace_is_one_conversation_across_documents_in_start_time_order() -> None:
    [weather, *_] = read("otlp-json", FILES["otlp-json"].read_bytes())
    first, second = (json.loads(t.request_json) for t in weather.turns)
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]
    assert second["messages"][3]["content"] == "rainy, 11°C"
    assert first["tools"][0]["function"]["name"] == "get_weather"
    call = json.loads(weather.turns[0].response_json)["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert weather.score == 0.9 and weather.session_id == "otlp-5b8efff798038103d269b633813fc60c"
    assert (weather.turns[0].input_tokens, weather.turns[0].output_tokens) == (52, 17)


def test_a_pretty_printed_otlp_document_is_read_whole(cli: Cli, proxy: RunningProxy,
                                                      tmp_path: Path) -> None:  # fmt: skip
    documents = lines(FILES["otlp-json"])
    merged = {"resourceSpans": [r for d in documents for r in d["resourceSpans"]]}
    path = tmp_path / "export.json"
    path.write_text(json.dumps(merged, indent=2, ensure_ascii=False))
    code, out, err = cli("traces", "import", str(path), "--format", "otlp-json")
    assert code == 0, err
    assert "5 conversations (6 traces), 0 already imported, 0 failed" in out
    code, out, err = cli("traces", "import", str(FILES["otlp-json"]), "--format", "otlp-json")
    assert "0 conversations (0 traces), 5 already imported" in out  # the same spans


def test_a_claude_code_session_is_rebuilt_as_the_api_saw_it() -> None:
    [session, _] = read("claude-code", FILES["claude-code"].read_bytes())
    assert session.source == "import:claude-code" and len(session.turns) == 3
    first = json.loads(session.turns[0].response_json)
    assert [b["type"] for b in first["content"]] == ["thinking", "tool_use"]  # two lines, one reply
    last = json.loads(session.turns[2].request_json)
    assert [m["role"] for m in last["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert "haiku" not in session.turns[2].request_json  # the subagent's sidechain is not here
    assert session.turns[0].format == "messages"
    assert session.turns[0].input_tokens == 120 + 2000  # cache reads count, as when proxied


# --------------------------------------------------------------------------- bad lines


def _mixed(kind: str) -> tuple[list[str], dict[int, str]]:
    """A file with bad lines among good ones, and the words each bad line's report holds."""
    good = FILES[kind].read_text().splitlines()
    if kind == "claude-code":
        orphan = json.loads(good[12])
        orphan["sessionId"] = "11111111-2222-4333-8444-555555555555"
        no_session = {k: v for k, v in json.loads(good[1]).items() if k != "sessionId"}
        bad_message = {**json.loads(good[12]), "message": "hello"}
        body = [*good[:3], "{oops", json.dumps(no_session), json.dumps(orphan),
                json.dumps(bad_message), *good[3:]]  # fmt: skip
        return body, {4: "not JSON", 5: "sessionId", 6: "no assistant reply", 7: "message"}
    if kind == "langfuse":
        bad_input = {**json.loads(good[2]), "id": "obs-x", "input": '{"messages": 3}'}
        odd_type = {**json.loads(good[1]), "type": "LLM_CALL"}
        body = [*good[:2], json.dumps(bad_input), json.dumps(odd_type), "[]", *good[2:]]
        return body, {3: "input.messages", 4: "'LLM_CALL'", 5: "not a JSON object"}
    document = json.loads(good[0])
    spans_ = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans_[0]["traceId"] = "not-hex"
    silent = json.loads(good[2])
    silent_span = silent["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    silent_span["events"] = []
    silent_span["traceId"] = "ab" * 16
    body = [json.dumps(document), *good[1:], json.dumps(silent), '{"resourceSpans": 3}']
    return body, {1: "1 spans refused (the other 1 kept)", 5: "no messages recorded",
                  6: "resourceSpans"}  # fmt: skip


def _wrong_types(kind: str) -> tuple[list[str], dict[int, str]]:
    """Values of a JSON type the reader did not expect, which once failed the whole import."""
    good = FILES[kind].read_text().splitlines()
    if kind == "langfuse":
        odd = {**json.loads(good[1]), "id": "obs-odd", "type": []}
        return [*good[:2], json.dumps(odd), *good[2:]], {3: "type: [] is not"}
    bad = []
    for value in ({"arrayValue": [1]}, {"kvlistValue": "x"}):
        document = json.loads(good[0])
        span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
        span["attributes"].append({"key": "odd", "value": value})
        document["resourceSpans"][0]["scopeSpans"][0]["spans"] = [span]
        span["traceId"] = "cd" * 16
        bad.append(json.dumps(document))
    return [*good, *bad], {5: "arrayValue is", 6: "kvlistValue is"}


BAD_FILES = [
    *((kind, _mixed) for kind in ("claude-code", "langfuse", "otlp-json")),
    *((kind, _wrong_types) for kind in ("langfuse", "otlp-json")),
]


@pytest.mark.parametrize(("kind", "make"), BAD_FILES, ids=lambda v: getattr(v, "__name__", v))
def test_bad_lines_are_reported_by_number_and_the_rest_imported(
    kind: ImportFormat,
    make: Callable[[str], tuple[list[str], dict[int, str]]],
    cli: Cli,
    proxy: RunningProxy,
    tmp_path: Path,
) -> None:
    """Lines that are not what the format says, and values of a JSON type the reader did not
    expect (which once failed the whole import), each fail alone."""
    body, errors = make(kind)
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(body) + "\n")
    code, out, err = cli("traces", "import", str(path), "--format", kind)
    assert code == 1
    reported = {int(text.split(":")[0].split()[1]): text for text in err.splitlines()
                if text.startswith("line ")}  # fmt: skip
    assert sorted(reported) == sorted(errors), err
    for number, words in errors.items():
        assert words in reported[number], reported[number]
    conversations, traces, _ = EXPECTED[kind]
    assert f"{conversations} conversations ({traces} traces)" in out


def test_past_the_cap_on_open_conversations_a_line_is_refused_and_the_rest_imported(
    cli: Cli, proxy: RunningProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("skillproxy.import_formats.grouping.MAX_OPEN_GROUPS", 1)
    path = tmp_path / "two-sessions.jsonl"
    path.write_bytes(FILES["claude-code"].read_bytes())
    code, out, err = cli("traces", "import", str(path), "--format", "claude-code")
    assert code == 1
    assert "1 conversations (3 traces), 0 already imported, 2 failed" in out
    assert "line 13: it would open conversation 2 while at most 1 are held" in err
    assert "split the file" in err


def test_an_unforeseen_error_fails_its_conversation_alone_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The last line of defence: a bug in building one conversation is that one's failure."""
    groups: Groups[str] = Groups()
    groups.add(7, "t1", "x", 1)
    [group] = groups.drain()

    def broken(_: Group[str]) -> ImportedConversation:
        raise TypeError("unhashable type: 'list'")

    with caplog.at_level(logging.ERROR, logger="skillproxy.import"):
        number, outcome = finished(group, "trace t1", broken)
    assert number == 7 and isinstance(outcome, LineError)
    assert str(outcome).startswith("trace t1: an internal error")
    assert "TypeError" in caplog.text and "Traceback" in caplog.text


def test_the_byte_cap_refuses_a_line_that_would_hold_too_much() -> None:
    groups: Groups[str] = Groups(max_groups=5, max_bytes=10)
    groups.check({"a"}, 6)
    groups.add(1, "a", "x", 6)
    with pytest.raises(LineError, match="would pass 10 bytes"):
        groups.check({"a"}, 5)
    groups.check({"b"}, 4)
    assert [g.key for g in groups.drain()] == ["a"]


# --------------------------------------------------------------------------- OTLP/JSON rules


def test_otlp_json_values_are_read_whatever_spelling_the_sender_chose() -> None:
    assert any_value({"intValue": "9007199254740993"}, "x") == 9007199254740993
    assert any_value({"intValue": 5}, "x") == 5
    assert any_value({"doubleValue": "Infinity"}, "x") == float("inf")
    nested = {"kvlistValue": {"values": [{"key": "a", "value": {"arrayValue": {"values": [
        {"boolValue": True}, {"stringValue": "s"}, {}]}}}]}}  # fmt: skip
    assert any_value(nested, "x") == {"a": [True, "s", None]}
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
         "startTimeUnixNano": 7, "unknownField": {"ignored": True}},
        {"traceId": "0" * 32, "spanId": "eee19b7ec3c1b174"},
    ]}]}]}  # fmt: skip
    read_span, bad = list(spans(document))
    assert isinstance(read_span, Span) and read_span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert read_span.start_ns == 7 and not isinstance(bad, Span) and "valid 16-byte id" in bad.error


def test_a_pretty_printed_document_past_its_cap_is_refused_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("skillproxy.import_formats.otlp_file.MAX_DOCUMENT_BYTES", 200)
    found = read("otlp-json", json.dumps(lines(FILES["otlp-json"])[0], indent=2).encode())
    [(number, error)] = found
    assert isinstance(error, LineError) and "pretty-printed document over 200 bytes" in str(error)
    assert number > 1  # the line at which it passed the cap
