"""`skillproxy serve` as a user runs it: a real process, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from store.sqlite.db import open_database
from tests.fakes.provider import FakeProvider
from tests.fakes.server_thread import ServerThread

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Serve = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start `python -m skillproxy serve ARGS`; each process is ended after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SKILLPROXY_")}
        environ.update(env or {})
        process = subprocess.Popen(
            [sys.executable, "-m", "skillproxy", "serve", *args],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("proxy did not start")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_every_trace_before_exit(
    tmp_path: Path,
    fake_provider: tuple[FakeProvider, ServerThread],
    sig: signal.Signals,
    serve: Serve,
) -> None:
    _, upstream = fake_provider
    port, db = free_port(), tmp_path / "t.db"
    process = serve(
        "--port",
        str(port),
        "--db",
        str(db),
        "--upstream",
        upstream.url + "/v1",
        # a long flush interval: the traces are still queued when the signal arrives
        env={"SKILLPROXY_TRACES__FLUSH_INTERVAL_MS": "60000"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process)
    body = {"model": "m", "messages": []}
    ids = [
        httpx.post(url + "/v1/chat/completions", json=body).headers["X-Trace-Id"] for _ in range(20)
    ]
    process.send_signal(sig)
    output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output
    store = open_database(db)
    stored = {row[0] for row in store.execute("SELECT id FROM traces")}
    store.conn.close()
    assert stored == set(ids)


def test_bad_config_stops_the_start_naming_the_key(tmp_path: Path, serve: Serve) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[upstream]\nopenai_base_ur = 'http://x'\n")
    process = serve("--config", str(config))
    output = process.communicate(timeout=20)[0]
    assert process.returncode == 2
    assert "unknown setting 'upstream.openai_base_ur'" in output
    process = serve(env={"SKILLPROXY_SERVER__PORT": "http"})
    output = process.communicate(timeout=20)[0]
    assert process.returncode == 2 and "server.port" in output


def test_example_config_starts(tmp_path: Path, serve: Serve) -> None:
    port = free_port()
    process = serve(
        "--config", "config.example.toml", "--port", str(port), "--db", str(tmp_path / "x.db")
    )
    wait_ready(f"http://127.0.0.1:{port}", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=20)[0]
    assert f"http://127.0.0.1:{port}" in output
