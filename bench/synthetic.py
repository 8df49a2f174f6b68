"""Synthetic trace rows shaped like real ones: a short agent turn and its answer, several
skillbooks, time-ordered ids, a few kilobytes at most. Bodies are drawn from a small set of
variants built once, so generating a million rows costs little more than inserting them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from store import TRACE_COLUMNS

SKILLBOOKS = ("bench", "support-bot", "coding-agent", "sales", "ops")
START = 1_760_000_000.0  # a fixed epoch, so runs are comparable
SPACING_S = 2.5  # one trace every 2.5 s: a million span about a month
VARIANTS = 32


def _request(i: int) -> str:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "system",
                "content": "You are a careful support assistant for an online bookshop. "
                "Answer briefly and cite the order number when one is given.",
            },
            {
                "role": "user",
                "content": f"Hi, my order #{48213 + i * 7919} has not arrived yet. It was "
                f"due {i % 9 + 1} days ago. Can you check where it is?",
            },
        ],
        "temperature": 0.2,
        "max_tokens": 256,
        "stream": i % 2 == 0,
    }
    return json.dumps(body)


def _response(i: int) -> str:
    body = {
        "id": f"chatcmpl-{i:08x}",
        "object": "chat.completion",
        "created": 1700000000 + i,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": f"I checked order #{48213 + i * 7919}: the parcel left our "
                    "warehouse and the carrier expects to deliver it tomorrow.",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 61 + i % 5, "completion_tokens": 24, "total_tokens": 85},
    }
    return json.dumps(body)


REQUESTS = [_request(i) for i in range(VARIANTS)]
RESPONSES = [_response(i) for i in range(VARIANTS)]
SKILL_IDS = json.dumps([f"sk_{k:06x}" for k in range(8)])


def row(n: int) -> dict[str, Any]:
    v = n % VARIANTS
    return {
        "id": f"tr_{n:012x}bench0{n & 0xFFFFFFFF:08x}",
        "created_at": START + n * SPACING_S,
        "skillbook": SKILLBOOKS[n % len(SKILLBOOKS)],
        "format": "chat",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": "gpt-4o-mini",
        "stream": v % 2,
        "status": 200,
        "latency_ms": 800.0 + v * 13.7,
        "ttfb_ms": 210.0 + v * 3.1,
        "input_tokens": 61 + v % 5,
        "output_tokens": 24,
        "key_fingerprint": f"fp_{v:012x}",
        "error": None,
        "client_disconnected": 0,
        "session_id": f"sess-{n // 6:09d}",
        "episode_id": None,
        "skillbook_version": 3,
        "injected_skill_ids": SKILL_IDS,
        "skill_tokens": 412,
        "request_json": REQUESTS[v],
        "response_json": RESPONSES[v],
    }


def batches(total: int, size: int, first: int = 0) -> Iterator[list[dict[str, Any]]]:
    for start in range(first, first + total, size):
        yield [row(n) for n in range(start, min(start + size, first + total))]


def created_at(n: int) -> float:
    return START + n * SPACING_S


def values(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows as the store takes them: tuples in `TRACE_COLUMNS` order (what the sink builds)."""
    return [tuple(map(row.get, TRACE_COLUMNS)) for row in rows]
