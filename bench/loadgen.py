"""Closed-loop load generator: C workers each post a chat request, read it to the end, repeat.

Runs in its own process so its CPU is not charged to the proxy's event loop. Requests started
during the warm-up are not counted; a request counts when it starts inside the measured window,
and no request starts after it. Prints one JSON line.

    python bench/loadgen.py --url http://127.0.0.1:9002/v1/chat/completions -c 32 -d 5 --stream
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from dataclasses import dataclass, field

import aiohttp

REQUEST_TIMEOUT_S = 30.0
ERROR_BACKOFF_S = 0.01


def chat_body(stream: bool) -> bytes:
    """A realistic small agent turn (~300 bytes): a system prompt and one user message."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "system",
                "content": "You are a careful support assistant for an online "
                "bookshop. Answer briefly and cite the order number when one is given.",
            },
            {
                "role": "user",
                "content": "Hi, my order #48213 has not arrived yet. It was due "
                "last Tuesday. Can you check where it is?",
            },
        ],
        "temperature": 0.2,
        "max_tokens": 256,
        "stream": stream,
    }
    return json.dumps(body).encode()


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    last_finish: float = 0.0


def percentile_ms(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] * 1000, 3)


async def worker(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    measure_from: float,
    stop_at: float,
    stats: Stats,
) -> None:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    while (start := time.perf_counter()) < stop_at:
        counted = start >= measure_from
        ttfb: float | None = None
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                async for _ in resp.content.iter_any():
                    if ttfb is None:
                        ttfb = time.perf_counter() - start
                ok = resp.status == 200
                problem = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok, problem = False, f"{type(exc).__name__}: {exc}"
        end = time.perf_counter()
        if not counted:
            continue
        stats.last_finish = max(stats.last_finish, end)
        if ok and ttfb is not None:
            stats.latencies.append(end - start)
            stats.ttfbs.append(ttfb)
        else:
            stats.errors += 1
            stats.first_error = stats.first_error or problem
            await asyncio.sleep(ERROR_BACKOFF_S)


async def run(
    url: str, concurrency: int, duration: float, warmup: float, stream: bool
) -> dict[str, object]:
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        measure_from = time.perf_counter() + warmup
        stop_at = measure_from + duration
        body = chat_body(stream)
        await asyncio.gather(
            *(worker(session, url, body, measure_from, stop_at, stats) for _ in range(concurrency))
        )
    elapsed = max(stats.last_finish - measure_from, 1e-9)
    report: dict[str, object] = {
        "requests": len(stats.latencies),
        "errors": stats.errors,
        "req_per_s": round(len(stats.latencies) / elapsed, 1),
        "p50_ms": percentile_ms(stats.latencies, 0.50),
        "p99_ms": percentile_ms(stats.latencies, 0.99),
        "ttfb_p50_ms": percentile_ms(stats.ttfbs, 0.50),
        "ttfb_p99_ms": percentile_ms(stats.ttfbs, 0.99),
    }
    if stats.first_error:
        report["first_error"] = stats.first_error
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    if not (0 < args.concurrency <= 1024 and 0 < args.duration <= 600 and args.warmup <= 60):
        parser.error("concurrency must be 1..1024, duration 0..600 s, warmup <= 60 s")
    report = asyncio.run(run(args.url, args.concurrency, args.duration, args.warmup, args.stream))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
