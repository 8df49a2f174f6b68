"""LiteLLM's proxy as a comparison point, in its own virtualenv so it never touches ours.

`ensure_installed()` creates `bench/.venv-litellm` and runs `pip install 'litellm[proxy]'` once
(a stamp file remembers success). `start()` runs it the way a small deployment would: one
worker, no database, the local model-cost map (no network), a master key (it refuses to start
without one), and a config that routes the benchmark's model name to the fake provider.
Anything that goes wrong becomes a `LiteLLMUnavailable` whose message says exactly why, so the
suite finishes and RESULTS.md can tell the reader.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from procs import BENCH, Fleet, Server, free_port, install_steps

VENV = BENCH / ".venv-litellm"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".bench-installed"
REQUIREMENT = "litellm[proxy]"
INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 90.0
MODEL = "gpt-4o-mini"  # what loadgen asks for


class LiteLLMUnavailable(Exception):
    """LiteLLM's proxy could not be installed or started; the message says why."""


def ensure_installed(log: Path) -> str:
    """Install once; return the installed version."""
    if not STAMP.exists():
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(VENV)],
            [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check", REQUIREMENT],
        ]
        failed = install_steps(steps, log, INSTALL_TIMEOUT_S)
        if failed is not None:
            raise LiteLLMUnavailable(failed)
        STAMP.write_text(REQUIREMENT + "\n")
    probe = [str(PYTHON), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
    found = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        STAMP.unlink(missing_ok=True)
        raise LiteLLMUnavailable(f"litellm is installed but not importable: {found.stderr[-300:]}")
    return found.stdout.strip()


def write_config(path: Path, upstream: str) -> None:
    path.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-dummy-bench\n"
    )


def start(group: Fleet, upstream: str, workdir: Path) -> tuple[Server, str]:
    """Start LiteLLM's proxy against `upstream`; return it and the key clients must send."""
    config = workdir / "litellm.yaml"
    write_config(config, upstream)
    key = "sk-" + secrets.token_hex(24)
    port = free_port()
    argv = [str(VENV / "bin" / "litellm"), "--config", str(config)]
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": key,
    }
    try:
        server = group.start(
            "litellm",
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            port,
            ready_path="/health/readiness",
            env=env,
            cwd=workdir,
            timeout=START_TIMEOUT_S,
        )
    except (RuntimeError, OSError) as exc:
        raise LiteLLMUnavailable(f"LiteLLM's proxy did not start: {exc}") from None
    return server, key
