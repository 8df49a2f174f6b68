"""core/tokens.py: offline tiktoken encodings, chosen by model family, and token counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core import tokens
from core.tokens import ENCODINGS, count_tokens, encoding_name_for_model, get_encoding


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-2024-08-06",
        "GPT-4O-Mini",
        "openai/gpt-4o",
        "azure/my-deployment/gpt-4.1-nano",
        "gpt-4.1",
        "gpt-4.5-preview",
        "gpt-5",
        "gpt-5-mini",
        "o1",
        "o1-mini",
        "o3-mini",
        "o4-mini",
        "chatgpt-4o-latest",
        "gpt-oss-120b",
    ],
)
def test_gpt_4o_and_later_use_o200k(model: str) -> None:
    assert encoding_name_for_model(model) == "o200k_base"


@pytest.mark.parametrize(
    "model",
    [
        None,
        "",
        "gpt-4",
        "gpt-4-turbo",
        "gpt-3.5-turbo",
        "text-embedding-3-small",
        "claude-3-5-sonnet-20241022",
        "anthropic/claude-sonnet-4",
        "llama-3.1-70b",
        "my-gpt-4o",  # the family is a prefix, not anywhere in the name
        "gpt-4o/custom",  # only the last path segment names the model
    ],
)
def test_everything_else_uses_cl100k(model: str | None) -> None:
    assert encoding_name_for_model(model) == "cl100k_base"


def test_every_chosen_encoding_is_one_that_ships() -> None:
    assert {encoding_name_for_model(m) for m in ("gpt-4o", "gpt-4", None)} <= set(ENCODINGS)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_counts_known_texts(encoding: str) -> None:
    assert count_tokens("", encoding) == 0
    assert count_tokens("hello world", encoding) == 2
    assert count_tokens("hello world " * 50, encoding) > count_tokens("hello world", encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_special_token_text_is_counted_as_ordinary_text(encoding: str) -> None:
    # A client's prompt may contain "<|endoftext|>"; counting it must neither raise nor
    # treat it as the one special token.
    assert count_tokens("<|endoftext|>", encoding) > 1
    assert count_tokens("say <|endoftext|> then <|fim_prefix|>", encoding) > 4


def test_the_two_encodings_differ() -> None:
    text = "日本語のテキストを数えます。" * 20
    assert count_tokens(text, "o200k_base") != count_tokens(text, "cl100k_base")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encodings_are_cached_and_still_round_trip_without_their_python_ranks(
    encoding: str,
) -> None:
    first = get_encoding(encoding)
    assert get_encoding(encoding) is first
    assert first.name == encoding
    text = "Ünïcödé — 日本語 🎉 def f(x): return x**2"
    assert first.decode(first.encode(text)) == text


def test_unknown_encodings_are_refused() -> None:
    with pytest.raises(ValueError):
        get_encoding("no_such_encoding")


def test_the_bundled_files_are_found_offline() -> None:
    folder = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    assert folder and Path(folder).is_dir()


def test_a_cache_dir_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/somewhere/else")
    tokens._point_tiktoken_at_bundled_files()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == "/somewhere/else"
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", "/data/gym")
    tokens._point_tiktoken_at_bundled_files()
    assert "TIKTOKEN_CACHE_DIR" not in os.environ


def test_without_a_cache_dir_the_bundled_folder_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    tokens._point_tiktoken_at_bundled_files()
    folder = Path(os.environ["TIKTOKEN_CACHE_DIR"])
    assert folder.is_dir()
    assert folder.parts[-2:] == ("litellm_core_utils", "tokenizers")
