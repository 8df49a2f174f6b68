"""Which feedback counts against an episode: a score under 0.5, or one of these labels.

Labels are compared lower-cased, with '-' and ' ' read as '_'. Every engine marks episodes by
the same list, so it lives above them.
"""

from __future__ import annotations

NEGATIVE_SCORE_BELOW = 0.5
NEGATIVE_LABELS = frozenset(
    {
        "bad", "negative", "thumbs_down", "thumbsdown", "down", "dislike", "wrong",
        "incorrect", "fail", "failed", "failure", "unhelpful", "not_helpful", "harmful",
        "poor", "rejected",
    }
)  # fmt: skip
