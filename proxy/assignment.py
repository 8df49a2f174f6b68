"""Which canary arm a session is in: a stable hash of the session, a few integer compares.

A canary owns a range of buckets `[low, high)` out of `BUCKETS`, fixed when it starts
(`store.sqlite.canaries`). Disjoint canaries share one hash of (skillbook, session), so their
ranges, which never overlap, put each session in at most one treatment; an independent one
hashes (skillbook, its skill id, session), so its draws are independent of every other's. The
same session key always lands in the same bucket, in every process and after restarts
(BLAKE2b, no per-process salt), so a conversation never flips arm mid-way and each arm's bytes
stay the same for the provider's prompt cache. A request with no key is in no treatment.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from itertools import combinations

from store.canary_rules import BUCKETS

NO_CANARY: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Slot:
    """A running canary as the hot path sees it."""

    skill_id: str
    independent: bool
    low: int
    high: int


def bucket(skillbook: str, salt: str, key: str) -> int:
    digest = blake2b(f"{skillbook}\0{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def arm_of(skillbook: str, slots: tuple[Slot, ...], key: str | None) -> frozenset[str]:
    """The canary skill ids whose treatment the session `key` is in."""
    if key is None or not slots:
        return NO_CANARY
    shared: int | None = None
    chosen: list[str] = []
    for slot in slots:
        if slot.independent:
            drawn = bucket(skillbook, slot.skill_id, key)
        else:
            if shared is None:
                shared = bucket(skillbook, "", key)
            drawn = shared
        if slot.low <= drawn < slot.high:
            chosen.append(slot.skill_id)
    return frozenset(chosen) if chosen else NO_CANARY


def possible_arms(slots: tuple[Slot, ...]) -> list[frozenset[str]]:
    """Every arm a session can be in, control (empty) first: one disjoint canary or none,
    with any subset of the independent ones (k disjoint, n independent: (k + 1) * 2**n)."""
    disjoint = [s.skill_id for s in slots if not s.independent]
    independent = [s.skill_id for s in slots if s.independent]
    subsets = [
        frozenset(combo) for size in range(len(independent) + 1)
        for combo in combinations(independent, size)
    ]  # fmt: skip
    arms = list(subsets)
    arms += [subset | {one} for one in disjoint for subset in subsets]
    return arms
