"""Scripted models for `skillproxy eval tau2 --scripted`: one loopback OpenAI-compatible server.

These models measure the harness's MECHANICS, NEVER LEARNING QUALITY. Every answer is a
deterministic function of the request and the domain's tasks.json: a result computed on them
says that episodes are logged, feedback is posted, the learner reflects and proposes, skills
are frozen and injected, and the arms are scored, and nothing about whether a real model learns.

The request's `model` (an `openai/` prefix is dropped) picks the role:

- `scripted-user`, τ²'s user simulator (its conversation has the roles flipped: the agent's
  messages arrive as `user`). It finds its task by the scenario text in the system prompt,
  opens with `"{reason_for_call} {known_info} [task ID]"` and says `###STOP###` once the agent's
  latest message carries `FINAL_PHRASE`.
- `scripted-agent` reads the `[task ID]` marker and replays the task's gold actions, one tool
  call a turn, then a final text holding every `communicate_info` and `FINAL_PHRASE`. A
  `FailureMode` makes it skip every gold call to its tool unless the learned-skills section
  the proxy appends (after `proxy.render.HEADER`, never the policy) holds the mode's cue: the
  bug that learning has to fix. With a per-trial `seed` in the request a mode fires with
  probability `FIRE_PROBABILITY` (a stable hash of seed, task and tool), so pass^k differs
  from pass^1; without one it always fires.
- `scripted-reflector`, the learner's model: a reflection proposes the rule of each failure
  mode whose gold call is missing from a failed episode; the pair judge calls two texts the
  same lesson when they hold the same cue; the pattern pass proposes nothing; the recursive
  reflector runs one piece of code, then concludes the same way.
- `noop`, the do-nothing agent: never calls a tool, answers with `NOOP_TEXT`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import math
import re
import signal
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from core.formats.base import text_of
from proxy.render import HEADER
from store.feedback_labels import NEGATIVE_SCORE_BELOW, label_score

SKILLS_HEADER = HEADER.splitlines()[0]
"""The first line of the section the proxy appends to the system message."""
FINAL_PHRASE = "Is there anything else I can help you with?"
"""Closes every final answer of the scripted agents; the scripted user stops on it."""
NOOP_TEXT = f"I have noted your request. {FINAL_PHRASE}"
STOP = "###STOP###"
FIRE_PROBABILITY = 0.75
MAX_USER_TURNS = 12
"""The scripted user stops after this many turns whatever the agent does: never a loop."""
SKILL_SECTION = "tool use"
TASK_MARKER = re.compile(r"\[task ([^\]\s]+)\]")
MODELS = ("scripted-user", "scripted-agent", "scripted-reflector", "noop")


@dataclass(frozen=True, slots=True)
class FailureMode:
    """A tool the scripted agent never calls unless a learned skill carrying `cue` is in effect;
    `rule` is the skill the scripted reflector proposes for it (and contains `cue`)."""

    tool: str
    rule: str
    cue: str


def _mode(tool: str, rule: str) -> FailureMode:
    return FailureMode(tool=tool, rule=rule, cue=tool)


FAILURE_MODES: dict[str, tuple[FailureMode, ...]] = {
    "airline": (
        _mode(
            "update_reservation_flights",
            "When a user wants to move an existing reservation to other flights and the policy "
            "allows it, call update_reservation_flights after they confirm instead of only "
            "describing the new itinerary.",
        ),
        _mode(
            "cancel_reservation",
            "Before ending a conversation in which a user asked to cancel a trip the policy lets "
            "them cancel, make sure cancel_reservation was actually called.",
        ),
        _mode(
            "update_reservation_baggages",
            "If a passenger asks for extra checked luggage, record it with "
            "update_reservation_baggages (new totals, payment) rather than just quoting the fee.",
        ),
    ),
    "retail": (
        _mode(
            "return_delivered_order_items",
            "When a user wants to return items from a delivered order, call "
            "return_delivered_order_items after they confirm instead of only explaining how "
            "returns work.",
        ),
        _mode(
            "modify_pending_order_items",
            "If a customer picks different variants for products of an order that is still "
            "pending, submit them with modify_pending_order_items rather than merely listing the "
            "options.",
        ),
        _mode(
            "cancel_pending_order",
            "Before closing a chat in which a shopper asked to cancel an order that has not "
            "shipped, make sure cancel_pending_order was really called with their reason.",
        ),
    ),
}


# --- tasks ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoldAction:
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    opening: str
    """The user's first turn, marker included."""
    scenario: tuple[str, ...]
    """The scenario's texts, whitespace-collapsed: all of them in a system prompt name the task."""
    actions: tuple[GoldAction, ...]
    communicate: tuple[str, ...]

    @property
    def tools(self) -> frozenset[str]:
        return frozenset(action.name for action in self.actions)


def _squash(text: str) -> str:
    return " ".join(text.split())


def parse_task(raw: Mapping[str, Any]) -> Task:
    instructions = raw["user_scenario"]["instructions"]
    if isinstance(instructions, str):
        instructions = {"reason_for_call": instructions}
    reason = _squash(instructions.get("reason_for_call") or "")
    known = _squash(instructions.get("known_info") or "")
    task_id = str(raw["id"])
    texts = (instructions.get(k) for k in ("reason_for_call", "known_info", "task_instructions"))
    criteria = raw.get("evaluation_criteria") or {}
    return Task(
        id=task_id,
        opening=" ".join(part for part in (reason, known, f"[task {task_id}]") if part),
        scenario=tuple(_squash(t) for t in texts if t and t.strip()),
        actions=tuple(
            GoldAction(str(a["name"]), dict(a.get("arguments") or {}))
            for a in criteria.get("actions") or []
            if a.get("requestor", "assistant") == "assistant"
        ),
        communicate=tuple(str(c) for c in criteria.get("communicate_info") or []),
    )


def load_tasks(source: Path | str | Iterable[Mapping[str, Any]]) -> dict[str, Task]:
    """The tasks of a τ² tasks.json (a path) or of its already-parsed list, by id."""
    raw = json.loads(Path(source).read_text()) if isinstance(source, Path | str) else source
    tasks = [parse_task(item) for item in raw]
    return {task.id: task for task in tasks}


# --- reading a request ----------------------------------------------------------------------


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body.get("messages") or [] if isinstance(m, dict)]


def _text(message: Mapping[str, Any]) -> str:
    return text_of(message.get("content"))


def _system(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n\n".join(_text(m) for m in messages if m.get("role") in ("system", "developer"))


def skills_section(messages: Sequence[Mapping[str, Any]]) -> str:
    """The learned-skills section of the system prompt, empty without one. Only this part is
    read for cues: a cue quoted by the policy must not count as learned."""
    system = _system(messages)
    start = system.find(SKILLS_HEADER)
    return "" if start < 0 else system[start + len(SKILLS_HEADER) :]


def task_marker(texts: Iterable[str]) -> str | None:
    for text in texts:
        if found := TASK_MARKER.search(text):
            return found.group(1)
    return None


def fires(mode: FailureMode, task_id: str, seed: int | None) -> bool:
    """Whether the mode strikes this trial: always without a seed, else with probability
    FIRE_PROBABILITY from a hash that is stable across processes and runs."""
    if seed is None:
        return True
    digest = hashlib.sha256(f"{seed}:{task_id}:{mode.tool}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < FIRE_PROBABILITY


def firing_modes(domain: str, task: Task, section: str, seed: int | None) -> list[FailureMode]:
    """The failure modes that make the agent skip their tool in this request."""
    learned = section.lower()
    return [
        mode
        for mode in FAILURE_MODES.get(domain, ())
        if mode.tool in task.tools
        and mode.cue.lower() not in learned
        and fires(mode, task.id, seed)
    ]


def _seed(body: Mapping[str, Any]) -> int | None:
    seed = body.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


# --- answers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Answer:
    content: str | None = None
    calls: tuple[Call, ...] = ()


class UnknownModel(LookupError):
    pass


@dataclass
class Script:
    """Everything the roles answer from: the domain and its tasks. Pure: no I/O, no clock."""

    domain: str
    tasks: Mapping[str, Task]
    _by_length: list[Task] = field(init=False)

    def __post_init__(self) -> None:
        self._by_length = sorted(self.tasks.values(), key=lambda t: -sum(map(len, t.scenario)))

    def answer(self, model: str, body: Mapping[str, Any]) -> Answer:
        name = model.removeprefix("openai/")
        if name == "scripted-user":
            return Answer(self.user(_messages(body)))
        if name == "scripted-agent":
            return self.agent(_messages(body), _seed(body))
        if name == "scripted-reflector":
            return Answer(self.reflector(_messages(body)))
        if name == "noop":
            return Answer(NOOP_TEXT)
        raise UnknownModel(model)

    # the user simulator

    def scenario_task(self, system: str) -> Task | None:
        """The task whose scenario texts are all in `system`; the fullest match wins."""
        flat = _squash(system)
        return next(
            (t for t in self._by_length if t.scenario and all(s in flat for s in t.scenario)), None
        )

    def user(self, messages: Sequence[Mapping[str, Any]]) -> str:
        task = self.scenario_task(_system(messages))
        own_turns = sum(1 for m in messages if m.get("role") == "assistant")
        if own_turns == 0:
            return task.opening if task else "I need help with a booking. [task unknown]"
        latest = next((_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
        if FINAL_PHRASE in latest or own_turns >= MAX_USER_TURNS:
            return STOP
        return "Yes, please go ahead."

    # the agent

    def agent(self, messages: Sequence[Mapping[str, Any]], seed: int | None) -> Answer:
        users = [_text(m) for m in messages if m.get("role") == "user"]
        task = self.tasks.get(task_marker(users) or "")
        if task is None:
            return Answer(f"I could not find your request. {FINAL_PHRASE}")
        skipped = {m.tool for m in firing_modes(self.domain, task, skills_section(messages), seed)}
        plan = [action for action in task.actions if action.name not in skipped]
        made = sum(len(m.get("tool_calls") or []) for m in messages if m.get("role") == "assistant")
        if made < len(plan):
            action = plan[made]
            call_id = "call_" + hashlib.sha256(f"{task.id}:{made}".encode()).hexdigest()[:24]
            return Answer(calls=(Call(call_id, action.name, json.dumps(action.arguments)),))
        return Answer(final_text(task))

    # the learner's model

    def reflector(self, messages: Sequence[Mapping[str, Any]]) -> str:
        system = _system(messages)
        first = next((_text(m) for m in messages if m.get("role") == "user"), "")
        if '"action": "run_code"' in system:
            return self.recursive(messages)
        if first.startswith("<candidate>"):
            return judge_pair(first)
        if first.startswith("<diagnoses>"):
            return json.dumps({"patterns": []})
        if "<conversation>" not in first:
            return json.dumps(_reflection(None, [], "The request was not one the script knows."))
        facts = facts_from_prompt(first)
        return json.dumps(self.reflect(facts, lessons="Propose no new skills" not in system))

    def reflect(self, facts: EpisodeFacts, *, lessons: bool = True) -> dict[str, Any]:
        """The reflection of one episode: the rule of every failure mode whose gold call the
        failed episode lacks; votes for the skills in effect, helpful on a success."""
        task = self.tasks.get(facts.task_id or "")
        modes = FAILURE_MODES.get(self.domain, ())
        missing = [m for m in modes if task and m.tool in task.tools and m.tool not in facts.called]
        success = facts.outcome if facts.outcome is not None else not missing
        tag = "helpful" if success else "neutral"
        votes = [
            {"skill_id": s, "tag": tag, "reason": "the episode's outcome"} for s in facts.skills
        ]
        if task is None:
            return _reflection(None, votes, "The episode names no known task.")
        if success or not missing:
            what = f"Task {task.id}: the agent made the expected calls and the episode " + (
                "succeeded." if success else "failed for a reason the script cannot see."
            )
            return _reflection(None, votes, what)
        return _reflection(missing if lessons else [], votes, f"Task {task.id} failed.")

    def recursive(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The recursive reflector: look at the episode with code once, then conclude."""
        ran = any('"run_code"' in _text(m) for m in messages if m.get("role") == "assistant")
        latest = _text(messages[-1]) if messages else ""
        if not ran or latest.startswith("Run code"):
            return json.dumps({"action": "run_code", "code": RECURSIVE_CODE})
        overview = next((_text(m) for m in messages if m.get("role") == "user"), "")
        facts = facts_from_prompt(overview)
        observed = _observation(messages)
        if observed is not None:
            facts = EpisodeFacts(observed[0], observed[1], facts.skills, facts.outcome)
        lessons = "Propose no new skills" not in _system(messages)
        return json.dumps({"action": "final", "reflection": self.reflect(facts, lessons=lessons)})


def final_text(task: Task) -> str:
    """The agent's closing message: every fact τ² checks was communicated, then the phrase."""
    facts = "".join(f" {info}." for info in task.communicate)
    return f"I have completed your request.{facts} {FINAL_PHRASE}"


# --- the learner's prompts ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EpisodeFacts:
    """What the scripted reflector reads off an episode."""

    task_id: str | None
    called: frozenset[str]
    skills: tuple[str, ...]
    outcome: bool | None
    """The client's feedback: True for success, False for failure, None without feedback."""


_CALL = re.compile(r"→ calls tool ([\w.:-]+)\(")
_SKILL_LINE = re.compile(r"^- (\S+): ")


def facts_from_prompt(prompt: str) -> EpisodeFacts:
    """The facts of an episode prompt as `learner.reflector.episode_prompt` writes it."""
    start, end = prompt.find("<conversation>"), prompt.rfind("</conversation>")
    transcript = prompt[start:end] if start >= 0 else ""
    head = prompt[:start] if start >= 0 else prompt
    return EpisodeFacts(
        task_id=task_marker([transcript]),
        called=frozenset(_CALL.findall(transcript)),
        skills=tuple(_listed(head, "Skills in effect during this conversation:")),
        outcome=_outcome(_listed(head, "Feedback from the client:", whole=True)),
    )


def _listed(text: str, title: str, *, whole: bool = False) -> list[str]:
    """The `- ` lines under `title`: the ids before their colon, or whole (without `- `)."""
    lines = text.splitlines()
    if title not in lines:
        return []
    found = []
    for line in itertools.takewhile(lambda x: x.startswith("- "), lines[lines.index(title) + 1 :]):
        match = _SKILL_LINE.match(line)
        if whole:
            found.append(line[2:])
        elif match:
            found.append(match.group(1))
    return found


def _outcome(feedback: Sequence[str]) -> bool | None:
    """Failure if any feedback item is negative, success if any is positive, else None."""
    scores = []
    for item in feedback:
        verdict = item.split(": ", 1)[0].strip()
        if verdict.startswith("score "):
            try:
                scores.append(float(verdict.removeprefix("score ")))
            except ValueError:
                continue
        elif (score := label_score(verdict)) is not None:
            scores.append(score)
    if not scores:
        return None
    return all(score >= NEGATIVE_SCORE_BELOW for score in scores)


def _reflection(
    missing: Sequence[FailureMode] | None, votes: list[dict[str, str]], what: str
) -> dict[str, Any]:
    """A reflection in `learner.reflection`'s schema; `missing` are the modes that struck."""
    tools = ", ".join(m.tool for m in missing or ())
    return {
        "what_happened": what,
        "what_went_wrong": f"The agent never called {tools}." if missing else "",
        "root_cause": "It described the change instead of making it." if missing else "",
        "correct_approach": f"Call {tools} once the user confirms." if missing else "",
        "key_insight": "Make the change with the tool, not only in words." if missing else "",
        "skill_tags": votes,
        "new_skills": [
            {"section": SKILL_SECTION, "content": m.rule, "reason": f"{m.tool} was never called"}
            for m in missing or ()
        ],
        "updates": [],
        "removals": [],
    }


def cue_of(text: str) -> str | None:
    """The cue of the failure mode `text` teaches, if any (across every domain)."""
    lowered = text.lower()
    modes = (m for domain in FAILURE_MODES.values() for m in domain)
    return next((m.cue for m in modes if m.cue.lower() in lowered), None)


def judge_pair(prompt: str) -> str:
    """`learner.pair_judge`'s verdict: the same lesson when both texts teach one cue."""
    candidate = _between(prompt, "<candidate>", "</candidate>")
    existing = _between(prompt, "<existing>", "</existing>")
    cue = cue_of(candidate)
    same = _squash(candidate) == _squash(existing) or (cue is not None and cue == cue_of(existing))
    reason = "Both teach the same tool call." if same else "They teach different things."
    return json.dumps({"verdict": "same" if same else "different", "reason": reason})


def _between(text: str, start: str, end: str) -> str:
    head = text.find(start)
    tail = text.find(end, head)
    return text[head + len(start) : tail].strip() if head >= 0 and tail >= 0 else ""


RECURSIVE_CODE = """import json, re
calls = [c["name"] for m in episode for c in (m.get("tool_calls") or [])]
text = " ".join(m.get("content") or "" for m in episode)
tasks = re.findall(r"\\[task ([^\\]\\s]+)\\]", text)
print(json.dumps({"calls": calls, "task": tasks[0] if tasks else None}))"""
"""What the recursive reflector runs in the learner's sandbox: the calls made and the task."""


def _observation(messages: Sequence[Mapping[str, Any]]) -> tuple[str | None, frozenset[str]] | None:
    """The task and calls RECURSIVE_CODE printed, from the latest sandbox output."""
    for message in reversed(messages):
        text = _text(message)
        if message.get("role") != "user" or not text.startswith("Output:"):
            continue
        try:
            seen = json.loads(text.removeprefix("Output:").strip().splitlines()[0])
            return seen.get("task"), frozenset(str(c) for c in seen.get("calls") or [])
        except (ValueError, IndexError, AttributeError):
            return None
    return None


# --- the wire -------------------------------------------------------------------------------


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """About len(text)/4 over the request's messages (tool calls included) and tools."""
    parts = []
    for message in _messages(body):
        parts.append(_text(message))
        parts += [json.dumps(call) for call in message.get("tool_calls") or []]
    if body.get("tools"):
        parts.append(json.dumps(body["tools"]))
    return _tokens("".join(parts))


def completion_tokens(answer: Answer) -> int:
    return _tokens((answer.content or "") + "".join(c.name + c.arguments for c in answer.calls))


def usage(body: Mapping[str, Any], answer: Answer) -> dict[str, Any]:
    prompt, completion = prompt_tokens(body), completion_tokens(answer)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _call_json(call: Call) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _finish(answer: Answer) -> str:
    return "tool_calls" if answer.calls else "stop"


def completion_body(
    completion_id: str, model: str, created: int, answer: Answer, used: dict[str, Any]
) -> dict[str, Any]:
    """A `chat.completion` object in OpenAI's shape."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.content,
        "refusal": None,
        "annotations": [],
    }
    if answer.calls:
        message["tool_calls"] = [_call_json(call) for call in answer.calls]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(answer)}
        ],
        "usage": used,
        "service_tier": "default",
        "system_fingerprint": "fp_scripted",
    }


def chunk_bodies(
    completion_id: str,
    model: str,
    created: int,
    answer: Answer,
    used: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """The `chat.completion.chunk`s of one answer, as OpenAI streams them: the role first,
    the text word by word or each call's arguments in pieces, the finish reason, then the
    usage chunk (`choices: []`) when `used` is given (`stream_options.include_usage`)."""
    deltas: list[dict[str, Any]] = []
    if answer.calls:
        for index, call in enumerate(answer.calls):
            head = {"index": index, "id": call.id, "type": "function"}
            first = {**head, "function": {"name": call.name, "arguments": ""}}
            deltas.append({"tool_calls": [first]})
            for piece in (call.arguments[i : i + 16] for i in range(0, len(call.arguments), 16)):
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        deltas[0] = {"role": "assistant", "content": None, **deltas[0]}
    else:
        deltas.append({"role": "assistant", "content": "", "refusal": None})
        deltas += [{"content": piece} for piece in re.findall(r"\s*\S+", answer.content or "")]

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_scripted",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if used is not None:
            body["usage"] = None
        return body

    chunks = [chunk(delta, None) for delta in deltas] + [chunk({}, _finish(answer))]
    if used is not None:
        chunks.append({**chunk({}, None), "choices": [], "usage": used})
    return chunks


def error_response(status: int, message: str, param: str | None, code: str | None) -> web.Response:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return web.json_response({"error": error}, status=status)


def _problem(body: Any) -> tuple[str, str | None] | None:
    """What makes `body` no chat completion request (message and param), or None."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object", None
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter", "model"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "'messages' must be a non-empty array of message objects", "messages"
    if not all(isinstance(m, dict) for m in body["messages"]):
        return "each item of 'messages' must be an object", "messages"
    return None


class ScriptedApp:
    """The HTTP side: parse, answer with the `Script`, write JSON or SSE."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self._count = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/models", self.models)
        return app

    async def models(self, request: web.Request) -> web.Response:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "skillproxy"} for m in MODELS
        ]
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return error_response(400, "the request body is not valid JSON", None, None)
        if (problem := _problem(body)) is not None:
            return error_response(400, problem[0], problem[1], None)
        model = body["model"]
        try:
            answer = self.script.answer(model, body)
        except UnknownModel:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return error_response(404, message, "model", "model_not_found")
        digest = hashlib.sha256(raw + str(next(self._count)).encode()).hexdigest()[:29]
        completion_id, created = f"chatcmpl-{digest}", int(time.time())
        used = usage(body, answer)
        if body.get("stream") is True:
            options = body.get("stream_options")
            wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            chunks = chunk_bodies(
                completion_id, model, created, answer, used if wants_usage else None
            )
            return await _stream(request, chunks)
        return web.json_response(completion_body(completion_id, model, created, answer, used))


async def _stream(request: web.Request, chunks: Sequence[dict[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    for chunk in chunks:
        data = json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)
        await response.write(f"data: {data}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def make_app(domain: str, tasks: Path | str | Iterable[Mapping[str, Any]]) -> web.Application:
    """The scripted models' application for one domain's tasks (a tasks.json or its list)."""
    return ScriptedApp(Script(domain, load_tasks(tasks))).app()


@dataclass
class ScriptedServer:
    """The scripted models listening in this process's event loop; `close()` stops them."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_scripted(
    domain: str,
    tasks: Path | str | Iterable[Mapping[str, Any]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> ScriptedServer:
    """Serve the scripted models on `host:port` (0: a free port) in the running loop."""
    runner = web.AppRunner(make_app(domain, tasks), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return ScriptedServer(runner, host, runner.addresses[0][1])


async def _serve(domain: str, tasks: list[dict[str, Any]], host: str, port: int) -> None:
    server = await start_scripted(domain, tasks, host=host, port=port)
    print(f"READY {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skillproxy.eval.scripted",
        description="Scripted τ² models on loopback: they check mechanics, never learning quality.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--domain", required=True, choices=sorted(FAILURE_MODES))
    parser.add_argument("--tasks", required=True, type=Path, help="the domain's τ² tasks.json")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        raw = json.loads(args.tasks.read_text())
        load_tasks(raw)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"scripted: cannot read the tasks in {args.tasks}: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(args.domain, raw, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
