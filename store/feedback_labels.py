"""The labels feedback may carry: a closed set, each positive, negative or neutral.

`POST /v1/feedback` refuses any other label, so what is stored can be counted. Labels are
compared lower-cased, with '-' and ' ' read as '_' (`normalise`): "Thumbs-Up" is `thumbs_up`.
Which feedback counts against an episode: a score under `NEGATIVE_SCORE_BELOW`, or a negative
label. Every engine marks episodes by the same lists, so they live above them.

Outcome figures read a label as a score (`label_score`): positive 1.0, negative 0.0, neutral
none. Feedback stored before labels were checked may carry a label outside the set; it scores
none too, rather than failing a report.
"""

from __future__ import annotations

NEGATIVE_SCORE_BELOW = 0.5
POSITIVE_LABELS = frozenset(
    {
        "good", "positive", "thumbs_up", "thumbsup", "up", "like", "right", "correct",
        "success", "succeeded", "pass", "passed", "helpful", "resolved", "solved",
        "accepted", "great", "excellent",
    }
)  # fmt: skip
NEGATIVE_LABELS = frozenset(
    {
        "bad", "negative", "thumbs_down", "thumbsdown", "down", "dislike", "wrong",
        "incorrect", "fail", "failed", "failure", "unhelpful", "not_helpful", "harmful",
        "poor", "rejected",
    }
)  # fmt: skip
NEUTRAL_LABELS = frozenset({"neutral"})
LABELS = POSITIVE_LABELS | NEGATIVE_LABELS | NEUTRAL_LABELS
"""Every label accepted."""


def normalise(label: str) -> str:
    """The label's canonical spelling: trimmed, lower-cased, '-' and ' ' as '_'."""
    return label.strip().lower().replace("-", "_").replace(" ", "_")


def is_known(label: str) -> bool:
    return normalise(label) in LABELS


def label_score(label: str) -> float | None:
    """1.0 for a positive label, 0.0 for a negative one, None for neutral or unknown."""
    name = normalise(label)
    if name in POSITIVE_LABELS:
        return 1.0
    if name in NEGATIVE_LABELS:
        return 0.0
    return None


def accepted_labels() -> str:
    """The accepted labels for an error message, grouped by what they mean."""
    groups = (
        ("positive", POSITIVE_LABELS),
        ("negative", NEGATIVE_LABELS),
        ("neutral", NEUTRAL_LABELS),
    )
    return "; ".join(f"{name}: {', '.join(sorted(labels))}" for name, labels in groups)
