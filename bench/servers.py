"""How each server under test is started: the fake provider, the floor, skillproxy.

skillproxy runs exactly as an operator would run it (`python -m skillproxy serve`), with the admin
token `bench`; `--skillproxy-cmd` can put anything else in its place (an A/A check runs the
floor there). With `profile_to`, it runs under cProfile, which writes its file at a graceful
stop.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from procs import BENCH, Fleet, Server, free_port

SKILLPROXY_CMD = (
    "{python} -m skillproxy serve --host 127.0.0.1 --port {port} --db {db} --upstream {upstream}/v1"
    " --anthropic-upstream {upstream}"
)
SKILLPROXY_ENV = {"SKILLPROXY_ADMIN__TOKEN": "bench"}


def start_upstream(group: Fleet) -> Server:
    port = free_port()
    argv = [sys.executable, str(BENCH / "upstream.py"), "--port", str(port)]
    return group.start("upstream", argv, port)


def start_floor(group: Fleet, upstream: Server) -> Server:
    port = free_port()
    argv = [sys.executable, str(BENCH / "floor.py"), "--port", str(port)]
    return group.start("floor", [*argv, "--upstream", upstream.base], port)


def skillproxy_argv(template: str, port: int, upstream: str, db: Path) -> list[str]:
    fields = {"python": sys.executable, "port": port, "upstream": upstream, "db": db}
    fields["upstream_port"] = upstream.rsplit(":", 1)[1]
    try:
        return shlex.split(template.format(**{k: shlex.quote(str(v)) for k, v in fields.items()}))
    except (KeyError, IndexError) as exc:
        raise RuntimeError(f"--skillproxy-cmd: unknown field {exc}; use {sorted(fields)}") from exc


def start_skillproxy(
    group: Fleet,
    upstream: Server,
    db: Path,
    *,
    template: str = SKILLPROXY_CMD,
    name: str = "skillproxy",
    profile_to: Path | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    port = free_port()
    argv = skillproxy_argv(template, port, upstream.base, db)
    if profile_to is not None:
        argv[1:1] = ["-m", "cProfile", "-o", str(profile_to)]
    env = {**SKILLPROXY_ENV, **(env or {})}
    return group.start(name, argv, port, ready_path="/healthz", env=env)
