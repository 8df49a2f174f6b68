"""The whole benchmark suite in one go: overhead, memory, store, learner, scale; writes RESULTS.md.

    .venv/bin/python bench/run_all.py          # full: ~30 min, writes bench/RESULTS.md
    .venv/bin/python bench/run_all.py --quick  # smoke: 1-2 min, writes bench/out/RESULTS-quick.md

Set-up is part of the run (LiteLLM's proxy is installed once into bench/.venv-litellm,
TensorZero into bench/.venv-tensorzero, Portkey's gateway into bench/.node-portkey). Before
a full run it waits, up to 3 minutes, for the load average to fall below 1.0, since the load
generator and the servers share the machine's cores. Every process started here is stopped on
exit, on Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import learner_probe
import litellm_proxy
import memory
import overhead
import peers
import profiling
import scale_probe
import store_bench
from admin_api import SKILLBOOK, injected, seed_skills
from loadgen import FORMATS
from procs import BENCH, ROOT, fleet
from report import load_average
from results import Plan, Results, render
from servers import SKILLPROXY_CMD, start_floor, start_skillproxy, start_upstream

QUIET_LOAD = 1.0
QUIET_WAIT_S = 180.0
SCALE_TIMEOUT_S = 1800.0


def plan_from(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    return Plan(
        quick=quick,
        repeat=args.repeat or (1 if quick else 6),
        duration=args.duration or (1.5 if quick else 3.0),
        warmup=args.warmup if args.warmup is not None else (0.5 if quick else 1.0),
        levels=sorted({int(c) for c in args.concurrency.split(",")}),
        checkpoints=[1_000, 5_000, 10_000] if quick else [10_000, 25_000, 50_000, 75_000, 100_000],
        store_traces=50_000 if quick else 1_000_000,
        writer_rows=20_000 if quick else 200_000,
        admin_samples=20 if quick else 50,
        learner_timeout=60.0 if quick else 240.0,
        profile=bool(args.profile),
        skills=args.skills,
        skillproxy_cmd=args.skillproxy_cmd,
        sections=args.sections.split(","),
        formats=args.formats.split(","),
    )


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def wait_for_quiet() -> str:
    started = time.monotonic()
    while os.getloadavg()[0] > QUIET_LOAD and time.monotonic() - started < QUIET_WAIT_S:
        progress(f"load average {os.getloadavg()[0]:.2f} > {QUIET_LOAD}; waiting")
        time.sleep(10)
    waited = time.monotonic() - started
    now = f"{os.getloadavg()[0]:.2f}"
    if os.getloadavg()[0] > QUIET_LOAD:
        return (
            f"still {now} after waiting {waited:.0f} s (other work on the machine); measured anyway"
        )
    return f"{now} after waiting {waited:.0f} s" if waited >= 1 else f"{now}, no wait needed"


def run_suite(plan: Plan, workdir: Path, out: Results) -> None:
    with fleet(workdir) as group:
        upstream = start_upstream(group)
        if "overhead" in plan.sections:
            floor = start_floor(group, upstream)
            proxy = start_skillproxy(
                group, upstream, workdir / "overhead.db", template=plan.skillproxy_cmd
            )
            seed_skills(proxy.port, plan.skills)
            out.injected = injected(proxy.port) if plan.skills else (0, 0)
            if plan.skills and out.injected[0] <= 0:
                raise RuntimeError("X-Skills-Injected is 0: the skillbook section was not injected")
            prefix = f"/sb/{SKILLBOOK}" if plan.skills else ""
            targets = [
                overhead.Target("direct", upstream.base, upstream.proc.pid),
                overhead.Target("floor", floor.base, floor.proc.pid),
                overhead.Target("skillproxy", f"{proxy.base}{prefix}", proxy.proc.pid),
            ]
            if out.litellm_version and "chat" in plan.formats:
                try:
                    server, key = litellm_proxy.start(group, upstream.base, workdir)
                    targets.append(
                        overhead.Target(
                            "litellm", server.base, server.proc.pid, key, formats=("chat",)
                        )
                    )
                except litellm_proxy.LiteLLMUnavailable as exc:
                    out.litellm_missing = str(exc)
            targets += peers.targets(group, upstream, workdir, out, plan.formats)
            out.overhead = overhead.measure(
                targets,
                plan.levels,
                repeat=plan.repeat,
                duration=plan.duration,
                warmup=plan.warmup,
                progress=progress,
                formats=plan.formats,
            )
            group.stop_all()
            upstream = start_upstream(group)
        if plan.profile or (not plan.quick and floor_target_missed(plan, out)):
            progress("profile: skillproxy under cProfile, 32 clients, json")
            out.profile = profiling.run(
                group,
                upstream,
                workdir,
                duration=max(plan.duration, 5.0),
                warmup=plan.warmup,
                skills=plan.skills,
            )
        if "memory" in plan.sections:
            out.tiktoken_mb = memory.tiktoken_mb()
            for i in range(plan.slow_repeat):
                db = workdir / f"memory-{i}.db"
                out.memory.append(
                    memory.run(
                        group, upstream, db, plan.checkpoints, skills=plan.skills, progress=progress
                    )
                )
        if "store" in plan.sections:
            for _ in range(plan.slow_repeat):
                out.writer_rows_per_s.append(
                    store_bench.writer_rows_per_s(workdir / "writer.db", plan.writer_rows)
                )
            progress(f"trace writer: {out.writer_rows_per_s[-1]:,.0f} rows/s")
            big = workdir / "million.db"
            out.generation_s = store_bench.generate(big, plan.store_traces)
            out.store_bytes = big.stat().st_size
            progress(f"generated {plan.store_traces:,} traces in {out.generation_s:.1f} s")
            out.admin_ms = store_bench.admin_latency(
                group,
                upstream,
                big,
                plan.store_traces,
                repeat=plan.slow_repeat,
                samples=plan.admin_samples,
                skills=plan.skills,
                progress=progress,
            )


def floor_target_missed(plan: Plan, out: Results) -> bool:
    if not any(row.fmt == "chat" for row in out.overhead):
        return False
    clients = max(plan.levels)
    got = overhead.ratio(out.overhead, "json", clients, "req_per_s", "skillproxy", "floor")
    return got < overhead.MIN_FLOOR_RATIO


def command_line(argv: list[str]) -> str:
    python = os.path.relpath(sys.executable, ROOT)
    script = os.path.relpath(argv[0], ROOT)
    shown = shlex.join([sys.executable if python.startswith("..") else python, script, *argv[1:]])
    if not os.environ.get("MAKELEVEL"):
        return f"`{shown}`"
    extra = f" BENCH_ARGS={shlex.quote(shlex.join(argv[1:]))}" if argv[1:] else ""
    return f"`make bench{extra}`, which runs `{shown}`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~2 min smoke run")
    parser.add_argument(
        "--repeat",
        type=int,
        help="runs per overhead figure (default 6, quick 1); memory and store run min(N, 3)",
    )
    parser.add_argument("--duration", type=float, help="measured s per load run (3, quick 1.5)")
    parser.add_argument("--warmup", type=float, help="uncounted s per load run (1, quick 0.5)")
    parser.add_argument("--concurrency", default="1,32", help="client counts (default 1,32)")
    parser.add_argument(
        "--sections",
        default="overhead,memory,store,learner,scale",
        help="subset of overhead,memory,store,learner,scale",
    )
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help="wire formats for the overhead section (default chat,messages,responses)",
    )
    parser.add_argument("--profile", action="store_true", help="add a cProfile of skillproxy")
    parser.add_argument(
        "--skills", type=int, default=50, help="active skills to seed (0: none, e.g. for A/A)"
    )
    parser.add_argument("--skillproxy-cmd", default=SKILLPROXY_CMD, help="start command template")
    parser.add_argument("--markdown", type=Path, help="output (default bench/RESULTS.md)")
    args = parser.parse_args()
    plan = plan_from(args)
    if not (1 <= plan.repeat <= 10 and 0 < plan.duration <= 60 and plan.levels[0] >= 1):
        parser.error("repeat must be 1..10, duration 0..60 s, concurrency >= 1")
    if not 0 <= plan.skills <= 1000:
        parser.error("--skills must be 0..1000")
    unknown = set(plan.sections) - {"overhead", "memory", "store", "learner", "scale"}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    bad = set(plan.formats) - set(FORMATS)
    if bad or not plan.formats:
        parser.error(f"--formats: use some of {','.join(FORMATS)}")
    default = BENCH / ("out/RESULTS-quick.md" if plan.quick else "RESULTS.md")
    target = (args.markdown or default).resolve()

    began = time.monotonic()
    out = Results(load_at_invocation=load_average(), command=command_line(sys.argv))
    (BENCH / "out").mkdir(exist_ok=True)
    if "overhead" in plan.sections:
        progress("set-up: LiteLLM's proxy in bench/.venv-litellm")
        try:
            out.litellm_version = litellm_proxy.ensure_installed(
                BENCH / "out" / "litellm-install.log"
            )
        except (litellm_proxy.LiteLLMUnavailable, OSError, subprocess.SubprocessError) as exc:
            out.litellm_missing = f"not installed: {exc}"
        peers.install(out, progress)
    out.load_at_start = wait_for_quiet() if not plan.quick else f"{os.getloadavg()[0]:.2f}"
    try:
        with tempfile.TemporaryDirectory(prefix="skillproxy-bench-") as tmp:
            run_suite(plan, Path(tmp), out)
    except KeyboardInterrupt:
        sys.exit("interrupted; every process started here has been stopped")
    except RuntimeError as exc:
        sys.exit(f"error: {exc}")
    if "learner" in plan.sections:
        out.learner = learner_probe.rows(plan.quick, plan.learner_timeout)
    if "scale" in plan.sections:
        size = "20,000 traces" if plan.quick else "1M traces, ~5-10 min"
        progress(f"data at scale: bench/data_scale.py ({size})")
        out.scale = scale_probe.run(plan.quick, SCALE_TIMEOUT_S)
    out.load_at_end = load_average()
    out.wall_s = time.monotonic() - began
    text = render(plan, out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(text)
    progress(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")


if __name__ == "__main__":
    main()
