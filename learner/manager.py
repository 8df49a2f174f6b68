"""Skill manager: a reflection becomes small delta operations on one skillbook.

- TAG: a helpful/harmful/neutral vote counts at once, only for skills that were really injected
  in the episode (a model cannot vote for ids it made up), with the episode as evidence. The
  store proposes retiring a skill whose harmful votes clearly outweigh its helpful ones.
- ADD (up to `learner.max_lessons_per_episode` per episode): a new skill must pass the text
  rules, or it is kept as a refused proposal with the rule it broke, for the reviewer. A skill
  close to an existing one (any status, so a rejected lesson is not proposed again and again)
  is judged against it: the same lesson becomes evidence for it; a refinement becomes an
  UPDATE of it; a contradiction is proposed pending with a flag naming it, never merged;
  otherwise it is proposed `pending` (or `active` when the skillbook auto-approves).
- UPDATE: a better wording becomes a new pending proposal that names the skill it would
  replace (`supersedes`); the live skill is never rewritten without a person, and approving
  the rewording archives the original in the same transaction, so both are never injected.
- REMOVE: a retire proposal on the live skill, which a person approves by archiving it;
  evidence only, for a skill that is not live.

`plan_reflection` only decides: it reads the skills it is given and the verdicts the runner
got for close pairs, and returns operations for the store, which applies them with the rest of
the episode's outcome in one unit of work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from learner.episodes import EpisodeConversation
from learner.reflection import Reflection
from learner.skill_rules import RuleViolation, check_skill_text, most_similar
from store.errors import InvalidContent
from store.records import (
    AddEvidence,
    ProposeRetire,
    ProposeSkill,
    RefuseProposal,
    Skill,
    SkillOperation,
    Status,
    TagSkill,
)
from store.rules import normalise_section

ACTOR = "learner"


Verdict = Literal["same", "refines", "contradicts", "different"]
Similar = Callable[[str, dict[str, str]], tuple[str | None, float]]


@dataclass
class Plan:
    operations: list[SkillOperation] = field(default_factory=list)
    tags: int = 0
    proposals: int = 0
    merged: int = 0
    removals_suggested: int = 0
    refused: list[str] = field(default_factory=list)
    contradictions: int = 0


def plan_reflection(
    reflection: Reflection,
    episode: EpisodeConversation,
    known_skills: Iterable[Skill],
    *,
    auto_approve: bool,
    threshold: float,
    verdicts: Mapping[str, Verdict] | None = None,
    similar: Similar = most_similar,
    max_lessons: int | None = None,
) -> Plan:
    """The operations one reflection asks for, given every skill of the skillbook now.
    `verdicts` maps a candidate's checked text to the judge's word on its closest skill
    (missing: taken as the same lesson, as before there was a judge)."""
    plan = Plan()
    evidence_trace = episode.trace_ids[-1]
    known = {skill.id: skill for skill in known_skills}
    injected = set(episode.skill_ids) & known.keys()
    judged = verdicts or {}
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
            if isinstance(exc, RuleViolation) and exc.rule == "secret":  # never stored
                content = "[withheld: the proposed text held what looks like a secret]"
            plan.refused.append(f"{content[:80]!r}: {exc}")
            flat = " ".join(content.split())[:2000]
            plan.operations.append(
                RefuseProposal(_clean_section(section), flat, str(exc), evidence_trace)
            )
            return
        contradicts = None
        match, score = similar(text, texts)
        if match is not None and score >= threshold:
            verdict = judged.get(text, "same") if match in known else "same"
            if verdict == "same":
                plan.merged += 1
                if match in known:  # a proposal of this same reflection already has the evidence
                    why = f"same lesson ({score:.2f}): {reason}"
                    plan.operations.append(AddEvidence(match, evidence_trace, why))
                return
            if verdict == "refines" and supersedes is None:
                supersedes, reason = match, f"refines {match}: {reason}"
            elif verdict == "contradicts":
                contradicts, reason = match, f"contradicts {match}: {reason}"
                plan.contradictions += 1
        live = auto_approve and contradicts is None
        status: Status = "active" if live else "pending"
        plan.operations.append(
            ProposeSkill(
                section_name,
                text,
                status,
                evidence_trace,
                reason or reflection.key_insight,
                supersedes,
                contradicts,
            )
        )
        texts[f"proposed:{plan.proposals}"] = text
        plan.proposals += 1

    lessons = reflection.new_skills[:max_lessons] if max_lessons else reflection.new_skills
    for new in lessons:
        propose(new.section, new.content, new.reason or reflection.key_insight)
    for update in reflection.updates:
        if update.skill_id in known:
            section = known[update.skill_id].section
            why = f"proposed rewording of {update.skill_id}: {update.reason}"
            propose(section, update.content, why, supersedes=update.skill_id)
    for removal in reflection.removals:
        skill = known.get(removal.skill_id)
        if skill is None:
            continue
        why = f"removal suggested: {removal.reason}"
        if skill.status == "active" and skill.deleted_at is None:
            plan.operations.append(ProposeRetire(removal.skill_id, why, evidence_trace))
        else:
            plan.operations.append(AddEvidence(removal.skill_id, evidence_trace, why))
        plan.removals_suggested += 1
    return plan


def close_pairs(
    reflection: Reflection,
    known_skills: Iterable[Skill],
    *,
    threshold: float,
    similar: Similar = most_similar,
) -> list[tuple[str, Skill]]:
    """The (candidate text, existing skill) pairs a judge should look at: each lesson and
    rewording that passes the rules and is at least `threshold` close to a skill."""
    known = {skill.id: skill for skill in known_skills}
    texts = {skill_id: skill.content for skill_id, skill in known.items()}
    pairs = []
    for content in [n.content for n in reflection.new_skills] + [
        u.content for u in reflection.updates
    ]:
        try:
            text = check_skill_text(content)
        except (RuleViolation, InvalidContent):
            continue
        match, score = similar(text, texts)
        if match is not None and score >= threshold:
            pairs.append((text, known[match]))
    return pairs


def _clean_section(section: str) -> str:
    cleaned = re.sub(r"[^a-z0-9 _-]+", " ", section.lower()).strip(" _-")
    return cleaned[:40].strip(" _-") or "general"
