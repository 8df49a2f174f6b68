"""Ranking: earned votes beat lucky ones, relevance reorders without losing anyone."""

from __future__ import annotations

from proxy.ranking import by_relevance, by_usefulness
from store.records import Skill
from store.rules import usefulness


def skill(
    i: int, helpful: int = 0, harmful: int = 0, content: str = "", section: str = "s"
) -> Skill:
    text = content or f"When case {i} happens, do thing {i}."
    return Skill(
        f"s-{i:05d}", "book", section, text, "active", helpful, harmful, 0, 1, float(i), float(i)
    )


def test_forty_votes_beat_one_and_untested_beats_harmful() -> None:
    assert usefulness(40, 0) > usefulness(1, 0) > usefulness(0, 0) > usefulness(0, 5)
    assert usefulness(40, 2) > usefulness(2, 0)


def test_order_is_stable_on_ties() -> None:
    ranked = by_usefulness([skill(3), skill(1), skill(2)])
    assert [r.id for r in ranked] == ["s-00001", "s-00002", "s-00003"]


def test_relevance_puts_matching_skills_first_and_keeps_everyone() -> None:
    ranked = by_usefulness(
        [
            skill(
                1, helpful=9, content="When the invoice is wrong, compare it with the order lines."
            ),
            skill(2, content="When a customer wants to return shoes, check the return window."),
            skill(3, content="When the parcel is late, give the tracking link."),
        ]
    )
    reordered = by_relevance(ranked, "Can I return these shoes?")
    assert reordered[0].id == "s-00002"
    assert sorted(r.id for r in reordered) == sorted(r.id for r in ranked)
    assert [r.id for r in by_relevance(ranked, "")] == [r.id for r in ranked]
