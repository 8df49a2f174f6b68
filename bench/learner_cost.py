"""What the learner's model calls cost per reflected episode as the skillbook grows.

The reflector's prompt holds the episode and the skills that were injected in it, and injection
is capped by the token budget, so a skillbook of 200 skills should cost no more per episode than
one of 50. This builds skillbooks of 0, 50 and 200 active skills, writes the same synthetic
three-turn conversations for each (with the skills each one would have had injected), and runs
the real learner (litellm over HTTP) against a fake model on loopback that answers instantly with
a valid reflection and counts the prompt's tokens with tiktoken, as a provider would.

    .venv/bin/python bench/learner_cost.py [--episodes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import load_config  # noqa: E402
from core.tokens import count_tokens  # noqa: E402
from learner.service import learn_once  # noqa: E402
from proxy.skillbook_cache import prepare  # noqa: E402
from store import TRACE_COLUMNS, open_store  # noqa: E402

SIZES = (0, 50, 200)
REFLECTION = json.dumps(
    {
        "what_happened": "The agent asked for details before checking eligibility.",
        "what_went_wrong": "The return window had passed.",
        "root_cause": "Eligibility was not checked first.",
        "key_insight": "Check the return window first.",
        "skill_tags": [],
        "new_skill": None,
    }
)


def fake_model() -> tuple[Callable[[], None], str]:
    """An OpenAI-compatible chat endpoint that answers at once and counts prompt tokens."""

    async def complete(request: web.Request) -> web.Response:
        body = await request.json()
        prompt = sum(count_tokens(m["content"], "cl100k_base") for m in body["messages"])
        completion = count_tokens(REFLECTION, "cl100k_base")
        return web.json_response(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": REFLECTION},
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()
    port: list[int] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port.append(runner.addresses[0][1])
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return stop, f"http://127.0.0.1:{port[0]}/v1"


def build(db_path: Path, episodes: int) -> None:
    store = open_store(str(db_path))
    store.migrate()
    past = time.time() - 3600
    for size in SIZES:
        book = f"book-{size}"
        for i in range(size):
            topic = ("returns", "billing", "shipping", "tone")[i % 4]
            created = store.skills.create(
                book,
                topic,
                f"When a customer raises {topic} case {i}, confirm the order first and explain "
                f"step {i % 7 + 1} of the {topic} policy before offering anything.",
                actor="bench",
            )
            store.skills.transition(created.id, "approve", actor="bench")
        defaults = load_config(environ={}).skillbook
        section = (
            prepare(store, book, defaults, ["cl100k_base"]).static["cl100k_base"] if size else None
        )
        injected = list(section.skill_ids) if section else []
        rows = []
        for e in range(episodes):
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": "You are a support agent for an online shop."},
                {"role": "user", "content": f"I want to return my shoes from order {e}."},
            ]
            answers = ["Sure, what is your shipping address?", "Sorry, the window has closed."]
            for turn, answer in enumerate(answers):
                request = {"model": "gpt-4", "messages": list(messages)}
                response = {
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": answer},
                        }
                    ]
                }
                rows.append(
                    {
                        "id": f"tr_{book}_{e}_{turn}",
                        "created_at": past + e + turn / 10,
                        "skillbook": book,
                        "format": "chat",
                        "method": "POST",
                        "path": "/v1/chat/completions",
                        "model": "gpt-4",
                        "stream": 0,
                        "status": 200,
                        "client_disconnected": 0,
                        "injected_skill_ids": json.dumps(injected),
                        "request_json": json.dumps(request),
                        "response_json": json.dumps(response),
                    }
                )
                messages += [
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": "It arrived 60 days ago."},
                ]
        store.traces.insert_values([tuple(map(row.get, TRACE_COLUMNS)) for row in rows])
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 episodes per skillbook")
    args = parser.parse_args()
    stop, api_base = fake_model()
    try:
        per_episode = report(api_base, 5 if args.quick else args.episodes)
    finally:
        stop()
    print(
        "learner input tokens per reflected episode: "
        + ", ".join(f"{tokens:.0f} with {size} active skills" for size, tokens in per_episode)
        + " (the token budget caps what is injected, so the cost stays flat)"
    )


def report(api_base: str, episodes: int) -> list[tuple[int, float]]:
    """Print a table; return (skills in the skillbook, input tokens per episode) pairs."""
    per_episode: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "learner.db"
        build(db_path, episodes)
        config = load_config(
            environ={},
            overrides={
                "store": {"url": str(db_path)},
                "learner": {
                    "model": "openai/bench-model",
                    "api_base": api_base,
                    "settle_s": 0,
                    "episode_idle_s": 0,
                    "max_episodes_per_run": 1000,
                },
            },
        )
        print(
            "| active skills | injected per request | episodes reflected | "
            "input tokens / episode | output tokens / episode |"
        )
        print("| ---: | ---: | ---: | ---: | ---: |")
        for size in SIZES:
            [run] = learn_once(config, skillbook=f"book-{size}")
            n = max(run.reflections, 1)
            store = open_store(str(db_path))
            [trace] = store.traces.newest(skillbook=f"book-{size}", limit=1)
            injected = len(trace.injected_skill_ids)
            store.close()
            print(
                f"| {size} | {injected} | {run.reflections} | {run.input_tokens / n:.0f} | "
                f"{run.output_tokens / n:.0f} |"
            )
            per_episode.append((size, run.input_tokens / n))
    return per_episode


if __name__ == "__main__":
    main()
