"""Skill manager: a reflection becomes small delta operations on one skillbook.

- TAG: a helpful/harmful/neutral vote counts at once, only for skills that were really injected
  in the episode (a model cannot vote for ids it made up), with the episode as evidence.
- ADD: a new skill must pass the text rules; if it says what an existing skill of the skillbook
  already says (any status, so a rejected lesson is not proposed again and again), the episode
  becomes evidence for that skill instead; otherwise it is proposed `pending` (or `active` when
  the skillbook auto-approves), with the episode as its first evidence.
- UPDATE: a better wording becomes a new pending proposal that names the skill it would
  replace (`supersedes`); the live skill is never rewritten without a person, and approving
  the rewording archives the original in the same transaction, so both are never injected.
- REMOVE: recorded as evidence against the skill for a person to act on; never a deletion.

`plan_reflection` only decides: it reads the skills it is given and returns operations for the
store, which applies them with the rest of the episode's outcome in one unit of work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from learner.episodes import EpisodeConversation
from learner.reflection import Reflection
from learner.skill_rules import RuleViolation, check_skill_text, most_similar
from store.errors import InvalidContent
from store.records import AddEvidence, ProposeSkill, Skill, SkillOperation, Status, TagSkill
from store.rules import normalise_section

ACTOR = "learner"


@dataclass
class Plan:
    operations: list[SkillOperation] = field(default_factory=list)
    tags: int = 0
    proposals: int = 0
    merged: int = 0
    removals_suggested: int = 0
    refused: list[str] = field(default_factory=list)


def plan_reflection(
    reflection: Reflection,
    episode: EpisodeConversation,
    known_skills: Iterable[Skill],
    *,
    auto_approve: bool,
    threshold: float,
) -> Plan:
    """The operations one reflection asks for, given every skill of the skillbook now."""
    plan = Plan()
    evidence_trace = episode.trace_ids[-1]
    known = {skill.id: skill for skill in known_skills}
    injected = set(episode.skill_ids) & known.keys()
    for vote in reflection.skill_tags:
        if vote.skill_id in injected:
            reason = f"{vote.tag}: {vote.reason}".strip(": ")
            plan.operations.append(TagSkill(vote.skill_id, vote.tag, evidence_trace, reason))
            plan.tags += 1
    texts = {skill_id: skill.content for skill_id, skill in known.items()}

    def propose(section: str, content: str, reason: str, supersedes: str | None = None) -> None:
        try:
            text = check_skill_text(content)
            section_name = normalise_section(_clean_section(section))
        except (RuleViolation, InvalidContent) as exc:
            plan.refused.append(f"{content[:80]!r}: {exc}")
            return
        match, score = most_similar(text, texts)
        if match is not None and score >= threshold:
            plan.merged += 1
            if match in known:  # a proposal of this same reflection already has the evidence
                reason = f"same lesson ({score:.2f}): {reason}"
                plan.operations.append(AddEvidence(match, evidence_trace, reason))
            return
        status: Status = "active" if auto_approve else "pending"
        plan.operations.append(
            ProposeSkill(
                section_name,
                text,
                status,
                evidence_trace,
                reason or reflection.key_insight,
                supersedes,
            )
        )
        texts[f"proposed:{plan.proposals}"] = text
        plan.proposals += 1

    if reflection.new_skill is not None:
        new = reflection.new_skill
        propose(new.section, new.content, new.reason or reflection.key_insight)
    for update in reflection.updates:
        if update.skill_id in known:
            section = known[update.skill_id].section
            why = f"proposed rewording of {update.skill_id}: {update.reason}"
            propose(section, update.content, why, supersedes=update.skill_id)
    for removal in reflection.removals:
        if removal.skill_id in known:
            why = f"removal suggested: {removal.reason}"
            plan.operations.append(AddEvidence(removal.skill_id, evidence_trace, why))
            plan.removals_suggested += 1
    return plan


def _clean_section(section: str) -> str:
    cleaned = re.sub(r"[^a-z0-9 _-]+", " ", section.lower()).strip(" _-")
    return cleaned[:40].strip(" _-") or "general"
