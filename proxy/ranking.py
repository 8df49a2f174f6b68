"""Which skills deserve the budget first.

Usefulness is the lower bound of a Wilson score interval on helpful / (helpful + harmful),
with one pseudo-vote each way, so one lucky vote never outranks forty earned ones, an untested
skill sits above a proven-harmful one, and neutral votes do not move the rank. Ties break by
age (older first), then id, so the order is stable across processes and restarts.

Relevance (an opt-in per skillbook) ranks by word overlap with the latest user message,
weighted by how rare each word is among the skillbook's skills, then by usefulness.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from store.records import Skill
from store.rules import usefulness

_WORD = re.compile(r"[a-z0-9]{3,}")
STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "that",
        "this",
        "with",
        "you",
        "your",
        "are",
        "was",
        "not",
        "but",
        "have",
        "has",
        "had",
        "they",
        "them",
        "then",
        "than",
        "when",
        "what",
        "which",
        "who",
        "how",
        "all",
        "any",
        "can",
        "will",
        "would",
        "should",
        "could",
        "into",
        "from",
        "about",
        "there",
        "their",
        "its",
        "it's",
        "our",
        "out",
        "use",
        "also",
        "only",
        "just",
        "more",
        "most",
        "some",
        "such",
        "very",
    ]
)


@dataclass(frozen=True, slots=True)
class RankedSkill:
    id: str
    section: str
    content: str
    score: float
    created_at: float
    words: frozenset[str]


def words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in STOPWORDS)


def by_usefulness(skills: Iterable[Skill]) -> list[RankedSkill]:
    ranked = [
        RankedSkill(
            id=s.id,
            section=s.section,
            content=s.content,
            score=usefulness(s.helpful, s.harmful),
            created_at=s.created_at,
            words=words(f"{s.section} {s.content}"),
        )
        for s in skills
    ]
    ranked.sort(key=lambda r: (-r.score, r.created_at, r.id))
    return ranked


class RelevanceIndex:
    """Word -> skills containing it, built once per skillbook version, so a request scores only
    the skills that share a word with it."""

    def __init__(self, ranked: Sequence[RankedSkill]) -> None:
        self.ranked = list(ranked)
        self.postings: dict[str, list[int]] = {}
        for i, skill in enumerate(self.ranked):
            for word in skill.words:
                self.postings.setdefault(word, []).append(i)
        total = len(self.ranked)
        self.weight = {w: math.log(1 + total / len(ids)) for w, ids in self.postings.items()}

    def order(self, asked: frozenset[str]) -> list[RankedSkill]:
        """Skills sharing words with the query first (rarer words weigh more), then the rest,
        each group in usefulness order."""
        scores: dict[int, float] = {}
        for word in asked:
            for i in self.postings.get(word, ()):
                scores[i] = scores.get(i, 0.0) + self.weight[word]
        if not scores:
            return self.ranked
        first = sorted(scores, key=lambda i: (-scores[i], i))
        return [self.ranked[i] for i in first] + [
            skill for i, skill in enumerate(self.ranked) if i not in scores
        ]


def by_relevance(ranked: Sequence[RankedSkill], query: str) -> list[RankedSkill]:
    """Re-order an already usefulness-ranked list by overlap with `query` (stable on ties)."""
    return RelevanceIndex(ranked).order(words(query))
