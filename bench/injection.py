"""What injecting a 200-skill skillbook adds to a request, measured two ways in one run.

1. In process: the exact work a request pays for injection (cache lookup, choosing the section,
   adding it to the body, re-serialising), timed over many calls, for usefulness and relevance
   ranking, against the same request with no skillbook.
2. End to end: one skillproxy process, the zero-latency fake provider, the load generator at one
   client, alternating between `/sb/big/v1` (200 active skills) and `/sb/none/v1` (no skills),
   so the two are measured minutes apart on the same process; the added p50 is the difference.

    .venv/bin/python bench/injection.py [--duration 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import SkillbookConfig  # noqa: E402
from core.formats import CHAT  # noqa: E402
from proxy.injection import inject  # noqa: E402
from proxy.skillbook_cache import SkillbookCache  # noqa: E402
from proxy.tracing import TraceRecord  # noqa: E402
from store import open_store  # noqa: E402
from store.worker import StoreWorker  # noqa: E402

TARGET_ADDED_P50_MS = 0.1
CHAT_PATH = "/v1/chat/completions"
TOPICS = ("returns", "billing", "shipping", "accounts", "tone", "escalation", "tools", "privacy")
BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful support agent for an online shop."},
        {"role": "user", "content": "Where is my order 12345? I need it for a birthday."},
    ],
}


def build_skillbook(path: Path, count: int = 200) -> None:
    store = open_store(str(path))
    store.migrate()
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        skill = store.skills.create(
            "big",
            topic,
            f"When a customer mentions {topic} case {i}, confirm the order number and explain "
            f"step {i % 7 + 1} of the {topic} policy before offering anything else.",
            actor="bench",
        )
        store.skills.transition(skill.id, "approve", actor="bench")
        for _ in range(i % 5):
            store.skills.tag(skill.id, "helpful", actor="bench")
    store.skillbooks.ensure("none")
    store.close()


def per_request_cost(path: Path, ranking: str, calls: int = 20000) -> dict[str, float]:
    """Microseconds a request pays for injection, with and without skills."""

    async def measure() -> dict[str, float]:
        worker = StoreWorker(str(path))
        cache = SkillbookCache(worker, SkillbookConfig(ranking=ranking))  # type: ignore[arg-type]
        await cache.refresh()
        await cache.add_encoding("o200k_base")
        out: dict[str, float] = {}
        for book in ("big", "none"):
            record = TraceRecord("t", 0.0, book, "POST", CHAT_PATH, model="gpt-4o-mini")
            headers: dict[str, str] = {}
            start = time.perf_counter()
            for _ in range(calls):
                inject(cache, CHAT, BODY, record, headers)
            out[book] = (time.perf_counter() - start) / calls * 1e6
        record = TraceRecord("t", 0.0, "big", "POST", CHAT_PATH, model="gpt-4o-mini")
        headers = {}
        inject(cache, CHAT, BODY, record, headers)
        out["skills_injected"] = float(headers["X-Skills-Injected"])
        out["skill_tokens"] = float(headers["X-Skill-Tokens"])
        worker.close()
        return out

    return asyncio.run(measure())


def _wait(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def end_to_end(path: Path, duration: float, repeat: int) -> dict[str, list[float]]:
    up_port, proxy_port = _free_port(), _free_port()
    env = {**os.environ, "SKILLPROXY_ADMIN__TOKEN": "bench"}
    procs = [
        subprocess.Popen([sys.executable, str(ROOT / "bench/upstream.py"), "--port", str(up_port)]),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "skillproxy",
                "serve",
                "--port",
                str(proxy_port),
                "--db",
                str(path),
                "--upstream",
                f"http://127.0.0.1:{up_port}/v1",
            ],
            cwd=ROOT,
            env=env,
            stderr=subprocess.DEVNULL,
        ),
    ]
    results: dict[str, list[float]] = {"big": [], "none": []}
    try:
        _wait(f"http://127.0.0.1:{proxy_port}/healthz")
        for _ in range(repeat):
            for book in ("big", "none"):
                url = f"http://127.0.0.1:{proxy_port}/sb/{book}/v1/chat/completions"
                out = subprocess.run(
                    [
                        sys.executable,
                        str(ROOT / "bench/loadgen.py"),
                        "--url",
                        url,
                        "--concurrency",
                        "1",
                        "--duration",
                        str(duration),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                results[book].append(json.loads(out.strip().splitlines()[-1])["p50_ms"])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "injection.db"
        build_skillbook(path)
        print("## Injection cost, 200 active skills (budget 800 tokens)\n")
        print("| ranking | per request with skills µs | without µs | added µs | skills | tokens |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for ranking in ("usefulness", "relevance"):
            cost = per_request_cost(path, ranking)
            print(
                f"| {ranking} | {cost['big']:.1f} | {cost['none']:.1f} | "
                f"{cost['big'] - cost['none']:.1f} | {cost['skills_injected']:.0f} | "
                f"{cost['skill_tokens']:.0f} |"
            )
        e2e = end_to_end(path, args.duration, args.repeat)
        big, none = statistics.median(e2e["big"]), statistics.median(e2e["none"])
        added = big - none
        print(
            f"\nend to end, 1 client, p50 ms: 200 skills {big:.3f} "
            f"({min(e2e['big']):.3f}..{max(e2e['big']):.3f}), no skillbook {none:.3f} "
            f"({min(e2e['none']):.3f}..{max(e2e['none']):.3f})"
        )
        verdict = "PASS" if added <= TARGET_ADDED_P50_MS else "MISS"
        print(f"{verdict}  added p50 {added:+.3f} ms (target <= {TARGET_ADDED_P50_MS} ms)")


if __name__ == "__main__":
    main()
