"""`skillproxy serve` refuses unsafe or impossible starts with one line and exit status 2.

Every test runs the real command (`python -m skillproxy serve ...`) in a child process and reads
what an operator would see: its exit status and stderr. Binding 0.0.0.0 only listens (the
process is stopped as soon as it answers /healthz on loopback); nothing is sent anywhere.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 30


@dataclass
class Outcome:
    returncode: int
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def one_line(self) -> str:
        """The refusal: exit status 2, exactly one line on stderr, no traceback."""
        assert self.returncode == 2, self.stderr
        assert "Traceback" not in self.stderr, self.stderr
        assert len(self.lines) == 1, self.stderr
        assert self.lines[0].startswith("skillproxy: "), self.stderr
        return self.lines[0]


Start = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def start() -> Iterator[Start]:
    """Start `python -m skillproxy ARGS` with no SKILLPROXY_* variables but `env`'s."""
    started: list[subprocess.Popen[str]] = []

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SKILLPROXY_")}
        environ.update(env or {})
        process = subprocess.Popen(
            [sys.executable, "-m", "skillproxy", *args],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def finish(process: subprocess.Popen[str]) -> Outcome:
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    return Outcome(process.returncode, stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_until_ready(process: subprocess.Popen[str], port: int) -> Outcome:
    """Wait for /healthz on loopback, then stop the proxy with SIGTERM; what it printed."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}: {finish(process)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not become ready"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    outcome = finish(process)
    assert outcome.returncode == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr, outcome.stderr
    return outcome


def warnings(outcome: Outcome) -> list[str]:
    return [line for line in outcome.lines if " WARNING " in line]


# --- start-up failures ---------------------------------------------------------------------


def test_a_port_in_use_is_one_line_naming_the_address_and_the_setting(
    tmp_path: Path, start: Start
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start("serve", "--port", str(port), "--db", str(tmp_path / "t.db"))
        line = finish(process).one_line()
    assert f"127.0.0.1:{port}" in line and "server.port" in line
    assert "in use" in line
    assert not (tmp_path / "t.db").exists(), "the store was opened although the start failed"


def test_an_unresolvable_host_is_one_line_naming_the_setting(tmp_path: Path, start: Start) -> None:
    process = start(
        "serve", "--host", "no-such-host.invalid", "--port", "0", "--db", str(tmp_path / "t.db")
    )
    line = finish(process).one_line()
    assert "no-such-host.invalid" in line and "server.host" in line


def test_a_corrupted_database_is_one_line_naming_the_store(tmp_path: Path, start: Start) -> None:
    db = tmp_path / "garbage.db"
    db.write_bytes(bytes(range(256)) * 64)  # 16 KiB that are no SQLite header
    process = start("serve", "--port", str(free_port()), "--db", str(db))
    line = finish(process).one_line()
    assert str(db) in line


def test_learn_on_a_corrupted_database_is_one_line(tmp_path: Path, start: Start) -> None:
    db = tmp_path / "garbage.db"
    db.write_bytes(b"\xff" * 8192)
    process = start("learn", "--once", "--db", str(db), "--model", "openai/gpt-4o-mini")
    line = finish(process).one_line()
    assert str(db) in line


def test_an_upstream_that_is_not_a_url_is_refused_by_the_config(start: Start) -> None:
    process = start("serve", "--port", str(free_port()), "--upstream", "not-a-url")
    line = finish(process).one_line()
    assert "upstream.openai_base_url" in line and "not-a-url" in line


# --- exposure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable", ["SKILLPROXY_UPSTREAM__API_KEY", "SKILLPROXY_UPSTREAM__ANTHROPIC_API_KEY"]
)
def test_a_public_address_with_the_servers_key_and_no_client_keys_is_refused(
    tmp_path: Path, start: Start, variable: str
) -> None:
    port = free_port()
    process = start(
        "serve", "--host", "0.0.0.0", "--port", str(port), "--db", str(tmp_path / "t.db"),
        env={variable: "sk-server-key"},
    )  # fmt: skip
    line = finish(process).one_line()
    setting = variable.removeprefix("SKILLPROXY_").lower().replace("__", ".")
    assert setting in line and "0.0.0.0" in line
    assert "server.client_keys" in line and "--allow-open-relay" in line
    assert "sk-server-key" not in line
    assert not (tmp_path / "t.db").exists()


def test_allow_open_relay_starts_and_warns_that_anyone_spends_the_key(
    tmp_path: Path, start: Start
) -> None:
    port = free_port()
    process = start(
        "serve", "--host", "0.0.0.0", "--port", str(port), "--db", str(tmp_path / "t.db"),
        "--allow-open-relay", env={"SKILLPROXY_UPSTREAM__API_KEY": "sk-server-key"},
    )  # fmt: skip
    found = warnings(serve_until_ready(process, port))
    assert any("open relay" in w and "anyone" in w and "upstream.api_key" in w for w in found)
    assert not any("sk-server-key" in w for w in found)


def test_client_keys_let_a_public_address_start_without_the_relay_warning(
    tmp_path: Path, start: Start
) -> None:
    port = free_port()
    process = start(
        "serve", "--host", "0.0.0.0", "--port", str(port), "--db", str(tmp_path / "t.db"),
        "--client-key", "ck-one", "--client-key", "ck-two",
        env={"SKILLPROXY_UPSTREAM__API_KEY": "sk-server-key"},
    )  # fmt: skip
    found = warnings(serve_until_ready(process, port))
    assert not any("open relay" in w for w in found)
    # keys on argv show in ps: the operator is told where else to put them
    assert any("--client-key" in w and "SKILLPROXY_SERVER__CLIENT_KEYS" in w for w in found)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_with_the_servers_key_starts_without_the_relay_warning(
    tmp_path: Path, start: Start, host: str
) -> None:
    port = free_port()
    process = start(
        "serve", "--host", host, "--port", str(port), "--db", str(tmp_path / "t.db"),
        env={"SKILLPROXY_UPSTREAM__API_KEY": "sk-server-key", "SKILLPROXY_ADMIN__TOKEN": "t"},
    )  # fmt: skip
    outcome = serve_until_ready(process, port)
    assert warnings(outcome) == [], outcome.stderr
    assert f":{port}" in outcome.stderr  # where it listens, once it is ready


def test_an_admin_token_on_the_command_line_is_warned_about(tmp_path: Path, start: Start) -> None:
    port = free_port()
    process = start(
        "serve", "--port", str(port), "--db", str(tmp_path / "t.db"), "--admin-token", "s3cret"
    )  # fmt: skip
    found = warnings(serve_until_ready(process, port))
    assert any("--admin-token" in w and "SKILLPROXY_ADMIN__TOKEN" in w for w in found), found
    assert not any("s3cret" in w for w in found)


def test_an_admin_token_from_the_environment_is_not_warned_about(
    tmp_path: Path, start: Start
) -> None:
    port = free_port()
    process = start(
        "serve", "--port", str(port), "--db", str(tmp_path / "t.db"),
        env={"SKILLPROXY_ADMIN__TOKEN": "s3cret"},
    )  # fmt: skip
    assert warnings(serve_until_ready(process, port)) == []


@pytest.mark.parametrize("command", ["learn", "serve"])
def test_a_key_variable_that_is_not_set_stops_the_start_naming_it(
    tmp_path: Path, start: Start, command: str
) -> None:
    """learner/llm.py: never a placeholder key to the provider; say which variable is unset."""
    env = {
        "SKILLPROXY_LEARNER__API_KEY_ENV": "SKILLPROXY_TEST_UNSET_KEY",
        "SKILLPROXY_LEARNER__ENABLED": "true",
        "SKILLPROXY_LEARNER__MODEL": "openai/gpt-4o-mini",
    }
    db = str(tmp_path / "x.db")
    argv = (
        ["--once", "--db", db] if command == "learn" else ["--port", str(free_port()), "--db", db]
    )
    line = finish(start(command, *argv, env=env)).one_line()
    assert "SKILLPROXY_TEST_UNSET_KEY" in line and "not set" in line
