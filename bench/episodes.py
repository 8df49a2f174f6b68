"""Episode grouping throughput: synthetic chat traces grouped from a fresh database.

Conversations of `--turns` turns (the answers alternate between a tool call, whose result the
next request carries, and text, followed by a new user message) are interleaved in time the way
concurrent agents' traffic is, written through the store's own trace insert, then grouped with
`group_new_traces` until caught up. Only the grouping is timed. Prints one JSON line.

    python bench/episodes.py                  # 100,000 traces
    python bench/episodes.py --traces 20000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from learner.episodes import group_new_traces
from store import TRACE_COLUMNS, open_store

SYSTEM = (
    "You are a careful support agent for an online bookshop. Look orders up with the tools "
    "before answering, quote the order number, and never promise a delivery date the carrier "
    "has not confirmed. " * 3
)
WORDS = ("order", "parcel", "refund", "carrier", "address", "invoice", "delayed", "tracking")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def conversation(
    rng: random.Random, n: int, turns: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """`turns` (request, response) pairs of one conversation, each request resending the last."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Conversation {n}: {_text(rng, 30)}"},
    ]
    out = []
    for turn in range(turns):
        request = {"model": "gpt-4o-mini", "messages": list(messages), "temperature": 0.2}
        if turn % 2 == 0:
            arguments = json.dumps({"order_id": f"{n}-{turn}", "fields": ["status", "carrier"]})
            call = {"id": f"call_{n}_{turn}", "type": "function",
                    "function": {"name": "lookup_order", "arguments": arguments}}  # fmt: skip
            answer: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            after = [{"role": "tool", "tool_call_id": call["id"], "content": _text(rng, 60)}]
        else:
            answer = {"role": "assistant", "content": _text(rng, 80)}
            after = [{"role": "user", "content": _text(rng, 25)}]
        choice = {"index": 0, "message": answer, "finish_reason": "stop"}
        response = {"id": f"chatcmpl-{n}-{turn}", "object": "chat.completion", "choices": [choice],
                    "usage": {"prompt_tokens": 500, "completion_tokens": 80}}  # fmt: skip
        out.append((request, response))
        messages += [answer, *after]
    return out


def build_rows(traces: int, turns: int, concurrent: int, seed: int) -> list[dict[str, Any]]:
    """Conversations started in waves of `concurrent`, their turns interleaved in time."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for wave in range(0, traces // turns, concurrent):
        convs = [
            conversation(rng, n, turns)
            for n in range(wave, min(wave + concurrent, traces // turns))
        ]
        for turn in range(turns):
            for n, conv in enumerate(convs):
                request, response = conv[turn]
                rows.append({
                    "id": f"tr_{len(rows):09d}", "created_at": 1_000_000.0 + len(rows) * 0.01,
                    "skillbook": "bench", "format": "chat", "method": "POST",
                    "path": "/v1/chat/completions", "model": "gpt-4o-mini", "stream": 0,
                    "status": 200, "client_disconnected": 0, "session_id": None,
                    "injected_skill_ids": json.dumps([f"sk_{n % 7}"]),
                    "request_json": json.dumps(request), "response_json": json.dumps(response),
                })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=200, help="conversations at once")
    parser.add_argument("--batch", type=int, default=5000, help="group_new_traces limit")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "bench.db"))
        store.migrate()
        rows = build_rows(args.traces, args.turns, args.concurrent, args.seed)
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            store.traces.insert_values([tuple(map(r.get, TRACE_COLUMNS)) for r in chunk])
        body_mb = sum(len(r["request_json"]) + len(r["response_json"]) for r in rows) / 1e6

        started = time.perf_counter()
        grouped = episodes = calls = 0
        while True:
            result = group_new_traces(store, limit=args.batch, settle_s=0)
            calls += 1
            grouped += result.grouped
            episodes += result.new_episodes
            if result.traces_seen < args.batch:
                break
        seconds = time.perf_counter() - started

        expected = len(rows) // args.turns
        report = {
            "traces": len(rows),
            "body_mb": round(body_mb, 1),
            "grouped": grouped,
            "episodes": episodes,
            "episodes_expected": expected,
            "calls": calls,
            "seconds": round(seconds, 2),
            "traces_per_s": round(grouped / seconds),
            "episodes_per_s": round(episodes / seconds),
        }
        store.close()
    print(json.dumps(report), flush=True)
    if episodes != expected or grouped != len(rows):
        sys.exit("grouping went wrong: see episodes and grouped against the expected counts")


if __name__ == "__main__":
    main()
