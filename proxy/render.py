"""Turning ranked skills into the text appended to a system prompt, within a token budget.

The text depends only on which skills are chosen and their order, never on the time or the
request, so the bytes stay identical for every request of one skillbook version and provider
prompt caches keep hitting. Skills are chosen greedily in rank order, each kept only if it still
fits; the choice uses per-line token counts prepared once per version, and the final text is
counted exactly once, dropping the last choice until it fits, so the budget is a hard limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core import jsonio
from core.tokens import count_tokens
from proxy.ranking import RankedSkill

HEADER = (
    "# Strategies learned from earlier conversations\n"
    "Apply a strategy whenever its situation comes up."
)


@dataclass(frozen=True, slots=True)
class Section:
    text: str
    tokens: int
    skill_ids: tuple[str, ...]
    json: bytes = b""
    """`text` escaped as the inside of a JSON string, once per skillbook version, so a request
    splices it in instead of serialising it again (`proxy.injection`)."""


def section(text: str, tokens: int, skill_ids: tuple[str, ...]) -> Section:
    return Section(text, tokens, skill_ids, jsonio.dumps(text)[1:-1])


EMPTY = Section("", 0, ())
SLACK = 8


def render(chosen: Sequence[RankedSkill]) -> str:
    """Group by section (sections alphabetical, skills in rank order inside each)."""
    groups: dict[str, list[str]] = {}
    for skill in chosen:
        groups.setdefault(skill.section, []).append(skill.content)
    parts = [HEADER]
    for section in sorted(groups):
        parts.append(f"\n## {section}")
        parts.extend(f"- {content}" for content in groups[section])
    return "\n".join(parts)


def line_tokens(skill: RankedSkill, encoding: str) -> int:
    return count_tokens(f"- {skill.content}\n", encoding)


def fit(
    ranked: Sequence[RankedSkill],
    costs: Sequence[int],
    budget: int,
    encoding: str,
    header_tokens: int,
    section_tokens: dict[str, int],
) -> Section:
    """Choose skills in order while they fit, then enforce the exact count.

    Per-line estimates run a few tokens high (BPE merges across line breaks), so a candidate
    over the budget by no more than `SLACK` tokens is checked with an exact count instead of
    being skipped.
    """
    chosen: list[RankedSkill] = []
    used = header_tokens
    sections: set[str] = set()
    for skill, cost in zip(ranked, costs, strict=True):
        estimate = used + cost + (0 if skill.section in sections else section_tokens[skill.section])
        if estimate > budget + SLACK:
            continue
        if estimate > budget:
            exact = count_tokens(render([*chosen, skill]), encoding)
            if exact > budget:
                continue
            estimate = exact
        chosen.append(skill)
        sections.add(skill.section)
        used = estimate
    while chosen:
        text = render(chosen)
        tokens = count_tokens(text, encoding)
        if tokens <= budget:
            return section(text, tokens, tuple(skill.id for skill in chosen))
        chosen.pop()
    return EMPTY
