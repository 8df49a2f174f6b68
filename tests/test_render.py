"""Rendering: deterministic text, grouped by section, never over the budget."""

from __future__ import annotations

from core.tokens import count_tokens
from proxy.ranking import RankedSkill, words
from proxy.render import EMPTY, HEADER, fit, line_tokens, render


def ranked(i: int, section: str, content: str) -> RankedSkill:
    return RankedSkill(f"id-{i}", section, content, 1.0 - i / 100, float(i), words(content))


SKILLS = [
    ranked(0, "returns", "When asked to return an item, check the return window first."),
    ranked(1, "billing", "When an invoice looks wrong, compare it with the order lines."),
    ranked(2, "returns", "When the item is damaged, ask for a photo before anything else."),
]


def fitted(budget: int, encoding: str = "cl100k_base"):  # type: ignore[no-untyped-def]
    costs = [line_tokens(s, encoding) for s in SKILLS]
    header = count_tokens(HEADER + "\n", encoding)
    sections = {s.section: count_tokens(f"\n## {s.section}\n", encoding) for s in SKILLS}
    return fit(SKILLS, costs, budget, encoding, header, sections)


def test_render_groups_sections_alphabetically_in_rank_order() -> None:
    text = render(SKILLS)
    assert text == (
        HEADER
        + "\n\n## billing\n- When an invoice looks wrong, compare it with the order lines."
        + "\n\n## returns\n- When asked to return an item, check the return window first."
        + "\n- When the item is damaged, ask for a photo before anything else."
    )
    assert render(SKILLS) == text


def test_fit_never_exceeds_the_budget_at_any_size() -> None:
    everything = count_tokens(render(SKILLS), "o200k_base")
    for budget in range(0, everything + 5):
        section = fitted(budget, "o200k_base")
        assert section.tokens <= budget
        assert section.tokens == count_tokens(section.text, "o200k_base") if section.text else True
    assert fitted(everything, "o200k_base").skill_ids == ("id-0", "id-1", "id-2")
    assert fitted(5) == EMPTY


def test_a_skill_that_does_not_fit_lets_a_smaller_one_in() -> None:
    full = fitted(10_000)
    without_first = count_tokens(render(SKILLS[1:]), "cl100k_base")
    assert full.skill_ids == ("id-0", "id-1", "id-2")
    partial = fitted(without_first)
    assert partial.tokens <= without_first and partial.skill_ids
