"""Where the data grows: the review page's admin calls and episode grouping on a big store.

Builds a SQLite store through its own repositories: `--traces` chat traces as conversations
of `--turns` turns, interleaved the way concurrent agents' traffic is, over four models, one
conversation in fifty ending in a provider error, half of them carrying an `X-Session-Id`;
then `--skills` skills, each with three evidence traces, the first fifty approved. Then:

1. grouping: the learner's `group_new_traces` over every trace, in a child process of its own
   so its peak memory (ru_maxrss) is the grouping's alone; traces/s and MB;
2. the admin calls the review page makes, through the proxy's app on loopback, `--repeat`
   times each: p50 and p95 in ms.

Each target of the performance issue is printed with PASS or MISS. Synthetic data, so these
are mechanics figures (how the queries and the grouping scale), not a user's experience.

    .venv/bin/python bench/data_scale.py                           # 1M traces, 10,000 skills
    .venv/bin/python bench/data_scale.py --traces 100000 --skills 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import ClientSession, web  # noqa: E402
from episodes import conversation  # noqa: E402
from scale_probe import MARK as SUMMARY_MARK  # noqa: E402

from core.config import load_config  # noqa: E402
from learner.episodes import group_new_traces  # noqa: E402
from skillproxy.app import create_app  # noqa: E402
from store import TRACE_COLUMNS, open_store  # noqa: E402

BOOK = "support"
MODELS = ("gpt-4o-mini", "gpt-4.1", "claude-sonnet-4-5", "gpt-4.1-mini")
BATCH = 5_000
CALL_TARGET_MS = 50.0
GROUPING_TARGET_PER_S = 10_000
GROUPING_TARGET_MB = 300.0


Row = tuple[Any, ...]


def conversations(traces: int, turns: int, concurrent: int, seed: int) -> Iterator[list[Row]]:
    """Store rows in batches, conversations started in waves of `concurrent`, turns interleaved;
    never more than one wave held in memory."""
    rng = random.Random(seed)
    count = traces // turns
    made, batch = 0, list[Row]()
    for wave in range(0, count, concurrent):
        convs = [
            (n, conversation(rng, n, turns)) for n in range(wave, min(wave + concurrent, count))
        ]
        for turn in range(turns):
            for n, conv in convs:
                request, response = conv[turn]
                model = MODELS[n % len(MODELS)]
                request["model"] = model
                failed = n % 50 == 0 and turn == turns - 1
                values: dict[str, Any] = {
                    "id": f"tr_{made:09d}", "created_at": time.time() - 86_400 + made * 0.01,
                    "skillbook": BOOK, "format": "chat", "method": "POST",
                    "path": "/v1/chat/completions", "model": model, "stream": 0,
                    "status": 500 if failed else 200, "latency_ms": 420.0,
                    "client_disconnected": 0, "session_id": f"sess-{n}" if n % 2 else None,
                    "injected_skill_ids": json.dumps([f"sk_{n % 7}"]), "skill_tokens": 300,
                    "input_tokens": 500, "output_tokens": 80,
                    "request_json": json.dumps(request),
                    "response_json": json.dumps({"error": {"message": "upstream"}})
                    if failed else json.dumps(response),
                }  # fmt: skip
                batch.append(tuple(values.get(column) for column in TRACE_COLUMNS))
                made += 1
                if len(batch) == BATCH:
                    yield batch
                    batch = []
    if batch:
        yield batch


def build(path: Path, args: argparse.Namespace) -> tuple[str, float]:
    """The store, filled; returns one skill id to open and the body MB written."""
    store = open_store(str(path))
    store.migrate()
    body = 0
    stored = 0
    for rows in conversations(args.traces, args.turns, args.concurrent, args.seed):
        store.traces.insert_values(rows)
        stored += len(rows)
        body += sum(len(r[-2] or "") + len(r[-1] or "") for r in rows)
    rng = random.Random(args.seed)
    created = [
        store.skills.create(
            BOOK, f"section {n % 40}", f"When case {n} comes up, check step {n % 97} first.",
            actor="bench",
            evidence=[(f"tr_{rng.randrange(stored):09d}", "seen here") for _ in range(3)],
        ).id
        for n in range(args.skills)
    ]  # fmt: skip
    for skill in created[:50]:
        store.skills.transition(skill, "approve", actor="bench")
    store.close()
    return created[-1], body / 1e6


def group_all(path: str, batch: int) -> dict[str, Any]:
    """Run in the child: group every trace, time it, and report the peak RSS."""
    store = open_store(path)
    started = time.perf_counter()
    grouped = episodes = 0
    while True:
        result = group_new_traces(store, limit=batch, settle_s=0)
        grouped += result.grouped
        episodes += result.new_episodes
        if result.traces_seen < batch:
            break
    seconds = time.perf_counter() - started
    store.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"grouped": grouped, "episodes": episodes, "seconds": round(seconds, 1),
            "traces_per_s": round(grouped / seconds), "peak_rss_mb": round(peak_mb)}  # fmt: skip


def calls(skill: str, episode: str, session: str) -> list[tuple[str, str, bool]]:
    """(name, URL, named by the issue's target)."""
    queue = f"/admin/skillbooks/{BOOK}/skills?status=pending&order=newest&limit=50"
    traces = f"/admin/traces?skillbook={BOOK}&limit=50"
    return [
        ("pending queue, newest 50", queue, True),
        ("pending queue, page 100", f"{queue}&offset=5000", True),
        ("a skill with its evidence and history", f"/admin/skills/{skill}", True),
        ("a skill's outcomes", f"/admin/skills/{skill}/outcomes", False),
        ("traces of the skillbook", traces, True),
        ("traces, errors only", f"{traces}&outcome=error", True),
        ("traces, one model", f"{traces}&model={MODELS[2]}", True),
        ("traces, one model, errors only", f"{traces}&model={MODELS[2]}&outcome=error", True),
        ("traces, one session", f"/admin/traces?session_id={session}&limit=50", True),
        ("an episode with its traces", f"/admin/episodes/{episode}", True),
        ("episodes of the skillbook", f"/admin/episodes?skillbook={BOOK}", False),
        ("skillbooks", "/admin/skillbooks", False),
        ("injected section", f"/admin/skillbooks/{BOOK}/prompt", False),
        ("activity, last day by hour", f"/admin/traces/activity?skillbook={BOOK}", False),
    ]


async def measure(path: Path, skill: str, repeat: int) -> list[tuple[str, float, float, bool]]:
    config = load_config(
        environ={}, overrides={"store": {"url": str(path)}, "learner": {"enabled": False}}
    )
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    results = []
    try:
        async with ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.get(f"/admin/episodes?skillbook={BOOK}&limit=1") as answer:
                episode = (await answer.json())["data"][0]["id"]
            for name, url, targeted in calls(skill, episode, "sess-4321"):
                times = []
                for _ in range(repeat):
                    began = time.perf_counter()
                    async with http.get(url) as answer:
                        await answer.read()
                        assert answer.status == 200, (url, answer.status)
                    times.append((time.perf_counter() - began) * 1000)
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                results.append((name, statistics.median(times), p95, targeted))
    finally:
        await runner.cleanup()
    return results


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--skills", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=200, help="conversations at once")
    parser.add_argument("--batch", type=int, default=5000, help="group_new_traces limit")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--group-only", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.group_only:
        print(json.dumps(group_all(args.group_only, args.batch)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale.db"
        began = time.perf_counter()
        skill, body_mb = build(path, args)
        built = time.perf_counter() - began
        child = subprocess.run(
            [sys.executable, __file__, "--group-only", str(path), "--batch", str(args.batch)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        grouping = json.loads(child.stdout.strip().splitlines()[-1])
        rows = asyncio.run(measure(path, skill, args.repeat))
        db_mb = path.stat().st_size / 1e6
    print(
        f"data at scale: {args.traces:,} traces ({body_mb:,.0f} MB of bodies, a {db_mb:,.0f} MB "
        f"database, built in {built:.0f} s) and {args.skills:,} skills with 3 evidence traces "
        "each; synthetic data: mechanics figures"
    )
    rate, peak = grouping["traces_per_s"], grouping["peak_rss_mb"]
    print(
        f"\nepisode grouping: {grouping['grouped']:,} traces into {grouping['episodes']:,} "
        f"episodes in {grouping['seconds']} s: {rate:,} traces/s "
        f"(target >= {GROUPING_TARGET_PER_S:,}: {verdict(rate >= GROUPING_TARGET_PER_S)}), "
        f"peak RSS {peak} MB (target <= {GROUPING_TARGET_MB:.0f}: "
        f"{verdict(peak <= GROUPING_TARGET_MB)})"
    )
    print("\n| admin call | p50 ms | p95 ms | target p50 <= 50 ms |\n| --- | ---: | ---: | --- |")
    for name, p50, p95, targeted in rows:
        target = verdict(p50 <= CALL_TARGET_MS) if targeted else "(not a target)"
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {target} |")
    summary = {
        "traces": args.traces,
        "skills": args.skills,
        "grouping": grouping,
        "grouping_target_per_s": GROUPING_TARGET_PER_S,
        "grouping_target_mb": GROUPING_TARGET_MB,
        "call_target_ms": CALL_TARGET_MS,
        "calls": rows,
    }
    print(f"\n{SUMMARY_MARK}{json.dumps(summary)}")


if __name__ == "__main__":
    main()
