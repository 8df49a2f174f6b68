"""Which upstream, format and skillbook a request gets."""

from __future__ import annotations

import pytest

from proxy.routing import choose_skillbook, classify, raw_tail, upstream_url


@pytest.mark.parametrize(
    ("method", "tail", "fmt", "anthropic"),
    [
        ("POST", "chat/completions", "chat", False),
        ("POST", "responses", "responses", False),
        ("POST", "messages", "messages", True),
        ("POST", "messages/count_tokens", "messages", True),
        ("POST", "messages/batches", None, True),
        ("GET", "models", None, False),
        ("GET", "responses/resp_1", None, False),
        ("POST", "embeddings", None, False),
        ("GET", "chat/completions", None, False),
        ("POST", "threads/t1/messages", None, False),
    ],
)
def test_classify(method: str, tail: str, fmt: str | None, anthropic: bool) -> None:
    route = classify(method, tail)
    assert (route.format.name if route.format else None) == fmt
    assert route.anthropic is anthropic


def test_skillbook_precedence_and_validation() -> None:
    assert choose_skillbook("a", "b", "c") == "a"
    assert choose_skillbook(None, "b", "c") == "b"
    assert choose_skillbook(None, None, "c") == "c"
    for bad in ("../x", "", "-x", "a b", "x" * 65):
        with pytest.raises(ValueError, match="invalid skillbook name"):
            choose_skillbook(bad or None, bad or None, bad)


def test_upstream_url_joins_with_or_without_v1_keeping_the_raw_path() -> None:
    assert str(upstream_url("https://api.openai.com/v1", "models")) == (
        "https://api.openai.com/v1/models"
    )
    assert str(upstream_url("https://api.anthropic.com/", "messages?beta=true")) == (
        "https://api.anthropic.com/v1/messages?beta=true"
    )
    tail = raw_tail("/sb/bot/v1/files/file%2F1/content?x=%20y")
    assert tail == "files/file%2F1/content?x=%20y"
    assert str(upstream_url("http://h/v1", tail)) == "http://h/v1/files/file%2F1/content?x=%20y"
