"""Token counting with tiktoken, offline.

tiktoken normally downloads its BPE files. litellm's wheel ships `cl100k_base` and
`o200k_base`; we point `TIKTOKEN_CACHE_DIR` at that folder (found without importing litellm,
which would cost the proxy a second of start-up) unless the user already set a cache dir.
Claude and other non-OpenAI models have no public tokenizer here; `cl100k_base` stands in,
which is close enough for a budget.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import tiktoken

O200K_PREFIXES = (
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "o1",
    "o3",
    "o4",
    "chatgpt-4o",
    "gpt-oss",
)
ENCODINGS = ("cl100k_base", "o200k_base")


def _point_tiktoken_at_bundled_files() -> None:
    if os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR"):
        return
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    if folder.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)


_point_tiktoken_at_bundled_files()


@lru_cache(maxsize=1024)
def encoding_name_for_model(model: str | None) -> str:
    """Asked on every request; model names repeat, so the answer is cached."""
    name = (model or "").lower().rsplit("/", 1)[-1]
    return "o200k_base" if name.startswith(O200K_PREFIXES) else "cl100k_base"


@lru_cache(maxsize=len(ENCODINGS))
def get_encoding(name: str) -> tiktoken.Encoding:
    """The encoding, without tiktoken's Python copy of its merge ranks (26 MB for o200k):
    the Rust core keeps its own, and the copy serves only pickling, which we never do."""
    encoding = tiktoken.get_encoding(name)
    encoding._mergeable_ranks = {}
    return encoding


def count_tokens(text: str, encoding: str) -> int:
    return len(get_encoding(encoding).encode(text, disallowed_special=()))
