"""skillproxy/eval/scripted.py: the scripted τ² models, through the real `openai` SDK and the
learner's own litellm calls and prompt builders, on loopback; and once through τ² itself.

These models check the harness's mechanics, never learning quality: the tests pin that each
role does exactly what the harness relies on (the marker, the gold replay, the failure modes
and their cues, the reflector's lessons) and nothing more."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest
from aiohttp import web

from core.config import LearnerConfig, PrivacyConfig
from core.formats.chat import CHAT
from core.redaction import redactor_for
from learner.episodes import EpisodeConversation
from learner.llm import Completion, complete, shared_clients
from learner.pair_judge import judge_pair
from learner.patterns import find_patterns
from learner.recursive import recursive_reflect
from learner.reflection import parse_reflection
from learner.reflector import Spend, episode_prompt, reflect
from learner.runner import redact_episode
from learner.skill_rules import check_skill_text
from learner.transcript import tools_of
from proxy.render import HEADER
from skillproxy.eval.scripted import (
    FAILURE_MODES,
    FINAL_PHRASE,
    NOOP_TEXT,
    STOP,
    fires,
    make_app,
    start_scripted,
)
from store.records import Episode, Feedback, RecentReflection, StoredReflection
from tests.fakes.server_thread import ServerThread

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
TAU2_PYTHON = Path(os.environ.get("SKILLPROXY_TAU2_PYTHON") or REPO / ".venv-tau2/bin/python")
"""τ²'s interpreter, found as `skillproxy.eval.fixture` finds it."""
POLICY = (
    "# Airline Agent Policy\nYou can cancel a reservation with cancel_reservation when the "
    "booking is less than 24 hours old, the flight is cancelled or the user has insurance."
)
GUIDELINES = "# User Simulation Guidelines\nYou are playing the role of a customer."


def scenario(task_id: str, reason: str, known: str, actions: list[Any], info: list[str]) -> Any:
    return {
        "id": task_id,
        "user_scenario": {
            "persona": None,
            "instructions": {
                "domain": "airline",
                "reason_for_call": reason,
                "known_info": known,
                "unknown_info": None,
                "task_instructions": "Be polite.\nDo not accept a voucher.",
            },
        },
        "evaluation_criteria": {"actions": actions, "communicate_info": info},
    }


def action(name: str, **arguments: Any) -> dict[str, Any]:
    return {"action_id": name, "name": name, "arguments": arguments}


TASKS = [
    scenario(
        "7",
        "You want to cancel reservation ABC123.\n\nYou booked it this morning.",
        "You are Mia Li.\nYour user id is mia_li_3668.",
        [
            action("get_reservation_details", reservation_id="ABC123"),
            action("cancel_reservation", reservation_id="ABC123"),
        ],
        ["327"],
    ),
    scenario(
        "3",
        "You want to know how many bags you may check.",
        "Your user id is omar_davis_3817.",
        [action("get_user_details", user_id="omar_davis_3817")],
        ["1628"],
    ),
    scenario(
        "12",
        "You want to add two checked bags and move to the next day's flight.",
        "Your user id is raj_sanchez_7340.",
        [
            action("get_reservation_details", reservation_id="Q69X3R"),
            action(
                "update_reservation_baggages",
                reservation_id="Q69X3R",
                total_baggages=2,
                nonfree_baggages=0,
                payment_id="credit_card_7815826",
            ),
            action(
                "update_reservation_flights",
                reservation_id="Q69X3R",
                cabin="economy",
                flights=[{"flight_number": "HAT271", "date": "2024-05-20"}],
                payment_id="credit_card_7815826",
            ),
        ],
        [],
    ),
]
BY_ID = {task["id"]: task for task in TASKS}
MODES = {mode.tool: mode for mode in FAILURE_MODES["airline"]}


def tau2_scenario(task: dict[str, Any]) -> str:
    """`str(task.user_scenario)` as τ² writes it into the user simulator's system prompt."""
    i = task["user_scenario"]["instructions"]
    lines = [
        f"Domain: {i['domain']}",
        "Reason for call:\n" + textwrap.indent(i["reason_for_call"], "\t"),
    ]
    lines.append("Known info:\n" + textwrap.indent(i["known_info"], "\t"))
    lines.append("Task instructions:\n" + textwrap.indent(i["task_instructions"], "\t"))
    return "Instructions:\n" + textwrap.indent("\n".join(lines), "\t")


def user_system(task: dict[str, Any]) -> str:
    return f"{GUIDELINES}\n\n<scenario>\n{tau2_scenario(task)}\n</scenario>"


def agent_system(*rules: str) -> str:
    """τ²'s agent prompt, with the proxy's skills section when `rules` are in effect."""
    instructions = "<instructions>\nYou are a customer service agent.\n</instructions>"
    prompt = f"{instructions}\n<policy>\n{POLICY}\n</policy>"
    if not rules:
        return prompt
    return prompt + f"\n\n{HEADER}\n\n## tool use\n" + "\n".join(f"- {r}" for r in rules)


def tool_schema(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name.replace('_', ' ')}.",
            "parameters": {"type": "object", "properties": {"reservation_id": {"type": "string"}}},
        },
    }


TOOLS = [
    tool_schema(n)
    for n in (
        "get_user_details",
        "get_reservation_details",
        "cancel_reservation",
        "update_reservation_baggages",
        "update_reservation_flights",
    )
]


@pytest.fixture
def server() -> Iterator[ServerThread]:
    async def build() -> web.Application:
        return make_app("airline", TASKS)

    with ServerThread(build) as running:
        yield running


@pytest.fixture
def sdk(server: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as made:
        yield made


@dataclass
class Played:
    """One τ²-shaped conversation: the agent's calls, its final request and answer."""

    calls: list[tuple[str, Any]]
    final_request: dict[str, Any]
    final_response: dict[str, Any]
    user_turns: list[str]

    @property
    def final_text(self) -> str:
        return str(self.final_response["choices"][0]["message"]["content"])


def play(
    sdk: openai.OpenAI,
    task_id: str,
    system: str,
    *,
    agent: str = "scripted-agent",
    seed: int | None = None,
) -> Played:
    """Run the τ² loop by hand: the agent's view and the user's (roles flipped) side by side."""
    greeting = "Hi! How can I help you today?"
    agent_view: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "assistant", "content": greeting},
    ]
    user_view: list[dict[str, Any]] = [
        {"role": "system", "content": user_system(BY_ID[task_id])},
        {"role": "user", "content": greeting},
    ]
    calls: list[tuple[str, Any]] = []
    turns: list[str] = []
    extra = {} if seed is None else {"seed": seed}
    request: dict[str, Any] = {}
    final: dict[str, Any] = {}
    for _ in range(40):
        said = sdk.chat.completions.create(model="scripted-user", messages=user_view)  # type: ignore[arg-type]
        text = said.choices[0].message.content or ""
        turns.append(text)
        if STOP in text:
            return Played(calls, request, final, turns)
        user_view.append({"role": "assistant", "content": text})
        agent_view.append({"role": "user", "content": text})
        while True:
            request = {"model": agent, "messages": list(agent_view), "tools": TOOLS, **extra}
            answer = sdk.chat.completions.create(**request)
            message = answer.choices[0].message
            if not message.tool_calls:
                final = answer.model_dump()
                break
            call = message.tool_calls[0]
            assert call.type == "function"
            calls.append((call.function.name, json.loads(call.function.arguments)))
            agent_view.append(message.model_dump(exclude_none=True))
            agent_view.append({"role": "tool", "tool_call_id": call.id, "content": '{"ok": true}'})
        agent_view.append({"role": "assistant", "content": message.content})
        user_view.append({"role": "user", "content": message.content})
    raise AssertionError("the scripted conversation never stopped")


def gold(task_id: str, skip: Sequence[str] = ()) -> list[tuple[str, Any]]:
    actions = BY_ID[task_id]["evaluation_criteria"]["actions"]
    return [(a["name"], a["arguments"]) for a in actions if a["name"] not in skip]


# --- the user and the agent -----------------------------------------------------------------


def test_the_user_opens_with_its_task_marker_and_stops_on_the_final_answer(
    sdk: openai.OpenAI,
) -> None:
    played = play(sdk, "3", agent_system())
    opening = played.user_turns[0]
    assert opening == (
        "You want to know how many bags you may check. Your user id is omar_davis_3817. [task 3]"
    )
    assert played.user_turns[1:] == [STOP]
    assert FINAL_PHRASE in played.final_text


def test_the_user_answers_a_question_without_stopping(sdk: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": user_system(BY_ID["7"])},
        {"role": "user", "content": "Hi! How can I help you today?"},
        {"role": "assistant", "content": "You want to cancel reservation ABC123. [task 7]"},
        {"role": "user", "content": "Could you confirm the reservation number?"},
    ]
    said = sdk.chat.completions.create(model="scripted-user", messages=messages)  # type: ignore[arg-type]
    assert said.choices[0].message.content and STOP not in said.choices[0].message.content


def test_the_agent_replays_the_gold_actions_in_order_with_exact_arguments(
    sdk: openai.OpenAI,
) -> None:
    played = play(sdk, "12", agent_system(*(m.rule for m in MODES.values())))
    assert played.calls == gold("12")
    assert played.final_text.endswith(FINAL_PHRASE)


def test_the_final_answer_communicates_every_fact(sdk: openai.OpenAI) -> None:
    played = play(sdk, "7", agent_system(MODES["cancel_reservation"].rule))
    assert "327" in played.final_text
    assert played.calls == gold("7")


def test_a_failure_mode_skips_its_tool_without_the_cue(sdk: openai.OpenAI) -> None:
    played = play(sdk, "12", agent_system())
    assert played.calls == gold(
        "12", skip=("update_reservation_baggages", "update_reservation_flights")
    )
    assert FINAL_PHRASE in played.final_text  # it still closes as if all were done


def test_only_the_skills_section_counts_never_the_policy(sdk: openai.OpenAI) -> None:
    assert "cancel_reservation" in POLICY
    assert play(sdk, "7", agent_system()).calls == gold("7", skip=("cancel_reservation",))
    unrelated = "When a user is upset, acknowledge the problem before you look anything up."
    assert play(sdk, "7", agent_system(unrelated)).calls == gold("7", skip=("cancel_reservation",))


def test_the_cue_fixes_its_own_mode_and_no_other(sdk: openai.OpenAI) -> None:
    played = play(sdk, "12", agent_system(MODES["update_reservation_baggages"].rule))
    assert played.calls == gold("12", skip=("update_reservation_flights",))


def test_a_task_without_a_failure_mode_tool_is_solved_without_skills(sdk: openai.OpenAI) -> None:
    assert play(sdk, "3", agent_system()).calls == gold("3")


def test_with_a_seed_a_mode_fires_three_times_in_four_and_stably(sdk: openai.OpenAI) -> None:
    mode = MODES["cancel_reservation"]
    rate = sum(fires(mode, "7", seed) for seed in range(2000)) / 2000
    assert 0.72 < rate < 0.78
    assert fires(mode, "7", None)
    spared = next(seed for seed in range(100) if not fires(mode, "7", seed))
    struck = next(seed for seed in range(100) if fires(mode, "7", seed))
    for _ in range(2):  # the same trial plays the same way every time
        assert play(sdk, "7", agent_system(), seed=spared).calls == gold("7")
        assert play(sdk, "7", agent_system(), seed=struck).calls == gold(
            "7", skip=("cancel_reservation",)
        )


def test_noop_never_calls_a_tool_and_the_user_stops_after_it(sdk: openai.OpenAI) -> None:
    played = play(sdk, "7", agent_system(), agent="noop")
    assert played.calls == []
    assert played.final_text == NOOP_TEXT
    assert played.user_turns[-1] == STOP


def test_every_rule_is_a_valid_skill_holding_its_own_distinct_cue() -> None:
    modes = [mode for table in FAILURE_MODES.values() for mode in table]
    assert {tuple(m.tool for m in FAILURE_MODES[d]) for d in FAILURE_MODES} == {
        ("update_reservation_flights", "cancel_reservation", "update_reservation_baggages"),
        ("return_delivered_order_items", "modify_pending_order_items", "cancel_pending_order"),
    }
    for mode in modes:
        assert check_skill_text(mode.rule) == mode.rule
        assert mode.cue in mode.rule
        assert [m.tool for m in modes if m.cue in m.rule and m.cue in mode.rule] == [mode.tool]


# --- the learner's model --------------------------------------------------------------------


@pytest.fixture
def litellm_calls() -> Iterator[None]:
    """litellm's cached HTTP clients are closed when the test is done, as after a learner run."""
    with shared_clients():
        yield


def off_main_thread(call: Callable[[], T]) -> T:
    """Run a learner call in a worker thread, as the learner's own runs do. From the main
    thread, litellm's sync completion leaves an event loop set there, which the next test that
    runs a loop (pytest-asyncio's, asyncio.run) orphans: an "unclosed event loop" at exit."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result(timeout=60)


def learner(server: ServerThread, **settings: Any) -> LearnerConfig:
    return LearnerConfig(model="openai/scripted-reflector", api_base=server.url + "/v1", **settings)


def episode(played: Played, skills: Sequence[str], score: float | None) -> EpisodeConversation:
    """The episode the learner would read: the last trace's conversation, redacted as the
    runner does, with the client's reward as feedback."""
    messages = CHAT.conversation(played.final_request, played.final_response)
    feedback = [] if score is None else [Feedback(1, "tr_1", None, "eval", score, None, None, 1.0)]
    record = Episode("ep_1", "eval", None, 1.0, 2.0, 1, "open", None, None, score == 0)
    conversation = EpisodeConversation(
        record, messages, [messages], ["tr_1"], list(skills), feedback, score == 0
    )
    return redact_episode(conversation, redactor_for(PrivacyConfig()), {})


def ask_through_litellm(settings: LearnerConfig) -> Callable[[list[dict[str, Any]]], Completion]:
    def ask(messages: list[dict[str, Any]]) -> Completion:
        return off_main_thread(lambda: complete(settings, messages))

    return ask


@pytest.mark.usefixtures("litellm_calls")
def test_the_reflector_proposes_exactly_the_missing_rule_on_a_failed_episode(
    server: ServerThread,
    sdk: openai.OpenAI,
) -> None:
    unrelated = "When a user is upset, acknowledge the problem before you look anything up."
    played = play(sdk, "7", agent_system(unrelated))
    spend = Spend()
    tools = tools_of([played.final_request])
    convo = episode(played, ["sk_calm"], score=0.0)
    made = reflect(
        ask_through_litellm(learner(server)),
        convo,
        {"sk_calm": unrelated},
        12_000,
        spend,
        tools=tools,
    )
    assert [(s.section, s.content) for s in made.new_skills] == [
        ("tool use", MODES["cancel_reservation"].rule)
    ]
    assert [(t.skill_id, t.tag) for t in made.skill_tags] == [("sk_calm", "neutral")]
    assert spend.calls == 1 and spend.input_tokens > 500 and spend.output_tokens > 20


def test_the_reflector_proposes_nothing_on_a_successful_episode(sdk: openai.OpenAI) -> None:
    rule = MODES["cancel_reservation"].rule
    played = play(sdk, "7", agent_system(rule))
    prompt, compacted = episode_prompt(episode(played, ["sk_1"], 1.0), {"sk_1": rule}, 12_000)
    assert not compacted and "[task 7]" in prompt
    messages = [{"role": "system", "content": "reflect"}, {"role": "user", "content": prompt}]
    answer = sdk.chat.completions.create(model="scripted-reflector", messages=messages)  # type: ignore[arg-type]
    made = parse_reflection(answer.choices[0].message.content or "")
    assert made.new_skills == []
    assert [(t.skill_id, t.tag) for t in made.skill_tags] == [("sk_1", "helpful")]


@pytest.mark.usefixtures("litellm_calls")
def test_without_feedback_the_missing_calls_decide(
    server: ServerThread, sdk: openai.OpenAI
) -> None:
    played = play(sdk, "12", agent_system())
    made = reflect(
        ask_through_litellm(learner(server)), episode(played, [], None), {}, 12_000, Spend()
    )
    assert sorted(s.content for s in made.new_skills) == sorted(
        [MODES["update_reservation_baggages"].rule, MODES["update_reservation_flights"].rule]
    )


@pytest.mark.usefixtures("litellm_calls")
def test_the_pair_judge_says_same_for_one_cue_and_different_otherwise(
    server: ServerThread,
) -> None:
    settings = learner(server)
    rule = MODES["cancel_reservation"].rule
    reworded = "When cancelling is allowed, call cancel_reservation once the user agrees."
    flights = MODES["update_reservation_flights"].rule
    assert off_main_thread(lambda: judge_pair(settings, reworded, rule)).verdict == "same"
    assert off_main_thread(lambda: judge_pair(settings, rule, flights)).verdict == "different"


@pytest.mark.usefixtures("litellm_calls")
def test_the_pattern_pass_proposes_nothing(server: ServerThread) -> None:
    stored = [
        RecentReflection(StoredReflection(n, f"ep_{n}", 1, 1.0, {"what_went_wrong": "x"}), "tr")
        for n in range(3)
    ]
    assert find_patterns(ask_through_litellm(learner(server)), stored, Spend()) == []


@pytest.mark.usefixtures("litellm_calls")
def test_the_recursive_reflector_runs_code_then_proposes_the_missing_rule(
    server: ServerThread,
    sdk: openai.OpenAI,
) -> None:
    played = play(sdk, "7", agent_system())
    settings = learner(server, recursive=True)
    spend = Spend()
    made = recursive_reflect(
        ask_through_litellm(settings), episode(played, [], 0.0), {}, settings, spend
    )
    assert [s.content for s in made.new_skills] == [MODES["cancel_reservation"].rule]
    assert spend.calls == 2


# --- the wire -------------------------------------------------------------------------------


def test_a_completion_has_openai_s_shape_and_a_realistic_usage(server: ServerThread) -> None:
    content = "x" * 4000
    body = {"model": "noop", "messages": [{"role": "user", "content": content}]}
    answer = httpx.post(server.url + "/v1/chat/completions", json=body).json()
    assert set(answer) >= {"id", "object", "created", "model", "choices", "usage"}
    assert answer["object"] == "chat.completion" and answer["model"] == "noop"
    choice = answer["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == NOOP_TEXT
    usage = answer["usage"]
    assert usage["prompt_tokens"] == 1000
    assert usage["completion_tokens"] == -(-len(NOOP_TEXT) // 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_a_tool_call_answer_has_openai_s_shape(server: ServerThread) -> None:
    messages = [
        {"role": "system", "content": agent_system()},
        {"role": "user", "content": "[task 3]"},
    ]
    body = {"model": "openai/scripted-agent", "messages": messages, "tools": TOOLS}
    answer = httpx.post(server.url + "/v1/chat/completions", json=body).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_user_details"
    assert json.loads(call["function"]["arguments"]) == {"user_id": "omar_davis_3817"}


def sse_events(text: str) -> list[str]:
    assert text.endswith("\n\n")
    events = text[:-2].split("\n\n")
    assert all(event.startswith("data: ") and "\n" not in event for event in events)
    return [event.removeprefix("data: ") for event in events]


def test_streaming_is_valid_sse_with_a_final_usage_chunk(server: ServerThread) -> None:
    messages = [
        {"role": "system", "content": agent_system()},
        {"role": "user", "content": "[task 3]"},
    ]
    body = {
        "model": "scripted-agent",
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.read().decode())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    arguments = "".join(
        call["function"].get("arguments", "")
        for c in chunks[:-1]
        for call in c["choices"][0]["delta"].get("tool_calls", [])
    )
    assert json.loads(arguments) == {"user_id": "omar_davis_3817"}


def test_the_sdk_assembles_a_streamed_text_answer(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="noop",
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == NOOP_TEXT
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    no_usage = sdk.chat.completions.create(
        model="noop", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    assert all(c.usage is None for c in no_usage)


def test_an_unknown_model_is_openai_s_404(server: ServerThread, sdk: openai.OpenAI) -> None:
    body = {"model": "gpt-nothing", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "model",
        "model_not_found",
    )
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="gpt-nothing", messages=body["messages"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'{"messages": []}', b'{"model": "noop", "messages": "hi"}'],
)
def test_a_malformed_body_is_openai_s_400(server: ServerThread, raw: bytes) -> None:
    answer = httpx.post(server.url + "/v1/chat/completions", content=raw)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]


def test_the_models_are_listed(sdk: openai.OpenAI) -> None:
    listed = {model.id for model in sdk.models.list()}
    assert listed == {"scripted-user", "scripted-agent", "scripted-reflector", "noop"}


async def test_start_scripted_serves_in_the_running_loop() -> None:
    running = await start_scripted("airline", TASKS)
    try:
        body = {"model": "noop", "messages": [{"role": "user", "content": "hi"}]}
        async with httpx.AsyncClient() as http:
            answer = await http.post(running.url + "/v1/chat/completions", json=body)
        assert answer.json()["choices"][0]["message"]["content"] == NOOP_TEXT
    finally:
        await running.close()


def test_the_command_prints_ready_and_serves(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps(TASKS))
    command = [sys.executable, "-m", "skillproxy.eval.scripted", "--port", "0"]
    command += ["--domain", "airline", "--tasks", str(tasks)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO) as process:
        assert process.stdout is not None
        try:
            line = process.stdout.readline().strip()
            assert line.startswith("READY http://127.0.0.1:")
            url = line.removeprefix("READY ")
            assert httpx.get(url + "/v1/models").status_code == 200
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0  # SIGTERM is a clean stop


# --- τ² itself ------------------------------------------------------------------------------

TAU2_RUN = """
import json, sys
from tau2.registry import registry
from tau2.run import run_task

url, ids = sys.argv[1], sys.argv[2:]
args = {"api_base": url + "/v1", "api_key": "x", "temperature": 0}
tasks = {t.id: t for t in registry.get_tasks_loader("airline")()}
rewards = {}
for task_id in ids:
    simulation = run_task(
        domain="airline", task=tasks[task_id], agent="llm_agent", user="user_simulator",
        llm_agent="openai/scripted-agent", llm_args_agent=dict(args),
        llm_user="openai/scripted-user", llm_args_user=dict(args),
    )
    rewards[task_id] = simulation.reward_info.reward
print("REWARDS " + json.dumps(rewards))
"""


def tau2_tasks_file() -> Path:
    if not TAU2_PYTHON.exists():
        pytest.fail(
            f"τ²-bench is not installed ({TAU2_PYTHON} is missing): `make tau2` installs it"
        )
    venv = TAU2_PYTHON.parent.parent
    pattern = str(venv / "lib/python*/site-packages/tau2/data/tau2/domains/airline")
    found = glob.glob(pattern + "/tasks.json")
    if not found:
        pytest.fail(f"τ²-bench's airline tasks are missing under {pattern}: run `make tau2` again")
    return Path(found[0])


def test_tau2_rewards_a_replayed_task_and_fails_a_failure_mode() -> None:
    tasks_file = tau2_tasks_file()
    tasks = json.loads(tasks_file.read_text())
    tools = {mode.tool for mode in FAILURE_MODES["airline"]}

    def names(task: dict[str, Any]) -> set[str]:
        return {a["name"] for a in task["evaluation_criteria"]["actions"] or []}

    clean = next(t["id"] for t in tasks if names(t) and not names(t) & tools)
    broken = next(t["id"] for t in tasks if names(t) & tools)

    async def build() -> web.Application:
        return make_app("airline", tasks_file)

    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("OPENAI_BASE_URL", None)
    with ServerThread(build) as running:
        done = subprocess.run(
            [str(TAU2_PYTHON), "-c", TAU2_RUN, running.url, clean, broken],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("REWARDS ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    assert json.loads(lines[-1].removeprefix("REWARDS ")) == {clean: 1.0, broken: 0.0}
