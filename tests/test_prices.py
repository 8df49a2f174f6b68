"""core/prices.py: costs from litellm's bundled price table, checked against the table's own
numbers, and found without importing litellm."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core import prices

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    """The JSON file itself, read here independently of the module under test."""
    path = prices.price_file()
    assert path is not None and path.name == prices.PRICE_FILE
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def by_hand(entry: dict[str, Any], input_tokens: int, output_tokens: int) -> float:
    return float(
        input_tokens * entry["input_cost_per_token"]
        + output_tokens * entry["output_cost_per_token"]
    )


@pytest.mark.parametrize(
    "model", ["gpt-4o-mini", "gpt-4o-2024-08-06", "claude-haiku-4-5-20251001", "claude-sonnet-4-5"]
)
def test_a_listed_model_costs_what_its_entry_says(table: dict[str, Any], model: str) -> None:
    expected = by_hand(table[model], 1234, 567)
    assert prices.cost_usd(model, 1234, 567) == pytest.approx(expected, rel=1e-9)


def test_gpt_4o_mini_by_hand() -> None:
    """$0.15 and $0.60 per million tokens (the table's 1.5e-07 and 6e-07)."""
    assert prices.cost_usd("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)


def test_a_provider_prefix_of_the_entrys_own_provider_is_dropped(table: dict[str, Any]) -> None:
    assert "openai/gpt-4o-mini" not in table
    assert prices.cost_usd("openai/gpt-4o-mini", 100, 10) == prices.cost_usd("gpt-4o-mini", 100, 10)
    assert prices.cost_usd("anthropic/claude-haiku-4-5", 100, 10) == pytest.approx(
        by_hand(table["claude-haiku-4-5"], 100, 10)
    )


def test_another_providers_prefix_does_not_borrow_the_price() -> None:
    assert prices.cost_usd("together_ai/gpt-4o-mini", 100, 10) is None


@pytest.mark.parametrize("model", [None, "", "m", "no-such-model-2031", "openai/no-such-model"])
def test_an_unknown_model_has_no_cost(model: str | None) -> None:
    assert prices.cost_usd(model, 100, 10) is None


@pytest.mark.parametrize("tokens", [(None, 10), (100, None), (None, None), (-1, 10)])
def test_missing_tokens_give_no_cost(tokens: tuple[int | None, int | None]) -> None:
    assert prices.cost_usd("gpt-4o-mini", *tokens) is None


def test_zero_tokens_cost_nothing() -> None:
    assert prices.cost_usd("gpt-4o-mini", 0, 0) == 0.0


def test_cache_reads_and_writes_use_the_cache_rates(table: dict[str, Any]) -> None:
    entry = table["claude-haiku-4-5-20251001"]
    expected = (
        600 * entry["input_cost_per_token"]
        + 300 * entry["cache_read_input_token_cost"]
        + 100 * entry["cache_creation_input_token_cost"]
        + 50 * entry["output_cost_per_token"]
    )
    cost = prices.cost_usd("claude-haiku-4-5-20251001", 1000, 50, 300, cache_write_tokens=100)
    assert cost == pytest.approx(expected, rel=1e-9)


def test_a_tier_applies_to_the_whole_request_past_its_threshold(table: dict[str, Any]) -> None:
    name, entry = next(
        (name, e)
        for name, e in table.items()
        if isinstance(e, dict)
        and "input_cost_per_token_above_200k_tokens" in e
        and "output_cost_per_token_above_200k_tokens" in e
        and "input_cost_per_token" in e
        and not any(k.startswith("input_cost_per_token_above_") and "200k" not in k for k in e)
    )
    over = 200_001 * entry["input_cost_per_token_above_200k_tokens"]
    over += 10 * entry["output_cost_per_token_above_200k_tokens"]
    assert prices.cost_usd(name, 200_001, 10) == pytest.approx(over, rel=1e-9)
    assert prices.cost_usd(name, 200_000, 10) == pytest.approx(by_hand(entry, 200_000, 10))


def test_without_litellm_nothing_is_priced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert prices.price_file() is None


def test_pricing_never_imports_litellm() -> None:
    """The proxy, its trace sink and the pricing itself run without loading litellm."""
    code = (
        "import sys, skillproxy.app, proxy.trace_sink\n"
        "from core import prices\n"
        "assert prices.cost_usd('gpt-4o-mini', 10, 10) is not None\n"
        "print('litellm' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
