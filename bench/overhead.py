"""What skillproxy costs on top of the cheapest possible Python proxy, measured in one run.

Starts the fake provider, the feature-less floor proxy and skillproxy on free loopback ports,
then drives each with the load generator (its own process), non-streaming and streaming, at 1
and 32 clients. Absolute figures depend on the machine; the ratios to the floor, measured
minutes apart on the same cores, are the point. Every process started here is stopped on exit.

    .venv/bin/python bench/overhead.py --duration 5 --repeat 3 --markdown bench/out/overhead.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TARGETS = ("direct", "floor", "skillproxy")
MODES = ("json", "stream")
CHAT_PATH = "/v1/chat/completions"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
MIN_THROUGHPUT_RATIO = 0.8
MAX_ADDED_P50_MS = 0.3
TARGETS_LINE = (
    f"targets: throughput at the most clients >= {MIN_THROUGHPUT_RATIO}x floor; "
    f"added p50 at the fewest clients <= {MAX_ADDED_P50_MS} ms"
)
FIELDS = ("req_per_s", "p50_ms", "p99_ms", "ttfb_p50_ms")
SKILLPROXY_CMD = (
    "{python} -m proxy serve --host 127.0.0.1 --port {port} --db {db} --upstream {upstream}/v1"
)


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass(frozen=True)
class Row:
    target: str
    mode: str
    concurrency: int
    runs: list[dict[str, float]]

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)

    def cell(self, key: str) -> str:
        values = [run[key] for run in self.runs]
        digits = 0 if key == "req_per_s" else 2
        text = f"{statistics.median(values):.{digits}f}"
        if len(values) > 1:
            text += f" ({min(values):.{digits}f}..{max(values):.{digits}f})"
        return text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start(
    name: str, argv: list[str], logdir: Path, port: int, env: dict[str, str] | None = None
) -> Server:
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        # Own session: a Ctrl-C reaches only us, and we stop the children in order.
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Server(name, port, proc, log)


def _tcp_ready(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _http_ready(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/healthz"
    with (
        contextlib.suppress(OSError, urllib.error.URLError),
        urllib.request.urlopen(url, timeout=0.5) as resp,
    ):
        return bool(resp.status == 200)
    return False


def wait_ready(server: Server, http: bool) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{log_tail(server.log)}"
            )
        if (_http_ready if http else _tcp_ready)(server.port):
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"{server.name} not ready after {READY_TIMEOUT_S:.0f} s:\n{log_tail(server.log)}"
    )


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(STOP_TIMEOUT_S)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def skillproxy_argv(template: str, port: int, upstream: str, db: Path) -> list[str]:
    fields = {"python": sys.executable, "port": port, "upstream": upstream, "db": db}
    fields["upstream_port"] = upstream.rsplit(":", 1)[1]
    try:
        return shlex.split(template.format(**{k: shlex.quote(str(v)) for k, v in fields.items()}))
    except (KeyError, IndexError) as exc:
        raise RuntimeError(f"--skillproxy-cmd: unknown field {exc}; use {sorted(fields)}") from exc


@contextlib.contextmanager
def servers(only: list[str], skillproxy_cmd: str, logdir: Path) -> Iterator[dict[str, int]]:
    """Start what `only` needs, yield target name -> port, and always stop all of it."""
    started: list[Server] = []

    def launch(name: str, argv: list[str], port: int, http: bool = False) -> None:
        env = {"SKILLPROXY_ADMIN__TOKEN": "bench"} if name == "skillproxy" else None
        started.append(start(name, argv, logdir, port, env))
        wait_ready(started[-1], http)

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        ports = {target: free_port() for target in only}
        ports.setdefault("direct", free_port())
        base = f"http://127.0.0.1:{ports['direct']}"
        script = [sys.executable, str(BENCH / "upstream.py"), "--port", str(ports["direct"])]
        launch("upstream", script, ports["direct"])
        if "floor" in only:
            script = [sys.executable, str(BENCH / "floor.py"), "--port", str(ports["floor"])]
            launch("floor", [*script, "--upstream", base], ports["floor"])
        if "skillproxy" in only:
            argv = skillproxy_argv(skillproxy_cmd, ports["skillproxy"], base, logdir / "bench.db")
            launch("skillproxy", argv, ports["skillproxy"], http=True)
        yield {target: ports[target] for target in only}
    finally:
        for server in reversed(started):
            stop(server)
        signal.signal(signal.SIGTERM, previous)


def load(
    port: int, mode: str, concurrency: int, duration: float, warmup: float
) -> dict[str, float]:
    argv = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--url",
        f"http://127.0.0.1:{port}{CHAT_PATH}",
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    if mode == "stream":
        argv.append("--stream")
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=duration + warmup + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["errors"] or not result["requests"]:
        raise RuntimeError(f"loadgen saw errors against port {port}: {result}")
    return {key: float(result[key]) for key in FIELDS}


def measure(ports: dict[str, int], levels: list[int], args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for mode in MODES:
        for concurrency in levels:
            # Targets alternate within each repeat, so drift on the machine hits all alike.
            runs: dict[str, list[dict[str, float]]] = {t: [] for t in ports}
            for _ in range(args.repeat):
                for target, port in ports.items():
                    runs[target].append(load(port, mode, concurrency, args.duration, args.warmup))
            for target, results in runs.items():
                rows.append(Row(target, mode, concurrency, results))
                print(
                    f"  {target:<10} {mode:<6} c={concurrency:<3} {rows[-1].cell('req_per_s')}"
                    " req/s",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def report(rows: list[Row], levels: list[int]) -> tuple[list[str], list[str]]:
    """The results table, then the comparison against the floor with PASS/MISS lines."""
    table = [
        "| target | mode | clients | req/s | p50 ms | p99 ms | ttfb p50 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    table += [
        f"| {r.target} | {r.mode} | {r.concurrency} | "
        + " | ".join(r.cell(k) for k in FIELDS)
        + " |"
        for r in rows
    ]
    by_key = {(r.target, r.mode, r.concurrency): r for r in rows}
    verdicts: list[str] = []
    if not {"skillproxy", "floor"} <= {r.target for r in rows}:
        return table, ["(skillproxy vs floor not compared: both must be measured)"]
    table += [
        "",
        "| mode | clients | skillproxy / floor req/s | added p50 ms | added ttfb p50 ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for mode in MODES:
        for c in levels:
            sp, fl = by_key[("skillproxy", mode, c)], by_key[("floor", mode, c)]
            ratio = sp.median("req_per_s") / fl.median("req_per_s")
            added = sp.median("p50_ms") - fl.median("p50_ms")
            added_ttfb = sp.median("ttfb_p50_ms") - fl.median("ttfb_p50_ms")
            table.append(f"| {mode} | {c} | {ratio:.2f} | {added:+.2f} | {added_ttfb:+.2f} |")
            if c == max(levels):
                ok = ratio >= MIN_THROUGHPUT_RATIO
                verdicts.append(
                    f"{'PASS' if ok else 'MISS'}  {mode}: throughput at {c} clients "
                    f"{ratio:.2f}x floor (target >= {MIN_THROUGHPUT_RATIO}x)"
                )
            if c == min(levels):
                ok = added <= MAX_ADDED_P50_MS
                verdicts.append(
                    f"{'PASS' if ok else 'MISS'}  {mode}: added p50 at {c} client(s) "
                    f"{added:+.2f} ms (target <= {MAX_ADDED_P50_MS} ms)"
                )
    return table, verdicts


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="uncounted seconds per run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; median reported")
    parser.add_argument("--concurrency", default="1,32", help="comma-separated client counts")
    parser.add_argument("--only", default=",".join(TARGETS), help=f"subset of {','.join(TARGETS)}")
    parser.add_argument(
        "--skillproxy-cmd",
        default=SKILLPROXY_CMD,
        help="command template; fields {python} {port} {upstream} "
        "{upstream_port} {db} (default: %(default)s)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    only = [t for t in TARGETS if t in args.only.split(",")]
    levels = sorted({int(c) for c in args.concurrency.split(",")})
    unknown = set(args.only.split(",")) - set(TARGETS)
    if unknown or not only:
        parser.error(f"--only takes names from {', '.join(TARGETS)}; got {args.only!r}")
    if not (
        0 < args.duration <= 600 and 1 <= args.repeat <= 20 and all(0 < c <= 1024 for c in levels)
    ):
        parser.error("duration must be 0..600 s, repeat 1..20, concurrency 1..1024")

    load_before = f"load average {os.getloadavg()[0]:.2f} at start"
    python = os.path.relpath(sys.executable)
    command = shlex.join([sys.executable if python.startswith("..") else python, *sys.argv])
    try:
        with (
            tempfile.TemporaryDirectory(prefix="skillproxy-bench-") as tmp,
            servers(only, args.skillproxy_cmd, Path(tmp)) as started,
        ):
            rows = measure(started, levels, args)
    except KeyboardInterrupt:
        sys.exit("interrupted; every process started here has been stopped")
    except RuntimeError as exc:
        sys.exit(f"error: {exc}")
    table, verdicts = report(rows, levels)
    lines = [
        f"machine: {machine()}, {load_before}",
        f"command: {command}",
        "",
        *table,
        "",
        TARGETS_LINE,
    ]
    print("\n".join([*lines, *verdicts]), flush=True)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(
            "\n".join(
                [
                    "## Proxy overhead",
                    "",
                    f"- Machine: {machine()}, {load_before}",
                    f"- Command: `{command}`",
                    f"- {args.duration:g} s measured (+{args.warmup:g} s warm-up) per run, "
                    f"{args.repeat} run(s) per cell; median (min..max) when more than one.",
                    "",
                    *table,
                    "",
                    TARGETS_LINE,
                    "",
                    *(f"- {v}" for v in verdicts),
                    "",
                ]
            )
        )


if __name__ == "__main__":
    main()
