"""The rules of canary rollouts every store engine checks alike: shares, rule values, defaults.

A share is a percent of sessions strictly between 0 and 100, kept to hundredths (the bucket
grain: `BUCKETS` buckets, one per hundredth of a percent). `None` for a rule means its
default, `DEFAULTS`; the defaults never act on their own: a verdict is only recorded
(`notify`) until a person sets `on_win: promote` or `on_loss: withdraw`.
"""

from __future__ import annotations

import math
from typing import Any

from store.errors import InvalidContent
from store.records import CanaryRules

BUCKETS = 10_000
"""Sessions hash into this many buckets; a share of s percent owns s * 100 of them."""
RULES = ("share", "assignment", "min_sessions", "on_win", "on_loss", "alpha")
ASSIGNMENTS = ("disjoint", "independent")
ON_WIN = ("promote", "notify")
ON_LOSS = ("withdraw", "notify")
DEFAULTS = CanaryRules(
    share=None, assignment="disjoint", min_sessions=50, on_win="notify", on_loss="notify",
    alpha=0.05,
)  # fmt: skip
MAX_RUNNING = 8
"""Canaries running at once in one skillbook: each adds rendered sections to the cache."""
MAX_INDEPENDENT = 3
"""Independent canaries combine freely, 2**n sections for n of them: kept few."""


def check_share(share: Any) -> float:
    """`share` as a percent in (0, 100) once rounded to hundredths; `InvalidContent`
    otherwise (99.999 would be 100%: no control left)."""
    if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share):
        raise InvalidContent(f"share must be a percent of sessions, a number, got {share!r}")
    kept = round(float(share), 2)  # what is kept is what is checked
    if not 0 < kept < 100:
        raise InvalidContent(
            f"share must be between 0 and 100 percent (both excluded), to hundredths of a "
            f"percent, got {share:g}"
        )
    return kept


def buckets_for(share: float) -> int:
    return round(share * BUCKETS / 100)


def check_rules(changes: dict[str, Any]) -> None:
    unknown = set(changes) - set(RULES)
    if unknown:
        raise InvalidContent(f"unknown canary rule(s): {', '.join(sorted(unknown))}")
    if changes.get("share") is not None:
        check_share(changes["share"])
    _one_of(changes, "assignment", ASSIGNMENTS)
    _one_of(changes, "on_win", ON_WIN)
    _one_of(changes, "on_loss", ON_LOSS)
    least = changes.get("min_sessions")
    if least is not None and (type(least) is not int or not 1 <= least <= 1_000_000):
        raise InvalidContent("min_sessions must be a whole number from 1 to 1000000, or null")
    alpha = changes.get("alpha")
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 0.2
    ):
        raise InvalidContent("alpha must be a number above 0 and at most 0.2, or null")


def effective(rules: CanaryRules) -> CanaryRules:
    """`rules` with each unset one at its default."""
    values = {key: getattr(rules, key) for key in RULES}
    return CanaryRules(**{k: getattr(DEFAULTS, k) if v is None else v for k, v in values.items()})


def _one_of(changes: dict[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    value = changes.get(key)
    if value is not None and value not in allowed:
        raise InvalidContent(f"{key} must be one of {', '.join(allowed)}, or null")
