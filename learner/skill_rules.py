"""What a learned skill must look like, and when two skills say the same thing.

Rules: one trigger and one imperative action on one line ("When X, do Y."), within the store's
length cap, and nothing aimed at the proxy or the model's instructions themselves (trace content
is untrusted: a conversation must not be able to talk the learner into a skill such as "ignore
previous instructions"). Similarity is offline and model-free: the mean of word and character
trigram cosine similarity, good enough to catch the same lesson worded a little differently.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from store.rules import MAX_CONTENT_CHARS, check_content

TRIGGERS = ("when", "if", "before", "after", "whenever", "once", "while", "for", "on", "unless")
FORBIDDEN = re.compile(
    r"skillproxy|skill ?book|\bproxy\b|system prompt|previous instructions|ignore (all|any|the)|"
    r"disregard|jailbreak|api[ _-]?key|password|secret",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9']+")


class RuleViolation(ValueError):
    """The proposed text is not an acceptable skill; the message says which rule."""


def check_skill_text(content: str) -> str:
    text = check_content(content)  # length cap, single line
    first = _WORD.findall(text.lower())[:1]
    if not first or first[0] not in TRIGGERS:
        raise RuleViolation(
            "a skill starts with its trigger (When/If/Before/After ...), then one action"
        )
    if "," not in text:
        raise RuleViolation("a skill separates its trigger from its action with a comma")
    if text.count(".") > 2 or text.count(";") > 0:
        raise RuleViolation("a skill is one trigger and one action, not a list")
    if FORBIDDEN.search(text):
        raise RuleViolation("a skill may not address the proxy, the prompt or credentials")
    if len(text) > MAX_CONTENT_CHARS:
        raise RuleViolation(f"a skill is at most {MAX_CONTENT_CHARS} characters")
    return text


def similarity(a: str, b: str) -> float:
    return (_cosine(_words(a), _words(b)) + _cosine(_trigrams(a), _trigrams(b))) / 2


def most_similar(text: str, candidates: dict[str, str]) -> tuple[str | None, float]:
    """The id of the candidate closest to `text`, and the score (0 when there are none)."""
    best_id, best = None, 0.0
    for skill_id, other in candidates.items():
        score = similarity(text, other)
        if score > best:
            best_id, best = skill_id, score
    return best_id, best


def _words(text: str) -> Counter[str]:
    return Counter(_WORD.findall(text.lower()))


def _trigrams(text: str) -> Counter[str]:
    squashed = " ".join(_WORD.findall(text.lower()))
    return Counter(squashed[i : i + 3] for i in range(max(0, len(squashed) - 2)))


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(count * b[key] for key, count in a.items() if key in b)
    return dot / (
        math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    )
