"""Skill manager: a reflection becomes small delta operations on one skillbook.

- TAG: a helpful/harmful/neutral vote counts at once, only for skills that were really injected
  in the episode (a model cannot vote for ids it made up), with the episode as evidence.
- ADD: a new skill must pass the text rules; if it says what an existing skill of the skillbook
  already says (any status, so a rejected lesson is not proposed again and again), the episode
  becomes evidence for that skill instead; otherwise it is created `pending` (or `active` when
  the skillbook auto-approves), with the episode as its first evidence.
- UPDATE: a better wording becomes a new pending proposal that names the skill it would
  replace; the live skill is never rewritten without a person.
- REMOVE: recorded as evidence against the skill for a person to act on; never a deletion.

Runs inside the caller's transaction, so a crash leaves all of it or none of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlite_utils

from learner.episodes import EpisodeConversation
from learner.reflection import Reflection
from learner.skill_rules import RuleViolation, check_skill_text, most_similar
from store import skills
from store.errors import InvalidContent

ACTOR = "learner"


@dataclass
class Outcome:
    tags: int = 0
    proposals: int = 0
    merged: int = 0
    removals_suggested: int = 0
    refused: list[str] = field(default_factory=list)
    created_ids: list[str] = field(default_factory=list)


def apply_reflection(
    db: sqlite_utils.Database,
    skillbook: str,
    reflection: Reflection,
    episode: EpisodeConversation,
    *,
    auto_approve: bool,
    threshold: float,
    at: float,
) -> Outcome:
    outcome = Outcome()
    evidence_trace = episode.trace_ids[-1]
    known = {s["id"]: s for s in skills.list_skills(db, skillbook)}
    injected = set(episode.skill_ids) & known.keys()
    for vote in reflection.skill_tags:
        if vote.skill_id in injected:
            skills.tag(
                db,
                vote.skill_id,
                vote.tag,
                actor=ACTOR,
                trace_id=evidence_trace,
                reason=f"{vote.tag}: {vote.reason}".strip(": "),
            )
            outcome.tags += 1
    texts = {skill_id: skill["content"] for skill_id, skill in known.items()}

    def propose(section: str, content: str, reason: str) -> None:
        try:
            text = check_skill_text(content)
            section_name = skills.normalise_section(_clean_section(section))
        except (RuleViolation, InvalidContent) as exc:
            outcome.refused.append(f"{content[:80]!r}: {exc}")
            return
        match, score = most_similar(text, texts)
        if match is not None and score >= threshold:
            skills.add_evidence_in_tx(
                db, match, evidence_trace, f"same lesson ({score:.2f}): {reason}", ACTOR, at
            )
            outcome.merged += 1
            return
        created = skills.create(
            db,
            skillbook,
            section_name,
            text,
            actor=ACTOR,
            status="active" if auto_approve else "pending",
            evidence=[{"trace_id": evidence_trace, "reason": reason or reflection.key_insight}],
        )
        texts[created["id"]] = text
        outcome.proposals += 1
        outcome.created_ids.append(created["id"])

    if reflection.new_skill is not None:
        new = reflection.new_skill
        propose(new.section, new.content, new.reason or reflection.key_insight)
    for update in reflection.updates:
        if update.skill_id in known:
            section = known[update.skill_id]["section"]
            propose(
                section, update.content, f"proposed rewording of {update.skill_id}: {update.reason}"
            )
    for removal in reflection.removals:
        if removal.skill_id in known:
            skills.add_evidence_in_tx(
                db,
                removal.skill_id,
                evidence_trace,
                f"removal suggested: {removal.reason}",
                ACTOR,
                at,
            )
            outcome.removals_suggested += 1
    return outcome


def _clean_section(section: str) -> str:
    cleaned = re.sub(r"[^a-z0-9 _-]+", " ", section.lower()).strip()
    return cleaned[:40].strip() or "general"
