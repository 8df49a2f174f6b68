"""The rules every store engine enforces the same way: skill text, sections, settings, statuses.

Status transitions (anything else is an `InvalidTransition`):

    approve   pending | rejected -> active     (the only way in, with auto-approve at creation)
    reject    pending            -> rejected
    archive   pending | active   -> archived   (the status it left is kept)
    restore   archived -> the status it had before,  rejected -> pending

A skill never becomes active without a person's approval (or its skillbook's auto-approve):
restore returns an archived skill to where it was, so a pending one comes back pending.
Deleting is apart from status: a deleted skill keeps its status, is hidden and never
injected, and `restore` brings it back as it was. Approving a skill that rewords another
(`supersedes`) archives that one in the same transaction.
"""

from __future__ import annotations

import math
import re
from typing import Any

from store.errors import InvalidContent
from store.records import Status

STATUSES: tuple[Status, ...] = ("pending", "active", "rejected", "archived")
TAGS = ("helpful", "harmful", "neutral")
MAX_CONTENT_CHARS = 400
MIN_CONTENT_CHARS = 8
MAX_SECTION_CHARS = 40
SETTINGS = ("token_budget", "ranking", "auto_approve", "max_active")
"""The settings a skillbook document carries; `frozen` is a state, set through its own call."""
ACTIONS = ("approve", "reject", "archive", "restore")
RANKINGS = ("usefulness", "relevance")
SNAPSHOT_KEYS = ("section", "content", "status", "helpful", "harmful", "neutral")
"""What a history event records of a skill, before and after."""

TRANSITIONS: dict[str, dict[str, Status]] = {
    "approve": {"pending": "active", "rejected": "active"},
    "reject": {"pending": "rejected"},
    "archive": {"pending": "archived", "active": "archived"},
    "restore": {"archived": "pending", "rejected": "pending"},
}
"""`restore` of an archived skill goes to its `prior_status`; `pending` is the fallback."""
_SECTION = re.compile(r"^[a-z0-9][a-z0-9 _-]*$")


def normalise_section(section: str) -> str:
    cleaned = " ".join(section.strip().lower().split())
    if not cleaned or len(cleaned) > MAX_SECTION_CHARS or not _SECTION.match(cleaned):
        raise InvalidContent(
            f"section must be 1-{MAX_SECTION_CHARS} lowercase letters, digits, spaces, "
            f"'-' or '_': got {section!r}"
        )
    return cleaned


def check_content(content: str) -> str:
    """One strategy on one line, within the length cap; returns it with outer space removed."""
    text = content.strip()
    if len(text) < MIN_CONTENT_CHARS:
        raise InvalidContent(f"content must be at least {MIN_CONTENT_CHARS} characters")
    if len(text) > MAX_CONTENT_CHARS:
        raise InvalidContent(
            f"content must be at most {MAX_CONTENT_CHARS} characters, got {len(text)}: "
            "a skill is one trigger and one action"
        )
    if "\n" in text or "\r" in text:
        raise InvalidContent("content must be a single line: a skill is one trigger and one action")
    return text


def check_settings(changes: dict[str, Any]) -> None:
    budget = changes.get("token_budget")
    if budget is not None and (type(budget) is not int or budget < 0):
        raise InvalidContent("token_budget must be a whole number of tokens, 0 or more")
    ranking = changes.get("ranking")
    if ranking is not None and ranking not in RANKINGS:
        raise InvalidContent(f"ranking must be one of {', '.join(RANKINGS)}")
    auto = changes.get("auto_approve")
    if auto is not None and not isinstance(auto, bool):
        raise InvalidContent("auto_approve must be true, false or null")
    cap = changes.get("max_active")
    if cap is not None and (type(cap) is not int or cap < 1):
        raise InvalidContent("max_active must be a whole number of skills, 1 or more, or null")


Z = 1.96
"""95% two-sided: the confidence behind every lower bound below."""


def usefulness(helpful: int, harmful: int) -> float:
    """Lower bound of a Wilson interval on helpful / (helpful + harmful), with one pseudo-vote
    each way: one lucky vote never outranks forty earned ones."""
    return wilson_lower_bound(helpful + 1, helpful + harmful + 2)


def wilson_lower_bound(successes: int, trials: int) -> float:
    if trials <= 0:
        return 0.0
    p = successes / trials
    denominator = 1 + Z * Z / trials
    centre = p + Z * Z / (2 * trials)
    margin = Z * math.sqrt(p * (1 - p) / trials + Z * Z / (4 * trials * trials))
    return (centre - margin) / denominator


def clearly_harmful(helpful: int, harmful: int) -> bool:
    """Harmful votes outweigh helpful ones with confidence: the lower bound of the harmful
    share is above one half."""
    return wilson_lower_bound(harmful, helpful + harmful) > 0.5


def skill_id_for(section: str, seq: int) -> str:
    """`coding-00003`: the section as a slug, then the store-wide sequence number."""
    slug = re.sub(r"[^a-z0-9]+", "-", section).strip("-")[:24] or "skill"
    return f"{slug}-{seq:05d}"
