"""TensorZero's gateway as a comparison point, in its own virtualenv so it never touches ours.

`ensure_installed()` creates `bench/.venv-tensorzero` and runs `pip install tensorzero` once (a
stamp file remembers success). The PyPI wheel ships no gateway executable: the Rust gateway is
compiled into the client's extension module (`tensorzero.abi3.so`), and
`tensorzero._start_http_gateway` (what `tensorzero.patch_openai_client` calls) runs the same
HTTP gateway on a Tokio runtime inside the Python process, on a loopback port it picks itself
(its `gateway.bind_address` is not honoured there). So `start()` runs this file under the
virtualenv's Python (`serve`), which starts that gateway, writes its base URL to a file and
sleeps; the process's CPU is the gateway's threads (the Python main thread only waits).

The config routes `gpt-4o-mini` to the fake provider's Chat Completions endpoint (`type =
"openai"`, `api_base`, no key) with observability off (no ClickHouse or Postgres here).
Client-facing, TensorZero serves Chat Completions only, at `/openai/v1/chat/completions` (plus
`/openai/v1/embeddings` and its own `/inference`); it has no Anthropic Messages or OpenAI
Responses endpoint for clients (it speaks those to providers), so only `chat` is measured.
Its model field must name a configured model as `tensorzero::model_name::<name>`.

Anything that goes wrong becomes a `TensorZeroUnavailable` whose message says exactly why, so
the suite finishes and RESULTS.md can tell the reader.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from procs import BENCH, Fleet, Server, install_steps, log_tail

VENV = BENCH / ".venv-tensorzero"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".bench-installed"
REQUIREMENT = "tensorzero"
INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 60.0
MODEL = "gpt-4o-mini"
CLIENT_MODEL = f"tensorzero::model_name::{MODEL}"  # what loadgen sends to TensorZero
PREFIX = "/openai"  # the Chat Completions path after it is `/v1/chat/completions`
FORMATS = ("chat",)


class TensorZeroUnavailable(Exception):
    """TensorZero's gateway could not be installed or started; the message says why."""


def ensure_installed(log: Path) -> str:
    """Install once; return the installed version."""
    if not STAMP.exists():
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(VENV)],
            [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check", REQUIREMENT],
        ]
        failed = install_steps(steps, log, INSTALL_TIMEOUT_S)
        if failed is not None:
            raise TensorZeroUnavailable(failed)
        STAMP.write_text(REQUIREMENT + "\n")
    probe = [
        str(PYTHON),
        "-c",
        "import importlib.metadata as m, tensorzero; tensorzero._start_http_gateway;"
        " print(m.version('tensorzero'))",
    ]
    found = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        STAMP.unlink(missing_ok=True)
        raise TensorZeroUnavailable(
            "tensorzero is installed but its embedded HTTP gateway (`_start_http_gateway`) is not"
            f" importable: {found.stderr.strip()[-300:]}"
        )
    return found.stdout.strip()


def write_config(path: Path, upstream: str) -> None:
    path.write_text(
        "[gateway]\n"
        "observability.enabled = false\n"
        "\n"
        f'[models."{MODEL}"]\n'
        'routing = ["bench"]\n'
        "\n"
        f'[models."{MODEL}".providers.bench]\n'
        'type = "openai"\n'
        f'model_name = "{MODEL}"\n'
        f'api_base = "{upstream}/v1/"\n'
        'api_key_location = "none"\n'
    )


def _chat_ok(base: str) -> str | None:
    """None if one Chat Completions request through the gateway answers 200 with a choice."""
    body = {"model": CLIENT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        base + PREFIX + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:300]!r}"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if answer.get("choices") else f"no choices in {str(answer)[:300]}"


def start(group: Fleet, upstream: str, workdir: Path) -> Server:
    """Start TensorZero's gateway against `upstream`; it is stopped with the rest of `group`."""
    config = workdir / "tensorzero.toml"
    write_config(config, upstream)
    url_file = workdir / "tensorzero.url"
    url_file.unlink(missing_ok=True)
    log = group.logdir / "tensorzero.log"
    argv = [str(PYTHON), str(Path(__file__).resolve()), "serve", "--config", str(config)]
    try:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*argv, "--url-file", str(url_file)],
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
                start_new_session=True,
            )
    except OSError as exc:
        raise TensorZeroUnavailable(f"TensorZero's gateway did not start: {exc}") from None
    placeholder = Server("tensorzero", 0, proc, log)
    group.started.append(placeholder)  # stopped with the fleet, whatever happens next
    deadline = time.monotonic() + START_TIMEOUT_S
    while not url_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {proc.returncode}" if proc.poll() is not None else "timed out"
            raise TensorZeroUnavailable(
                f"TensorZero's gateway did not start ({state}): "
                + log_tail(log, 5).replace("\n", " | ")
            )
        time.sleep(0.2)
    base = url_file.read_text().strip().removesuffix(PREFIX + "/v1")
    server = Server("tensorzero", int(base.rsplit(":", 1)[1]), proc, log)
    group.started[group.started.index(placeholder)] = server
    problem = _chat_ok(server.base)
    if problem:
        raise TensorZeroUnavailable(f"TensorZero's gateway answered a check request with {problem}")
    return server


def serve(config: str, url_file: Path) -> None:
    """Run under bench/.venv-tensorzero's Python: start the gateway, say where, wait."""
    tensorzero = importlib.import_module("tensorzero")
    gateway = tensorzero._start_http_gateway(
        config_file=config,
        clickhouse_url=None,
        postgres_url=None,
        valkey_url=None,
        async_setup=False,
    )
    partial = url_file.with_suffix(".partial")
    partial.write_text(str(gateway.base_url))
    partial.rename(url_file)
    print(f"TensorZero gateway at {gateway.base_url}", flush=True)
    while True:  # SIGTERM ends the process
        time.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser(description="run TensorZero's embedded HTTP gateway")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--config", required=True)
    parser.add_argument("--url-file", type=Path, required=True)
    args = parser.parse_args()
    serve(args.config, args.url_file)


if __name__ == "__main__":
    main()
