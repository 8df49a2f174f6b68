"""The placebo arm's skills: as many as were learned, about as many tokens, plausible, and about
another domain, so they cannot fix this domain's failures.

Without this arm a better score for `learned` cannot be told apart from "the system prompt got
longer". The sentences come from the other τ² domain's policy (real policy prose, so they read
like rules an agent should follow), picked deterministically so a resumed run or a rerun with
the same seed gets the same placebo.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.tokens import count_tokens

ENCODING = "o200k_base"
MIN_WORDS, MAX_WORDS = 8, 60
SHARED_OVERLAP = 0.4
"""A sentence sharing this much of its words with one of the evaluated domain's own policy
sentences is a rule of that domain too (confirm before writing, one tool call at a time...):
a placebo made of it could help for real, so it is left out."""
OTHER_DOMAIN = {"airline": "retail", "retail": "airline"}


@dataclass(frozen=True)
class Placebo:
    texts: tuple[str, ...]
    tokens: int
    target_tokens: int
    source: str


def policy_sentences(policy: str) -> list[str]:
    """Rule-like lines of a policy: paragraphs and bullets of a sensible length, markdown
    emphasis removed; headings and fragments dropped."""
    found = []
    for raw in policy.splitlines():
        line = re.sub(r"^[-*\d. ]+", "", raw.strip()).strip()  # bullets and numbering
        if not line or raw.lstrip().startswith("#"):
            continue
        line = re.sub(r"\*\*|__|`", "", line)
        if MIN_WORDS <= len(line.split()) <= MAX_WORDS and line.endswith((".", ":")):
            found.append(line.rstrip(":") + ("" if line.endswith(".") else "."))
    return list(dict.fromkeys(found))


def _words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3)


def foreign(sentences: Sequence[str], own_policy: str) -> list[str]:
    """The sentences that are not, in other words, also a rule of `own_policy`."""
    own = [_words(s) for s in policy_sentences(own_policy)]

    def shared(words: frozenset[str]) -> bool:
        return any(len(words & o) / max(len(words | o), 1) >= SHARED_OVERLAP for o in own)

    return [s for s in sentences if not shared(_words(s))]


def choose(
    sentences: Sequence[str], count: int, target_tokens: int, seed: int, source: str = ""
) -> Placebo:
    """`count` sentences whose tokens add up close to `target_tokens`: each slot takes the
    unused candidate nearest the tokens still wanted per slot, candidates in a seeded order."""
    if count > len(sentences):
        raise ValueError(f"the placebo needs {count} sentences; {source} has {len(sentences)}")
    order = sorted(sentences, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    sizes = {s: count_tokens(s, ENCODING) for s in order}
    chosen: list[str] = []
    left = target_tokens
    for slot in range(count):
        want = left / (count - slot)
        pick = min((s for s in order if s not in chosen), key=lambda s: abs(sizes[s] - want))
        chosen.append(pick)
        left -= sizes[pick]
    return Placebo(tuple(chosen), sum(sizes[s] for s in chosen), target_tokens, source)


def placebo_for(domain: str, policy_path: Path, learned: Sequence[str], seed: int) -> Placebo:
    """The placebo matching `learned` (their count and tokens) for `domain`, whose policy is at
    `policy_path`; τ² keeps every domain's folder side by side."""
    other = OTHER_DOMAIN[domain]
    theirs = policy_sentences((policy_path.parent.parent / other / "policy.md").read_text())
    sentences = foreign(theirs, policy_path.read_text())
    target = sum(count_tokens(t, ENCODING) for t in learned)
    return choose(sentences, len(learned), target, seed, source=f"the {other} policy")
