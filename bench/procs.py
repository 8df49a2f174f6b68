"""Starting, watching and always stopping the processes a benchmark needs.

Every server runs in its own session on a free loopback port, so a Ctrl-C reaches only the
benchmark, which then stops its children in reverse order. `Fleet` is the one place that
remembers what was started; leaving its `with` block stops all of it, on errors and SIGTERM too.
The CPU and memory readings come straight from /proc: utime + stime of the whole process (all
of its threads), and VmRSS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def install_steps(
    steps: list[list[str]],
    log: Path,
    timeout_s: float,
    *,
    cwd: Path | None = None,
    name: str | None = None,
) -> str | None:
    """Run a peer's install commands in turn, their output appended to `log`; None when all
    succeeded, else why the first did not, in words RESULTS.md can show (`name` names the step
    there, else its arguments)."""
    with log.open("ab") as out:
        for argv in steps:
            try:
                done = subprocess.run(
                    argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s
                )
            except subprocess.TimeoutExpired:
                return f"`{name or ' '.join(argv[-2:])}` did not finish within {timeout_s:.0f} s"
            if done.returncode != 0:
                return (
                    f"`{name or ' '.join(argv[2:])}` failed with exit code {done.returncode}: "
                    + log_tail(log, 3).replace("\n", " | ")
                )
    return None


def _not_blank(line: str) -> bool:
    return bool(line.strip())


def run_script(
    argv: list[str], timeout_s: float, keep: Callable[[str], bool] = _not_blank
) -> tuple[list[str], str | None]:
    """Run a bench script as it is, from the repository root: the lines of its output that
    `keep` accepts (by default the non-empty ones), and why it failed (None when it exited 0
    and printed such a line), in words RESULTS.md can show."""
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return [], f"did not finish within {timeout_s:.0f} s"
    lines = [line for line in done.stdout.splitlines() if keep(line)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return lines, f"failed (exit {done.returncode}): {tail}"
    return lines, None


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of a process, all its threads and live child processes included
    (skillproxy's trace sink is one), or of one thread."""
    if tid:
        return _stat_cpu(Path(f"/proc/{pid}/task/{tid}/stat"))
    return _stat_cpu(Path(f"/proc/{pid}/stat")) + sum(
        cpu_seconds(child) for child in _children(pid)
    )


def _stat_cpu(path: Path) -> float:
    stat = path.read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat(5)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _tcp_ready(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _http_ready(port: int, path: str) -> bool:
    url = f"http://127.0.0.1:{port}{path}"
    with (
        contextlib.suppress(OSError, urllib.error.URLError),
        urllib.request.urlopen(url, timeout=1.0) as resp,
    ):
        return bool(resp.status == 200)
    return False


def stop(server: Server) -> int | None:
    """SIGTERM (a graceful stop: queues drained, WAL checkpointed), SIGKILL if it lingers."""
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(STOP_TIMEOUT_S)
    return server.proc.returncode


class Fleet:
    """The processes of one benchmark section; `start` waits until each is ready."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[Server] = []

    def start(
        self,
        name: str,
        argv: list[str],
        port: int,
        *,
        ready_path: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        timeout: float = READY_TIMEOUT_S,
    ) -> Server:
        log = self.logdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        server = Server(name, port, proc, log)
        self.started.append(server)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_tail(log)}")
            if _http_ready(port, ready_path) if ready_path else _tcp_ready(port):
                return server
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout:.0f} s:\n{log_tail(log)}")

    def stop(self, server: Server) -> int | None:
        code = stop(server)
        self.started.remove(server)
        return code

    def stop_all(self) -> None:
        for server in reversed(self.started):
            stop(server)
        self.started.clear()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def fleet(logdir: Path) -> Iterator[Fleet]:
    """A `Fleet` whose processes are stopped however the block ends (SIGTERM included)."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    group = Fleet(logdir)
    try:
        yield group
    finally:
        group.stop_all()
        signal.signal(signal.SIGTERM, previous)
