"""Closed-loop load generator: C workers each post a request, read it to the end, repeat.

`--format` picks the wire format of the body and headers: `chat` (Chat Completions, the
default), `messages` (Anthropic Messages, sent with `x-api-key`) or `responses` (OpenAI
Responses); `PATHS` maps each to its path after the base URL.

Runs in its own process so its CPU is not charged to the proxy's event loop. Requests started
during the warm-up are not counted; a request counts when it starts inside the measured window,
and no request starts after it. With `--requests N` it instead sends exactly N requests (no
warm-up, no time window) and counts them all. Prints one JSON line; `all_requests` counts every
request finished, warm-up included, for per-request CPU figures.

    python bench/loadgen.py --url http://127.0.0.1:9002/v1/chat/completions -c 32 -d 5 --stream
    python bench/loadgen.py --url http://127.0.0.1:9002/v1/chat/completions -c 32 --requests 10000
    python bench/loadgen.py --url http://127.0.0.1:9002/v1/messages --format messages --stream
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
MAX_COUNT_MODE_S = 900.0
FORMATS = ("chat", "messages", "responses")
PATHS = {
    "chat": "/v1/chat/completions",
    "messages": "/v1/messages",
    "responses": "/v1/responses",
}
SYSTEM = (
    "You are a careful support assistant for an online "
    "bookshop. Answer briefly and cite the order number when one is given."
)
USER = (
    "Hi, my order #48213 has not arrived yet. It was due last Tuesday. Can you check where it is?"
)


def chat_body(stream: bool) -> bytes:
    """A realistic small agent turn (~300 bytes): a system prompt and one user message."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER},
        ],
        "temperature": 0.2,
        "max_tokens": 256,
        "stream": stream,
    }
    return json.dumps(body).encode()


def request_body(fmt: str, stream: bool, model: str | None = None) -> bytes:
    """The same turn in `fmt`: Messages puts the system prompt in `system` and needs
    `max_tokens`; Responses has `instructions` and `input` items. `model` replaces the model
    name (TensorZero wants `tensorzero::model_name::...`)."""
    if model is not None:
        named: dict[str, object] = json.loads(request_body(fmt, stream))
        return json.dumps({**named, "model": model}).encode()
    if fmt == "chat":
        return chat_body(stream)
    if fmt == "messages":
        body: dict[str, object] = {
            "model": "claude-sonnet-4-5",
            "system": SYSTEM,
            "messages": [{"role": "user", "content": USER}],
            "max_tokens": 256,
            "temperature": 0.2,
            "stream": stream,
        }
    elif fmt == "responses":
        body = {
            "model": "gpt-4o-mini",
            "instructions": SYSTEM,
            "input": [{"role": "user", "content": USER}],
            "max_output_tokens": 256,
            "temperature": 0.2,
            "stream": stream,
        }
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return json.dumps(body).encode()


def request_headers(fmt: str, api_key: str) -> dict[str, str]:
    if fmt == "messages":
        return {
            "Content-Type": "application/json",
            "x-api-key": api_key,
            "anthropic-version": "2023-06-01",
        }
    return {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    last_finish: float = 0.0
    finished: int = 0
    tickets: int | None = None  # count mode: requests still to start

    def take(self, now: float, stop_at: float) -> bool:
        """May a worker start one more request now?"""
        if self.tickets is None:
            return now < stop_at
        if self.tickets <= 0 or now >= stop_at:
            return False
        self.tickets -= 1
        return True


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
    headers: dict[str, str],
) -> None:
    while stats.take(start := time.perf_counter(), stop_at):
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
        stats.finished += 1
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
    url: str,
    concurrency: int,
    duration: float,
    warmup: float,
    stream: bool,
    requests: int | None = None,
    api_key: str = "sk-bench",
    fmt: str = "chat",
    model: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, object]:
    stats = Stats(tickets=requests)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if requests is not None:  # count mode: everything counts, bounded in time all the same
            warmup, duration = 0.0, MAX_COUNT_MODE_S
        measure_from = time.perf_counter() + warmup
        stop_at = measure_from + duration
        body = request_body(fmt, stream, model)
        headers = {**request_headers(fmt, api_key), **(extra_headers or {})}
        await asyncio.gather(
            *(
                worker(session, url, body, measure_from, stop_at, stats, headers)
                for _ in range(concurrency)
            )
        )
    elapsed = max(stats.last_finish - measure_from, 1e-9)
    report: dict[str, object] = {
        "requests": len(stats.latencies),
        "all_requests": stats.finished,
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
    parser.add_argument(
        "--format", choices=FORMATS, default="chat", help="wire format of the body (default chat)"
    )
    parser.add_argument(
        "-n", "--requests", type=int, help="count mode: send exactly N requests, then stop"
    )
    parser.add_argument("--api-key", default="sk-bench", help="sent as a bearer token")
    parser.add_argument("--model", help="model name to send instead of the format's default")
    parser.add_argument(
        "--header", action="append", default=[], help="extra request header 'Name: value'"
    )
    args = parser.parse_args()
    if any(":" not in h for h in args.header):
        parser.error("--header must be 'Name: value'")
    extra = {name.strip(): value.strip() for name, value in (h.split(":", 1) for h in args.header)}
    if not (0 < args.concurrency <= 1024 and 0 < args.duration <= 600 and args.warmup <= 60):
        parser.error("concurrency must be 1..1024, duration 0..600 s, warmup <= 60 s")
    if args.requests is not None and not 0 < args.requests <= 10_000_000:
        parser.error("--requests must be 1..10000000")
    report = asyncio.run(
        run(
            args.url,
            args.concurrency,
            args.duration,
            args.warmup,
            args.stream,
            args.requests,
            args.api_key,
            args.format,
            args.model,
            extra,
        )
    )
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
