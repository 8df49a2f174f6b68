"""skillproxy/eval/tau2_worker.py, run by τ²'s own python against fake models on loopback.

The fake agent replays each task's gold actions as tool calls and then says what the task wants
communicated, so τ²'s evaluator must give reward 1.0; the fake user states the reason for the
call with a marker naming the task, and stops once the agent is done. Agent and user are served
on different ports, so a request on the wrong one shows. τ²'s import costs ~2 s a process:
the main run is shared by several tests, and each test starts as few workers as it can.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.server_thread import ServerThread

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "skillproxy" / "eval" / "tau2_worker.py"
AGENT_MODEL = "gpt-4o-mini"  # in litellm's bundled cost map, so costs are real numbers
USER_MODEL = "gpt-4.1-mini"
AGENT_KEY, USER_KEY = "agent-key", "user-key"
BOOK = "/sb/BOOK/v1"
TASKS = ("0", "3")  # no action at all; two actions and a number to communicate
TRIALS = 2
SEED = 300
INJECT = "X-Skillproxy-Inject"
MARKER = re.compile(r"\[\[task:([^\]]+)\]\]")
RESOLVED = "[[resolved]]"
STOP = "###STOP###"
AGENT_USAGE = (100, 10)
USER_USAGE = (50, 5)


def tau2_python() -> Path:
    given = os.environ.get("SKILLPROXY_TAU2_PYTHON")
    path = Path(given) if given else ROOT / ".venv-tau2" / "bin" / "python"
    if not path.exists():
        pytest.fail(
            f"τ²-bench's python {path} is missing: `make tau2` installs it "
            "(or point SKILLPROXY_TAU2_PYTHON at one)"
        )
    return path


def worker(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env |= {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    return subprocess.run(
        [str(tau2_python()), str(WORKER), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def trial_seeds(seed: int, trials: int) -> list[int]:
    """Literally what tau2.run.run_tasks does."""
    state = random.getstate()
    try:
        random.seed(seed)
        return [random.randint(0, 1000000) for _ in range(trials)]
    finally:
        random.setstate(state)


# the fake models


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]


def words(text: str) -> str:
    return " ".join(text.split())


def reply(content: str | None, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return message


def agent_turn(tasks: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The next gold action of the task the user's marker names, then a final text."""
    said = " ".join(str(m.get("content") or "") for m in messages if m["role"] == "user")
    found = MARKER.search(said)
    assert found, f"no task marker in the user's messages: {said!r}"
    criteria = tasks[found.group(1)]["evaluation_criteria"]
    actions = criteria.get("actions") or []
    made = sum(1 for m in messages if m["role"] == "assistant" and m.get("tool_calls"))
    if made < len(actions):
        action = actions[made]
        function = {"name": action["name"], "arguments": json.dumps(action["arguments"])}
        return reply(None, [{"id": f"call_{made}", "type": "function", "function": function}])
    told = " ".join(criteria.get("communicate_info") or [])
    return reply(f"All done. {told} {RESOLVED}")


def scenario_task(tasks: Mapping[str, Any], prompt: str) -> str:
    prompt = words(prompt)
    found = [
        task_id
        for task_id, task in tasks.items()
        if words(task["user_scenario"]["instructions"]["reason_for_call"]) in prompt
        and words(task["user_scenario"]["instructions"]["task_instructions"]) in prompt
    ]
    assert len(found) == 1, f"the user's scenario matches tasks {found}"
    return found[0]


def user_turn(tasks: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """τ² flips roles for the user simulator: the agent speaks as "user", the user's own earlier
    turns come back as "assistant", the scenario is the system prompt."""
    if RESOLVED in str(messages[-1].get("content") or ""):
        return reply(STOP)
    if any(m["role"] == "assistant" for m in messages):
        return reply("Please go on.")
    task_id = scenario_task(tasks, str(messages[0]["content"]))
    reason = tasks[task_id]["user_scenario"]["instructions"]["reason_for_call"]
    return reply(f"{words(reason)} [[task:{task_id}]]")


def completion(model: str, message: dict[str, Any], usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


@dataclass
class FakeModels:
    """Plays the agent or the user by the request's `model`, and takes feedback (the first
    POST answered 503, to make the worker retry)."""

    tasks: Mapping[str, Any]
    requests: list[Seen] = field(default_factory=list)
    feedback: list[Seen] = field(default_factory=list)
    fail_sessions: set[str] = field(default_factory=set)
    feedback_refusals: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(BOOK + "/chat/completions", self.chat)
        app.router.add_post(BOOK + "/feedback", self.post_feedback)
        return app

    async def _seen(self, request: web.Request) -> Seen:
        headers = {k.lower(): v for k, v in request.headers.items()}
        return Seen(request.path, headers, await request.json())

    async def chat(self, request: web.Request) -> web.Response:
        seen = await self._seen(request)
        with self.lock:
            self.requests.append(seen)
        model, messages = seen.body.get("model"), seen.body["messages"]
        if seen.headers.get("x-session-id") in self.fail_sessions:
            error = {"message": "the fake agent provider refuses", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        if model == AGENT_MODEL:
            return web.json_response(
                completion(model, agent_turn(self.tasks, messages), AGENT_USAGE)
            )
        if model == USER_MODEL:
            return web.json_response(completion(model, user_turn(self.tasks, messages), USER_USAGE))
        return web.json_response({"error": {"message": f"unknown model {model}"}}, status=400)

    async def post_feedback(self, request: web.Request) -> web.Response:
        seen = await self._seen(request)
        with self.lock:
            self.feedback.append(seen)
            refuse = self.feedback_refusals > 0
            self.feedback_refusals -= 1
        if refuse:
            return web.json_response({"error": {"message": "store busy"}}, status=503)
        return web.json_response({"id": len(self.feedback), "status": "recorded"}, status=201)

    def snapshot(self) -> tuple[list[Seen], list[Seen]]:
        with self.lock:
            return list(self.requests), list(self.feedback)


@dataclass(frozen=True)
class Fakes:
    agent: FakeModels
    user: FakeModels
    agent_url: str
    user_url: str


@dataclass(frozen=True)
class Ran:
    done: subprocess.CompletedProcess[str]
    spec: dict[str, Any]
    out: Path
    agent_requests: list[Seen]
    user_requests: list[Seen]
    feedback: list[Seen]

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines()]

    def tagged(self, tag: str) -> list[dict[str, Any]]:
        return [
            json.loads(line.split(" ", 1)[1])
            for line in self.done.stdout.splitlines()
            if line.startswith(tag + " ")
        ]


@pytest.fixture(scope="module")
def airline() -> dict[str, Any]:
    done = worker("describe", "--domain", "airline")
    assert done.returncode == 0, done.stderr
    described: dict[str, Any] = json.loads(done.stdout)
    return described


@pytest.fixture(scope="module")
def fakes(airline: dict[str, Any]) -> Iterator[Fakes]:
    every = json.loads(Path(airline["tasks_path"]).read_text())
    tasks = {t["id"]: t for t in every if t["id"] in TASKS}
    agent, user = FakeModels(tasks), FakeModels(tasks)
    with ServerThread(agent.app()) as agent_server, ServerThread(user.app()) as user_server:
        yield Fakes(agent, user, agent_server.url, user_server.url)


def make_spec(fakes: Fakes, out: Path, prefix: str, **changes: Any) -> dict[str, Any]:
    spec = {
        "domain": "airline",
        "tasks": list(TASKS),
        "trials": TRIALS,
        "seed": SEED,
        "max_steps": 30,
        "max_errors": 10,
        "max_concurrency": 2,
        "max_retries": 0,
        "agent": {
            "model": f"openai/{AGENT_MODEL}",
            "llm_args": {
                "api_base": fakes.agent_url + BOOK,
                "api_key": AGENT_KEY,
                "temperature": 0,
            },
        },
        "user": {
            "model": f"openai/{USER_MODEL}",
            "llm_args": {"api_base": fakes.user_url + BOOK, "api_key": USER_KEY, "temperature": 0},
        },
        "headers": {INJECT: "off"},
        "session_prefix": prefix,
        "feedback_url": fakes.agent_url + BOOK + "/feedback",
        "out": str(out),
    }
    return spec | changes


def run_spec(fakes: Fakes, spec: dict[str, Any], folder: Path) -> Ran:
    agent_before, feedback_before = fakes.agent.snapshot()
    user_before, _ = fakes.user.snapshot()
    spec_path = folder / f"spec-{spec['session_prefix']}-{len(list(folder.iterdir()))}.json"
    spec_path.write_text(json.dumps(spec))
    done = worker("run", "--spec", str(spec_path))
    agent_after, feedback_after = fakes.agent.snapshot()
    user_after, _ = fakes.user.snapshot()
    return Ran(
        done=done,
        spec=spec,
        out=Path(spec["out"]),
        agent_requests=agent_after[len(agent_before) :],
        user_requests=user_after[len(user_before) :],
        feedback=feedback_after[len(feedback_before) :],
    )


@pytest.fixture(scope="module")
def first_run(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Ran:
    folder = tmp_path_factory.mktemp("tau2-run")
    ran = run_spec(fakes, make_spec(fakes, folder / "results.jsonl", "train-e1"), folder)
    assert ran.done.returncode == 0, ran.done.stderr
    return ran


def expected_sessions(prefix: str) -> set[str]:
    return {f"{prefix}:{task}:{trial}" for task in TASKS for trial in range(TRIALS)}


# describe


def test_describe_gives_the_airline_splits_and_files(airline: dict[str, Any]) -> None:
    assert airline["tau2_version"] == "26.3"
    assert {"airline", "retail"} <= set(airline["domains"])
    assert airline["domain"] == "airline"
    assert len(airline["splits"]["train"]) == 30
    assert len(airline["splits"]["test"]) == 20
    assert airline["tasks"] == 50
    assert Path(airline["tasks_path"]).name == "tasks.json"
    assert Path(airline["policy_path"]).read_text().strip()
    assert Path(airline["data_dir"]).is_dir()


def test_describe_refuses_an_unknown_domain_naming_the_known_ones() -> None:
    done = worker("describe", "--domain", "nowhere")
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert "nowhere" in line and "airline" in line and "retail" in line


# run


def test_gold_replay_earns_reward_one_in_every_simulation(first_run: Ran) -> None:
    lines = first_run.lines()
    seeds = trial_seeds(SEED, TRIALS)
    assert sorted((r["task_id"], r["trial"]) for r in lines) == sorted(
        (task, trial) for task in TASKS for trial in range(TRIALS)
    )
    for line in lines:
        calls = 1 + (2 if line["task_id"] == "3" else 0)  # one per gold action, then the text
        assert line["reward"] == 1.0, line
        assert line["success"] is True
        assert line["termination_reason"] == "user_stop"
        assert line["error"] is None and "feedback_error" not in line
        assert line["seed"] == seeds[line["trial"]]
        assert line["session_id"] == f"train-e1:{line['task_id']}:{line['trial']}"
        assert line["agent_calls"] == calls
        assert line["agent_tokens"] == calls * sum(AGENT_USAGE)
        assert line["user_calls"] == 2
        assert line["user_tokens"] == 2 * sum(USER_USAGE)
        assert line["agent_cost"] > 0 and line["user_cost"] > 0
        assert line["duration"] >= 0


def test_stdout_holds_only_protocol_lines(first_run: Ran) -> None:
    tags = [line.split(" ", 1)[0] for line in first_run.done.stdout.splitlines()]
    assert tags == ["START"] + ["PROGRESS"] * 4 + ["DONE"]
    assert first_run.tagged("START") == [
        {"done": 0, "total": 4, "pending": 4, "seeds": trial_seeds(SEED, TRIALS)}
    ]
    progress = first_run.tagged("PROGRESS")
    assert [p["done"] for p in progress] == [1, 2, 3, 4]
    assert all(p["total"] == 4 and p["reward"] == 1.0 and p["agent_cost"] > 0 for p in progress)
    assert first_run.tagged("DONE") == [{"done": 4, "total": 4}]


def test_every_agent_call_names_its_session_and_carries_the_extra_header(first_run: Ran) -> None:
    seeds = trial_seeds(SEED, TRIALS)
    per_session: dict[str, int] = {}
    for seen in first_run.agent_requests:
        session = seen.headers.get("x-session-id", "")
        _, task, trial = session.split(":")
        said = " ".join(str(m.get("content")) for m in seen.body["messages"])
        assert seen.body["model"] == AGENT_MODEL
        assert seen.headers.get(INJECT.lower()) == "off"
        assert seen.headers.get("authorization") == f"Bearer {AGENT_KEY}"
        assert f"[[task:{task}]]" in said
        assert seen.body.get("seed") == seeds[int(trial)]
        per_session[session] = per_session.get(session, 0) + 1
    calls = {r["session_id"]: r["agent_calls"] for r in first_run.lines()}
    assert per_session == calls
    assert set(calls) == expected_sessions("train-e1")


def test_the_user_simulator_calls_its_own_base_without_the_agents_headers(first_run: Ran) -> None:
    assert len(first_run.user_requests) == 2 * len(TASKS) * TRIALS
    for seen in first_run.user_requests:
        assert seen.body["model"] == USER_MODEL
        assert seen.headers.get("authorization") == f"Bearer {USER_KEY}"
        assert "x-session-id" not in seen.headers
        assert INJECT.lower() not in seen.headers
    assert all(seen.body["model"] == AGENT_MODEL for seen in first_run.agent_requests)


def test_feedback_reports_each_sessions_reward(first_run: Ran) -> None:
    assert len(first_run.feedback) == 4 + 1  # the first answer was a 503: sent again
    for seen in first_run.feedback:
        assert seen.path == BOOK + "/feedback"
        assert seen.headers.get("authorization") == f"Bearer {AGENT_KEY}"
    bodies = [seen.body for seen in first_run.feedback[1:]]
    assert {b["session_id"] for b in bodies} == expected_sessions("train-e1")
    for body in bodies:
        _, task, trial = body["session_id"].split(":")
        assert body == {
            "session_id": body["session_id"],
            "score": 1.0,
            "comment": f"tau2 reward, task {task} trial {trial}",
        }


def test_a_rerun_with_the_same_out_runs_nothing(first_run: Ran, fakes: Fakes) -> None:
    before = first_run.out.read_bytes()
    again = run_spec(fakes, first_run.spec, first_run.out.parent)
    assert again.done.returncode == 0, again.done.stderr
    assert first_run.out.read_bytes() == before
    assert again.tagged("START") == [
        {"done": 4, "total": 4, "pending": 0, "seeds": trial_seeds(SEED, TRIALS)}
    ]
    assert again.tagged("PROGRESS") == []
    assert again.tagged("DONE") == [{"done": 4, "total": 4}]
    assert again.agent_requests == again.user_requests == again.feedback == []


def test_a_torn_last_line_is_dropped_and_that_simulation_run_again(
    first_run: Ran, fakes: Fakes, tmp_path: Path
) -> None:
    lines = first_run.out.read_bytes().splitlines(keepends=True)
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    lost = json.loads(lines[3])
    ran = run_spec(fakes, {**first_run.spec, "out": str(torn)}, tmp_path)
    assert ran.done.returncode == 0, ran.done.stderr
    now = torn.read_bytes().splitlines(keepends=True)
    assert now[:3] == lines[:3]
    assert len(now) == 4 and now[3].endswith(b"\n")
    redone = json.loads(now[3])
    assert (redone["task_id"], redone["trial"], redone["reward"]) == (
        lost["task_id"],
        lost["trial"],
        1.0,
    )
    assert [p["done"] for p in ran.tagged("PROGRESS")] == [4]
    assert {s.headers["x-session-id"] for s in ran.agent_requests} == {lost["session_id"]}
    assert [s.body["session_id"] for s in ran.feedback] == [lost["session_id"]]


def test_a_failing_agent_provider_is_a_zero_and_the_run_goes_on(
    fakes: Fakes, tmp_path: Path
) -> None:
    fakes.agent.fail_sessions.add("err:0:0")
    out = tmp_path / "errors.jsonl"
    spec = make_spec(
        fakes,
        out,
        "err",
        trials=1,
        max_concurrency=1,
        feedback_url=fakes.agent_url + BOOK + "/nope",
    )
    ran = run_spec(fakes, spec, tmp_path)
    assert ran.done.returncode == 0, ran.done.stderr
    by_task = {r["task_id"]: r for r in ran.lines()}
    failed, fine = by_task["0"], by_task["3"]
    assert failed["reward"] == 0.0 and failed["success"] is False
    assert failed["termination_reason"] == "agent_error"
    assert "refuses" in failed["error"] and "\n" not in failed["error"]
    assert failed["agent_cost"] is None
    assert failed["feedback_error"] == "not sent: the simulation failed"
    assert fine["reward"] == 1.0 and fine["error"] is None
    assert fine["feedback_error"].startswith("HTTP 404")
    assert ran.tagged("DONE") == [{"done": 2, "total": 2}]

    # The provider is back: the failed simulation runs again, as a session of its own (the
    # failed attempt's calls may have left traces under the first id), and supersedes its line.
    fakes.agent.fail_sessions.clear()
    again = run_spec(fakes, spec, tmp_path)
    assert again.done.returncode == 0, again.done.stderr
    assert {seen.headers["x-session-id"] for seen in again.agent_requests} == {"err:0:0~2"}
    by_task = {r["task_id"]: r for r in again.lines()}  # of a key's lines, the last wins
    assert by_task["0"]["reward"] == 1.0 and by_task["0"]["error"] is None
    assert by_task["0"]["session_id"] == "err:0:0~2"
    assert by_task["3"] == fine  # finished, so not run again


# metrics


def write_results(path: Path, rewards: Mapping[str, Sequence[float]]) -> None:
    lines = [
        json.dumps({"task_id": task, "trial": trial, "reward": reward, "agent_cost": 0.01})
        for task, values in rewards.items()
        for trial, reward in enumerate(values)
    ]
    path.write_text("\n".join(lines) + '\n{"task_id": "a", "tri')  # a torn line: ignored


def test_metrics_are_taus_pass_hat_k(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    write_results(results, {"a": [1.0, 1.0, 0.0, 1.0], "b": [1.0] * 4, "c": [0.0] * 4})
    done = worker("metrics", "--results", str(results))
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    # per task C(successes, k) / C(4, k), averaged over the tasks
    expected = {"1": (3 / 4 + 1) / 3, "2": (3 / 6 + 1) / 3, "3": (1 / 4 + 1) / 3, "4": 1 / 3}
    assert metrics["pass_hat_k"] == pytest.approx(expected)
    assert metrics["avg_reward"] == pytest.approx(7 / 12)
    assert (metrics["tasks"], metrics["trials"]) == (3, 4)
    limited = worker("metrics", "--results", str(results), "--k", "2")
    assert json.loads(limited.stdout)["pass_hat_k"] == pytest.approx(
        {k: v for k, v in expected.items() if int(k) <= 2}
    )


# bad input


@pytest.mark.parametrize(
    ("change", "field_named"),
    [
        ({"trials": None}, "trials"),
        ({"trials": 0}, "trials"),
        ({"tasks": ["0", "9999"]}, "tasks"),
    ],
)
def test_a_bad_spec_exits_2_naming_the_field(
    fakes: Fakes, tmp_path: Path, change: dict[str, Any], field_named: str
) -> None:
    spec = make_spec(fakes, tmp_path / "out.jsonl", "bad") | change
    spec = {k: v for k, v in spec.items() if v is not None}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    done = worker("run", "--spec", str(path))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert f'"{field_named}"' in line
    assert done.stdout == ""
    assert not (tmp_path / "out.jsonl").exists()


def test_without_tau2_the_worker_exits_3_with_one_line() -> None:
    """`python -S`: the standard library alone, so surely no τ²."""
    done = subprocess.run(
        [sys.executable, "-S", str(WORKER), "describe"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("cannot import tau2")


def test_the_worker_imports_only_the_standard_library_and_tau2() -> None:
    """It runs in τ²'s virtualenv: nothing of skillproxy's, aiohttp's or httpx's is there.
    (loguru comes with τ²; the worker quiets it.)"""
    source = WORKER.read_text()
    imported = set(re.findall(r"^(?:from|import) (\w+)", source, flags=re.M))
    imported |= set(re.findall(r"import_module\(\s*f?\"(\w+)", source))
    assert imported - sys.stdlib_module_names == {"tau2", "loguru"} - sys.stdlib_module_names
