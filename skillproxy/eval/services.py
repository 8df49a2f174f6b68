"""The processes an evaluation runs beside τ²: a skillproxy on loopback, the scripted models'
server, and the learner, each a subprocess of this interpreter so the evaluation exercises the
same `skillproxy serve` and `skillproxy learn` a user runs.

The proxy's configuration is written into the run folder (`eval.toml`): a store there, traces
flushed quickly (the learner runs as soon as the simulations end), and the learner's model.
Keys never go in it: the learner reads its key from the environment variable it names.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from skillproxy.admin_client import AdminClient

SCRIPTED_KEY_ENV = "TAU2_SCRIPTED_MODELS_KEY"
"""The scripted models accept any key; the learner still wants one to send. Not a
SKILLPROXY_ variable: the config refuses those it does not know."""

START_TIMEOUT_S = 60.0


class ServiceError(RuntimeError):
    """A helper process did not start or failed; the message says where its log is."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> None:
    lines = ["# Written by `skillproxy eval tau2` for this run folder; read again on resume."]
    for name, values in sections.items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n")


def proxy_config(
    out: Path,
    port: int,
    *,
    openai_upstream: str,
    anthropic_upstream: str,
    learner_model: str,
    learner_api_base: str,
    learner_key_env: str,
) -> dict[str, dict[str, Any]]:
    return {
        "server": {"host": "127.0.0.1", "port": port, "default_skillbook": "train"},
        "upstream": {"openai_base_url": openai_upstream, "anthropic_base_url": anthropic_upstream},
        "store": {"url": f"sqlite:///{out / 'store.db'}"},
        "traces": {"flush_interval_ms": 200},
        "skillbook": {"refresh_interval_ms": 200},
        "learner": {
            "enabled": False,  # the harness runs `skillproxy learn` itself, between phases
            "model": learner_model,
            "api_base": learner_api_base,
            "api_key_env": learner_key_env,
            "max_episodes_per_run": 100_000,
            "run_token_cap": 0,
            "daily_token_cap": 0,
            "signal_only": False,
            "sample_rest": 1.0,
            "pattern_every": 0,
        },
    }


class Service:
    """One subprocess with its log file; stopped (and waited for) on `stop`."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name, self.log_path = name, log_path
        self._log: IO[str] = log_path.open("a")
        self.process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, text=True
        )

    def failed(self) -> str | None:
        if self.process.poll() is None:
            return None
        tail = self.log_path.read_text().strip().splitlines()[-3:]
        return f"{self.name} exited ({self.process.returncode}): {' | '.join(tail)}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _wait_until(service: Service, ready: Any, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if (problem := service.failed()) is not None:
            raise ServiceError(f"{what} did not start: {problem} (log: {service.log_path})")
        if ready():
            return
        time.sleep(0.1)
    service.stop()
    raise ServiceError(f"{what} did not start within {START_TIMEOUT_S:g} s ({service.log_path})")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_proxy(out: Path, config_path: Path, port: int) -> Service:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKILLPROXY_")}
    service = Service(
        "skillproxy",
        [sys.executable, "-m", "skillproxy", "serve", "--config", str(config_path)],
        out / "proxy.log",
        env,
    )
    _wait_until(service, lambda: _answers(f"http://127.0.0.1:{port}/healthz"), "skillproxy")
    return service


def start_scripted(out: Path, domain: str, tasks_path: Path, port: int) -> Service:
    argv = [sys.executable, "-m", "skillproxy.eval.scripted", "--port", str(port),
            "--domain", domain, "--tasks", str(tasks_path)]  # fmt: skip
    service = Service("the scripted models", argv, out / "scripted.log", dict(os.environ))
    url = f"http://127.0.0.1:{port}/v1/models"
    _wait_until(service, lambda: _answers(url), "the scripted models' server")
    return service


def run_learner(out: Path, config_path: Path, skillbook: str, env: Mapping[str, str]) -> int:
    """One learner run over every finished conversation of `skillbook`; its exit status.
    The progress bar goes to the terminal; everything goes to `learn.log` as well."""
    argv = [sys.executable, "-m", "skillproxy", "learn", "--config", str(config_path),
            "--skillbook", skillbook, "--once", "--now"]  # fmt: skip
    with (out / "learn.log").open("a") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=dict(env), text=True)
    return done.returncode


def wait_for_traces(url: str, timeout_s: float = 60.0) -> None:
    """Until the proxy's trace writer has stored everything it was handed, so the learner
    (another process, reading the store) sees every exchange of the phase that just ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        traces = httpx.get(f"{url}/healthz", timeout=5).json().get("traces", {})
        if traces.get("written", 0) + traces.get("lost", 0) >= traces.get("queued", 0):
            return
        time.sleep(0.2)
    raise ServiceError(f"the proxy's trace writer did not drain within {timeout_s:g} s")


def admin(url: str) -> AdminClient:
    return AdminClient(url, timeout=60, actor="skillproxy-eval")
