"""Instructions per request, counted by callgrind: a figure this machine's drift cannot move.

Throughput ratios here move by 10-15% between adjacent runs of the same code, too much to see a
change of a few percent. Instruction counts do not drift. For each target, this script runs
itself under `valgrind --tool=callgrind` with the fake provider, the target and a 32-client
driver in one interpreter, warms up, then counts only the measured requests
(`callgrind_control -i on/off`). The figure covers the whole exchange (client, proxy, provider,
so compare targets with each other, or with `direct`, the provider alone); the trace sink is a
child process and is not counted. skillproxy runs as `serve` tunes it (`proxy.runtime`), with
tracing on and 50 active skills injected at `/sb/bench/v1/...`. Needs valgrind; takes about a
minute per target for 1,000 requests.

    python bench/instructions.py [--requests 1000] [--targets direct,floor,skillproxy]
                                 [--format chat|messages|responses]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile

import floor
import loadgen
import upstream
from admin_api import SKILLBOOK, seed_skills
from admin_api import TOKEN as ADMIN_TOKEN
from aiohttp import web
from loadgen import PATHS
from procs import free_port

TARGETS = ("direct", "floor", "skillproxy")
CLIENTS = 32
WARMUP_REQUESTS = 300
SKILLS = 50


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _drive(url: str, requests: int, fmt: str) -> None:
    """Exactly `requests` requests from `CLIENTS` clients: the load generator's count mode."""
    result = await loadgen.run(url, CLIENTS, 0.0, 0.0, False, requests=requests, fmt=fmt)
    if result["errors"] or result["all_requests"] != requests:
        raise RuntimeError(f"{url}: {result}")


async def _skillproxy(provider_port: int, port: int, db: str) -> web.AppRunner:
    from core.config import load_config
    from proxy.runtime import tune_for_serving
    from skillproxy.app import create_app

    overrides = {
        "store": {"path": db},
        "upstream": {
            "openai_base_url": f"http://127.0.0.1:{provider_port}/v1",
            "anthropic_base_url": f"http://127.0.0.1:{provider_port}",
        },
        "admin": {"token": ADMIN_TOKEN},
    }
    app = create_app(load_config(None, overrides=overrides))
    tune_for_serving(app)
    runner = await _serve(app, port)
    # seed_skills blocks on HTTP calls to this very loop's server: it runs on a thread
    await asyncio.to_thread(seed_skills, port, SKILLS)
    await asyncio.sleep(1.0)  # the skillbook cache picks the skills up
    return runner


async def child(target: str, requests: int, fmt: str) -> None:
    """Inside valgrind: start everything, warm up, count only the measured requests."""
    provider_port, port = free_port(), free_port()
    runners = [await _serve(upstream.create_app(), provider_port)]
    url = f"http://127.0.0.1:{port}{PATHS[fmt]}"
    with tempfile.TemporaryDirectory() as tmp:
        if target == "direct":
            url = f"http://127.0.0.1:{provider_port}{PATHS[fmt]}"
        elif target == "floor":
            app = floor.create_app(f"http://127.0.0.1:{provider_port}")
            runners.append(await _serve(app, port))
        else:
            runners.append(await _skillproxy(provider_port, port, f"{tmp}/bench.db"))
            url = f"http://127.0.0.1:{port}/sb/{SKILLBOOK}{PATHS[fmt]}"
        await _drive(url, WARMUP_REQUESTS, fmt)
        await asyncio.sleep(1.5)  # the warm-up's traces are written
        if target != "skillproxy":
            gc.collect()
        _instrument("on")
        await _drive(url, requests, fmt)
        _instrument("off")
        for runner in reversed(runners):
            await runner.cleanup()


def _instrument(state: str) -> None:
    subprocess.run(
        ["callgrind_control", "-i", state, str(os.getpid())], check=True, capture_output=True
    )


def count(target: str, requests: int, fmt: str) -> int:
    """Instructions per measured request for `target`."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable,
            __file__,
            "--child",
            target,
            "--requests",
            str(requests),
            "--format",
            fmt,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"{target} under callgrind failed:\n{done.stderr[-2000:]}")
        return int(found.group(1)) // requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--format", default="chat", choices=sorted(PATHS))
    parser.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.requests, args.format))
        return
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt install valgrind)")
    targets = args.targets.split(",")
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets {', '.join(sorted(unknown))}; use {', '.join(TARGETS)}")
    print(f"{args.format}, {args.requests:,} requests, {CLIENTS} clients; instructions per request")
    for target in targets:
        print(f"{target:<11} {count(target, args.requests, args.format):>12,}", flush=True)


if __name__ == "__main__":
    main()
