"""The review page's API calls on a big store: 10,000 pending proposals and 1M traces.

Builds the store through its own repositories (traces in batches through the trace insert the
sink uses, skills through `create`), then starts the proxy's app on loopback and times each
call the page makes, `--repeat` times, printing p50 and p95 in milliseconds. Synthetic data,
so these are mechanics figures: how the queries scale, not how a real reviewer fares.

    .venv/bin/python bench/review_scale.py                       # 1,000,000 traces, 10,000 skills
    .venv/bin/python bench/review_scale.py --traces 100000 --skills 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import ClientSession, web  # noqa: E402

from core.config import load_config  # noqa: E402
from skillproxy.app import create_app  # noqa: E402
from store import TRACE_COLUMNS, open_store  # noqa: E402

BOOK = "support"
BATCH = 5_000


def build(path: Path, traces: int, skills: int) -> str:
    """The store, filled; returns one skill id to open."""
    store = open_store(str(path))
    store.migrate()
    created = [
        store.skills.create(
            BOOK, f"section {n % 40}", f"When case {n} comes up, check step {n % 97} first.",
            actor="bench",
        ).id
        for n in range(skills)
    ]  # fmt: skip
    for n in range(0, min(skills, 50)):
        store.skills.transition(created[n], "approve", actor="bench")
    request = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    response = json.dumps({"object": "chat.completion", "choices": []})
    start = time.time() - traces
    injected = json.dumps(created[:20])
    for first in range(0, traces, BATCH):
        rows = []
        for n in range(first, min(first + BATCH, traces)):
            values: dict[str, Any] = {
                "id": f"tr_{n:08d}", "created_at": start + n, "skillbook": BOOK,
                "format": "chat", "method": "POST", "path": "/v1/chat/completions",
                "model": "gpt-4o-mini", "stream": 0, "status": 500 if n % 50 == 0 else 200,
                "latency_ms": 12.0, "client_disconnected": 0, "session_id": f"s{n // 4}",
                "injected_skill_ids": injected, "skill_tokens": 300,
                "request_json": request, "response_json": response,
            }  # fmt: skip
            rows.append(tuple(values.get(column) for column in TRACE_COLUMNS))
        store.traces.insert_values(rows)
    store.close()
    return created[-1]


QUEUE = "/admin/skillbooks/support/skills?status=pending&order=newest"
CALLS = (
    ("skillbooks", "/admin/skillbooks"),
    ("queue page (50 newest pending)", f"{QUEUE}&limit=50"),
    ("queue page 100", f"{QUEUE}&limit=50&offset=5000"),
    ("one skill", "/admin/skills/{skill}"),
    ("skill outcomes", "/admin/skills/{skill}/outcomes"),
    ("injected section", "/admin/skillbooks/support/prompt"),
    ("traces page", "/admin/traces?skillbook=support&limit=50"),
    ("traces, errors only", "/admin/traces?skillbook=support&outcome=error&limit=50"),
    ("traces, one session", "/admin/traces?session_id=s1234&limit=50"),
    ("activity, last day by hour", "/admin/traces/activity?skillbook=support"),
    ("learner runs", "/admin/learner/runs"),
    ("failed episodes", "/admin/episodes?status=failed"),
)  # fmt: skip


async def measure(path: Path, skill: str, repeat: int) -> list[tuple[str, float, float]]:
    config = load_config(environ={}, overrides={"store": {"url": str(path)}})
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    results = []
    try:
        async with ClientSession(f"http://127.0.0.1:{port}") as http:
            for name, url in CALLS:
                times = []
                for _ in range(repeat):
                    began = time.perf_counter()
                    async with http.get(url.format(skill=skill)) as answer:
                        await answer.read()
                        assert answer.status == 200, (url, answer.status)
                    times.append((time.perf_counter() - began) * 1000)
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                results.append((name, statistics.median(times), p95))
    finally:
        await runner.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--skills", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "review.db"
        began = time.perf_counter()
        skill = build(path, args.traces, args.skills)
        built = time.perf_counter() - began
        rows = asyncio.run(measure(path, skill, args.repeat))
    print(
        f"review page API on {args.traces:,} traces and {args.skills:,} pending skills "
        f"(built in {built:.0f} s; synthetic data: mechanics figures)"
    )
    print("| call | p50 ms | p95 ms |\n| --- | ---: | ---: |")
    for name, p50, p95 in rows:
        print(f"| {name} | {p50:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
