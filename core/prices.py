"""What an exchange cost in USD, from the prices litellm publishes, without importing litellm.

litellm's wheel ships its price table as JSON (`model_prices_and_context_window_backup.json`);
importing litellm itself takes seconds and hundreds of MB, which the proxy and its trace sink
must never pay (docs/design.md, "Few dependencies"). So the file is found with
`importlib.util.find_spec`, which locates the package without executing it, and read once, on
the first price asked for, into a table of just the rates used here. Without litellm
installed every cost is unknown.

A cost is never a guess: an unknown model, or a count of tokens that is missing, answers None.
A name is resolved as litellm resolves the common cases: the exact key (dated snapshots such
as `gpt-4o-2024-08-06` are keys of their own), its lower case, then without a provider prefix
when the entry found belongs to that provider (`openai/gpt-4o-mini` is `gpt-4o-mini`; a
`together_ai/` prefix does not borrow OpenAI's price). Tiered prices
(`input_cost_per_token_above_200k_tokens`) apply to the whole request once its input passes
the tier, as litellm applies them.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PRICE_FILE = "model_prices_and_context_window_backup.json"
TIER = re.compile(r"input_cost_per_token_above_(\d+)k_tokens")


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token; the cache rates are None where the table gives none."""

    provider: str
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    tiers: tuple[tuple[int, Rates], ...] = ()
    """(threshold in input tokens, the rates above it), highest threshold first."""

    def above(self, input_tokens: int) -> Rates:
        """The rates that apply to a request of `input_tokens`."""
        for threshold, rates in self.tiers:
            if input_tokens > threshold:
                return rates
        return self


def cost_usd(
    model: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> float | None:
    """The exchange's cost, or None when the model's price or a token count is unknown.

    `input_tokens` counts every prompt token, as the traces do (OpenAI's `prompt_tokens`;
    Anthropic's input plus cache reads and writes); `cached_input_tokens` and
    `cache_write_tokens` are the parts of it read from and written to the provider's cache,
    priced at the cache rates when the table has them."""
    rates = rates_for(model)
    if rates is None or not _count(input_tokens) or not _count(output_tokens):
        return None
    assert input_tokens is not None and output_tokens is not None  # checked just above
    rates = rates.above(input_tokens)
    read = cached_input_tokens if rates.cache_read is not None else 0
    write = cache_write_tokens if rates.cache_write is not None else 0
    plain = max(input_tokens - read - write, 0)
    total = plain * rates.input + output_tokens * rates.output
    total += read * (rates.cache_read or 0.0) + write * (rates.cache_write or 0.0)
    return round(total, 10)


def rates_for(model: str | None) -> Rates | None:
    """The rates of `model` as litellm would find them; None when it is not in the table."""
    if not model:
        return None
    table = price_table()
    found = table.get(model) or table.get(model.lower())
    if found is not None:
        return found
    provider, _, bare = model.partition("/")
    if not bare:
        return None
    found = table.get(bare) or table.get(bare.lower())
    return found if found is not None and found.provider == provider.lower() else None


@cache
def price_table() -> dict[str, Rates]:
    """Every priced model in litellm's bundled table (read once per process); empty without
    litellm."""
    path = price_file()
    if path is None:
        return {}
    entries: dict[str, Any] = json.loads(path.read_bytes())
    table = {}
    for name, entry in entries.items():
        rates = _rates(entry) if isinstance(entry, dict) else None
        if rates is not None:
            table[name] = rates
    return table


def price_file() -> Path | None:
    """Where litellm's wheel keeps the table, found without running litellm's `__init__`."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / PRICE_FILE
        if candidate.is_file():
            return candidate
    return None


def _rates(entry: dict[str, Any], suffix: str = "") -> Rates | None:
    """The rates an entry gives (those `_above_Nk_tokens` when `suffix` names a tier)."""
    provider = entry.get("litellm_provider")
    input_rate = _rate(entry.get(f"input_cost_per_token{suffix}"))
    output_rate = _rate(entry.get(f"output_cost_per_token{suffix}"))
    if not isinstance(provider, str) or input_rate is None or output_rate is None:
        return None
    read, write = (_rate(entry.get(f"cache_{kind}_input_token_cost{suffix}")) for kind in _CACHE)
    tiers = () if suffix else _tiers(entry)
    return Rates(provider.lower(), input_rate, output_rate, read, write, tiers)


_CACHE = ("read", "creation")


def _tiers(entry: dict[str, Any]) -> tuple[tuple[int, Rates], ...]:
    thresholds = sorted(
        (int(m.group(1)) for key in entry if (m := TIER.fullmatch(key))), reverse=True
    )
    tiers = []
    for thousands in thresholds:
        above = _rates(entry, f"_above_{thousands}k_tokens")
        if above is not None:
            tiers.append((thousands * 1000, above))
    return tuple(tiers)


def _rate(value: Any) -> float | None:
    """A price as the table gives it, or None for one missing or not a price."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
