"""`langfuse`: Langfuse's exports of traces, observations and scores, as proxied turns.

Read in both spellings Langfuse writes (https://langfuse.com/docs/observability/data-model):
the blob storage export's JSONL, snake_case, one record per line from its `traces/`,
`observations/` (or `observations_v2/`) and `scores/` files, which may be concatenated into
one file in any order (https://langfuse.com/docs/api-and-data-platform/features/export-to-blob-storage);
and the public API's camelCase records, a trace with its `observations` and `scores` inside
(`GET /api/public/traces/{id}`, `TraceWithFullDetails`) or each on its own line.

A Langfuse trace is one conversation (one episode); each of its GENERATION observations, by
`start_time`, is a Chat Completions trace: the request is the generation's `input` (the
messages the model was sent, as Langfuse's OpenAI integration records them; a plain string is
one user message), the response its `output`. Other observation types (spans, events, tools)
carry no model call and are skipped. A trace's score becomes its feedback where its name is
one the import takes (`DEFAULT_SCORE_NAMES`, or those given with `--score-name`) and it reads
as ours: a NUMERIC or BOOLEAN score from 0 to 1 as the score, else a CATEGORICAL one whose
value is one of our labels as the label (others, a 1-5 rating say, are left out).

A trace's source id is its id with a digest of its generations' ids: the same export imports
once; an export made after the trace grew imports the longer trace as a new episode.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from skillproxy.import_formats.grouping import Finished, Group, Groups, finished
from skillproxy.import_formats.turns import (
    LineError,
    chat_turn,
    checked_messages,
    conversation,
    count,
    digest,
    identifier,
    json_object,
    parsed_if_json,
    storable,
    verdict,
)
from store.feedback_labels import is_known, normalise
from store.records import ImportedConversation, ImportedTurn

KIND = "langfuse"
DEFAULT_SCORE_NAMES = ("user-feedback", "feedback", "correctness", "correct", "helpfulness")
"""The scores read as feedback unless the import names others: names whose high values (or
positive labels) mean a good answer. A "toxicity" or "hallucination" score, high when the
answer is bad, must never read as praise, so a name is taken only when listed. Compared as
labels are (`store.feedback_labels.normalise`): `user_feedback` is `user-feedback`."""
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
OBSERVATION_TYPES = frozenset(
    {"SPAN", "GENERATION", "EVENT", "AGENT", "TOOL", "CHAIN", "RETRIEVER", "EVALUATOR",
     "EMBEDDING", "GUARDRAIL"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Generation:
    id: str
    start: str
    turn: ImportedTurn


@dataclass(frozen=True, slots=True)
class _Score:
    name: str
    score: float | None
    label: str | None


_Part = _Generation | _Score


class LangfuseTraces:
    """The traces of one export (or several concatenated); see the module docstring.
    `score_names`: the scores that may become feedback, by name (`score_names()`)."""

    def __init__(self, score_names: Iterable[str] = DEFAULT_SCORE_NAMES) -> None:
        self._groups: Groups[_Part] = Groups()
        self._names = frozenset(normalise(name) for name in score_names)

    def feed(self, number: int, raw: bytes) -> None:
        record = json_object(raw)
        parts = list(_parts(record))
        self._groups.check({trace for trace, _ in parts}, len(raw))
        for trace, part in parts:
            self._groups.add(number, trace, part, len(raw) // max(len(parts), 1))

    def held(self) -> int:
        return len(self._groups)

    def finish(self) -> Iterator[Finished]:
        for group in self._groups.drain():
            yield finished(group, f"trace {group.key}", self._trace)

    def _trace(self, group: Group[_Part]) -> ImportedConversation:
        return _trace(group, self._names)


def _trace(group: Group[_Part], names: frozenset[str]) -> ImportedConversation:
    generations = sorted(
        (p for p in group.items if isinstance(p, _Generation)), key=lambda g: g.start
    )
    if not generations:
        raise LineError("no GENERATION observation: no model call to learn from")
    ids = digest(g.id for g in generations)
    session = f"{KIND}-{group.key}-{ids[:8]}"
    scores = [p for p in group.items if isinstance(p, _Score) and normalise(p.name) in names]
    return conversation(
        KIND, f"{KIND}:{group.key}:{ids}", session, [g.turn for g in generations],
        _feedback(session, scores),
    )  # fmt: skip


def _parts(record: dict[str, Any]) -> Iterator[tuple[str, _Part]]:
    """What one record gives, by trace: a generation's turn, a score, or (a trace with its
    observations and scores inside) each of those."""
    trace = _field(record, "trace_id", "traceId")
    if trace is None:  # a trace record
        if "id" not in record:
            raise LineError("neither a trace (id), an observation (trace_id, type) nor a score")
        trace_id = identifier(record["id"], "id")
        for where in ("observations", "scores"):
            inner = record.get(where) or []
            if not isinstance(inner, list):
                raise LineError(f"{where}: an array")
            for index, item in enumerate(inner):
                if not isinstance(item, dict):
                    raise LineError(f"{where}[{index}]: an object")
                yield from _parts({"traceId": trace_id, **item})
        return
    trace_id = identifier(trace, "trace_id")
    if "type" in record:
        if not isinstance(record["type"], str) or record["type"] not in OBSERVATION_TYPES:
            raise LineError(f"type: {record['type']!r} is not a Langfuse observation type")
        if record["type"] == "GENERATION":
            yield trace_id, _generation(record)
    elif "name" in record and ("value" in record or "data_type" in record or "dataType" in record):
        yield trace_id, _score(record)
    else:
        raise LineError("a record with a trace id is an observation (type) or a score (value)")


def _generation(record: dict[str, Any]) -> _Generation:
    observation = identifier(record.get("id"), "id")
    start = _field(record, "start_time", "startTime")
    if not isinstance(start, str):
        raise LineError("start_time: a GENERATION observation has its start time")
    model = _field(record, "provided_model_name", "model")
    model = storable(model, "model") if isinstance(model, str) and model else None
    request: dict[str, Any] = {"model": model or "", **_input(record.get("input"))}
    usage = _field(record, "usage_details", "usageDetails") or record.get("usage") or {}
    usage = usage if isinstance(usage, dict) else {}
    turn = chat_turn(
        request, _output(record.get("output")), model, 0,
        input_tokens=count(usage.get("input")), output_tokens=count(usage.get("output")),
    )  # fmt: skip
    return _Generation(observation, start, turn)


def _input(value: Any) -> dict[str, Any]:
    """The generation's input as a Chat Completions request's messages (and tools)."""
    value = parsed_if_json(value)  # the blob export writes JSON text, the API JSON
    if isinstance(value, str) and value:
        return {"messages": [{"role": "user", "content": value}]}
    if isinstance(value, dict) and "messages" in value:
        tools = value.get("tools")
        extras = {"tools": tools} if isinstance(tools, list) else {}
        return {"messages": checked_messages(value["messages"], ROLES, "input.messages"), **extras}
    if isinstance(value, list):
        return {"messages": checked_messages(value, ROLES, "input")}
    raise LineError("input: a GENERATION's input is its messages (an array), or a prompt string")


def _output(value: Any) -> dict[str, Any]:
    """The generation's output as the assistant message it was."""
    value = parsed_if_json(value)  # the blob export writes JSON text, the API JSON
    if isinstance(value, str) and value:
        return {"role": "assistant", "content": value}
    if isinstance(value, dict) and isinstance(value.get("choices"), list) and value["choices"]:
        value = (
            value["choices"][0].get("message") if isinstance(value["choices"][0], dict) else None
        )
    if (
        isinstance(value, dict)
        and value.get("role", "assistant") == "assistant"
        and ("content" in value or "tool_calls" in value)
    ):
        return {"role": "assistant", **value}
    raise LineError("output: a GENERATION's output is the assistant's message or text")


def _score(record: dict[str, Any]) -> _Score:
    name = record.get("name")
    name = name if isinstance(name, str) else ""
    kind = _field(record, "data_type", "dataType") or "NUMERIC"
    value = record.get("value")
    if kind in ("NUMERIC", "BOOLEAN") and isinstance(value, int | float) and 0 <= value <= 1:
        return _Score(name, float(value), None)
    text = _field(record, "string_value", "stringValue")
    if kind == "CATEGORICAL" and isinstance(text, str) and is_known(text):
        return _Score(name, None, text)
    return _Score(name, None, None)


def _feedback(session: str, scores: list[_Score]) -> Any:
    """The first score that reads as a 0..1 score, else the first that reads as a label."""
    score = next((s.score for s in scores if s.score is not None), None)
    label = next((s.label for s in scores if s.label is not None), None)
    return verdict(session, score) if score is not None else verdict(session, label=label)


def _field(record: dict[str, Any], snake: str, camel: str) -> Any:
    value = record.get(snake)
    return record.get(camel) if value is None or value == "" else value
