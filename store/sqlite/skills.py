"""Skills: their text, status, counters, evidence, and an append-only history of every change.

Every change is one write transaction that updates the skill, appends a `skill_events` row with
the state before and after (so any revision can be shown and rolled back to), and bumps the
skillbook's version when the change could alter what is injected. The transitions allowed are
in `store.rules`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlite_utils

from store.errors import BulkRefused, InvalidContent, InvalidTransition, NotFound, StoreError
from store.feedback_labels import label_score
from store.records import (
    BulkResult,
    DailySkills,
    Evidence,
    OutcomeArm,
    Skill,
    SkillDetail,
    SkillEvent,
    SkillOutcome,
    Status,
    Tag,
)
from store.rules import (
    ACTIONS,
    SNAPSHOT_KEYS,
    STATUSES,
    TAGS,
    TRANSITIONS,
    check_content,
    clearly_harmful,
    normalise_section,
    skill_id_for,
    usefulness,
)
from store.sqlite.skillbooks import SQLiteSkillbooks
from store.sqlite.transaction import write_transaction

if TYPE_CHECKING:
    from store.sqlite.canaries import SQLiteCanaries

COLUMNS = (
    "id", "skillbook", "section", "content", "status", "helpful", "harmful", "neutral",
    "revision", "created_at", "updated_at", "supersedes", "superseded_by", "prior_status",
    "deleted_at", "retire_reason", "retire_proposed_at", "contradicts",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM skills"


class SQLiteSkills:
    def __init__(self, db: sqlite_utils.Database, skillbooks: SQLiteSkillbooks) -> None:
        self._db = db
        self._skillbooks = skillbooks
        self.canaries: SQLiteCanaries | None = None
        """Set by the store once both exist: transitions start, promote and stop canaries."""

    def create(
        self,
        skillbook: str,
        section: str,
        content: str,
        *,
        actor: str,
        status: Status = "pending",
        evidence: Iterable[tuple[str, str]] = (),
        supersedes: str | None = None,
    ) -> SkillDetail:
        with write_transaction(self._db):
            skill_id = self.create_in_tx(
                skillbook, section, content, actor=actor, status=status, evidence=evidence,
                supersedes=supersedes, created_by="admin",
            )  # fmt: skip
        return self.get(skill_id)

    def create_in_tx(
        self,
        skillbook: str,
        section: str,
        content: str,
        *,
        actor: str,
        status: Status,
        evidence: Iterable[tuple[str, str]],
        supersedes: str | None = None,
        created_by: str = "learner",
        contradicts: str | None = None,
        reflection: int | None = None,
    ) -> str:
        """`create` inside the caller's transaction; returns the new id. `created_by` says
        who made the skillbook, if this creates it; a skill that `contradicts` another is
        always created pending, for a person; `reflection` is the one its evidence came from."""
        if contradicts is not None:
            status = "pending"
        section = normalise_section(section)
        content = check_content(content)
        if supersedes is not None:
            try:
                replaced = self.snapshot(supersedes)
            except NotFound:
                raise InvalidContent(f"supersedes: no skill with id {supersedes!r}") from None
            if replaced.skillbook != skillbook:
                raise InvalidContent(
                    f"supersedes: skill {supersedes} belongs to skillbook {replaced.skillbook!r}"
                )
        now = time.time()
        db = self._db
        self._skillbooks.ensure(skillbook, by=created_by, actor=actor)
        self._skillbooks.refuse_deleted(skillbook)
        seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM skills").fetchone()[0]
        skill_id = skill_id_for(section, seq)
        db.execute(
            "INSERT INTO skills (seq, id, skillbook, section, content, status, created_at, "
            "updated_at, supersedes, contradicts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                seq, skill_id, skillbook, section, content, status, now, now, supersedes,
                contradicts,
            ],
        )  # fmt: skip
        self.record_event(skill_id, 1, "create", actor, None, self.snapshot(skill_id), now)
        for trace_id, reason in evidence:
            self.add_evidence_in_tx(skill_id, trace_id, reason, actor, now, reflection=reflection)
        if status == "active":
            self._skillbooks.bump_version(skillbook)
            self._went_live(self.snapshot(skill_id), actor)
        return skill_id

    def get(self, skill_id: str) -> SkillDetail:
        found = self.snapshot(skill_id)
        fields = {f.name: getattr(found, f.name) for f in dataclasses.fields(Skill)}
        canary = self.canaries.latest(skill_id) if self.canaries is not None else None
        return SkillDetail(
            **fields, evidence=self.evidence(skill_id), history=self.history(skill_id),
            canary=canary,
        )  # fmt: skip

    def snapshot(self, skill_id: str) -> Skill:
        """The skill without evidence or history."""
        row = self._db.execute(f"{_SELECT} WHERE id = ?", [skill_id]).fetchone()
        if row is None:
            raise NotFound(f"no skill with id {skill_id!r}")
        return Skill(*row)

    def find(
        self,
        skillbook: str,
        *,
        status: str | None = None,
        section: str | None = None,
        text: str | None = None,
        deleted: bool = False,
        newest_first: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Skill]:
        if status is not None and status not in STATUSES:
            raise InvalidContent(f"status must be one of {', '.join(STATUSES)}")
        where, params = ["skillbook = ?"], [skillbook]
        where.append("deleted_at IS NOT NULL" if deleted else "deleted_at IS NULL")
        if status:
            where.append("status = ?")
            params.append(status)
        if section:
            where.append("section = ?")
            params.append(section.strip().lower())
        if text:
            where.append("content LIKE ? ESCAPE '\\'")
            params.append(
                "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
        order = "seq DESC" if newest_first else "seq"
        page = " LIMIT ? OFFSET ?" if limit is not None else ""
        paging = [limit, offset] if limit is not None else []
        rows = self._db.execute(
            f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY {order}{page}", [*params, *paging]
        ).fetchall()
        return [Skill(*row) for row in rows]

    def active(self, skillbook: str) -> list[Skill]:
        return self.find(skillbook, status="active")

    def transition(
        self, skill_id: str, action: str, *, actor: str, note: str | None = None
    ) -> SkillDetail:
        with write_transaction(self._db):
            self.transition_in_tx(self.snapshot(skill_id), action, actor, note)
        return self.get(skill_id)

    def bulk(
        self, skillbook: str, ids: list[str], action: str, *, actor: str, note: str | None = None
    ) -> BulkResult:
        """`action` on every id, in one transaction: all change, or none and `BulkRefused`
        names why each refused id could not."""
        if not ids:
            raise InvalidContent("ids: give at least one skill id")
        if len(set(ids)) != len(ids):
            raise InvalidContent("ids: an id appears more than once")
        refused: dict[str, str] = {}
        with write_transaction(self._db):
            for skill_id in ids:
                try:
                    skill = self.snapshot(skill_id)
                    if skill.skillbook != skillbook:
                        raise NotFound(f"skill {skill_id} belongs to skillbook {skill.skillbook!r}")
                    self.transition_in_tx(skill, action, actor, note)
                except StoreError as exc:
                    refused[skill_id] = str(exc)
            if refused:  # raised inside the transaction: it rolls back what was applied
                raise BulkRefused(
                    f"nothing was changed: {len(refused)} of {len(ids)} skills cannot be "
                    f"{_past(action)}",
                    refused,
                )
        return BulkResult(action, [self.get(skill_id) for skill_id in ids])

    def transition_in_tx(
        self,
        before: Skill,
        action: str,
        actor: str,
        note: str | None = None,
        *,
        detail: dict[str, Any] | None = None,
        canary_rules: bool = True,
    ) -> None:
        """`detail`: figures an automatic decision was taken on, kept in the history;
        `canary_rules` False for a canary's own decision (no new canary, none to end)."""
        if action not in ACTIONS:
            raise InvalidTransition(f"unknown action {action!r}: use {', '.join(ACTIONS)}")
        hook = self.canaries if canary_rules else None
        if hook is not None:
            started, note = hook.on_transition(before, action, actor, note)
            if started:
                return  # the approval started a canary (the skillbook's rule)
        if before.deleted_at is not None:
            if action != "restore":
                raise InvalidTransition(
                    f"cannot {action} skill {before.id}: it is deleted (restore it first)"
                )
            self.apply_change(before, {"deleted_at": None}, "restore", actor, note=note)
            return
        target = TRANSITIONS[action].get(before.status)
        if target is None:
            allowed = ", ".join(TRANSITIONS[action]) + (", deleted" if action == "restore" else "")
            raise InvalidTransition(
                f"cannot {action} skill {before.id}: it is {before.status} "
                f"(only {allowed} skills can be {_past(action)})"
            )
        changes: dict[str, Any] = {"status": target}
        if action == "restore" and before.status == "archived":
            prior = before.prior_status
            changes["status"] = prior if prior in ("pending", "active", "rejected") else "pending"
        if changes["status"] == "archived":
            changes["prior_status"] = before.status
        if changes["status"] == "active" and before.retire_reason:  # live again: a fresh start
            changes.update(retire_reason=None, retire_proposed_at=None)
        self.apply_change(before, changes, action, actor, note=note, detail=detail)
        if changes["status"] == "active":
            self._went_live(self.snapshot(before.id), actor)

    def delete(self, skill_id: str, *, actor: str) -> SkillDetail:
        """Soft: hidden and never injected, kept with its history until `restore`."""
        with write_transaction(self._db):
            before = self.snapshot(skill_id)
            if before.deleted_at is not None:
                raise InvalidTransition(f"skill {skill_id} is already deleted")
            if self.canaries is not None:
                self.canaries.on_transition(before, "delete", actor, None)
            self.apply_change(before, {"deleted_at": time.time()}, "delete", actor)
        return self.get(skill_id)

    def _went_live(self, skill: Skill, actor: str) -> None:
        """What a skill turning active sets off: the skill it rewords retires, and past the
        skillbook's cap the least useful active one is proposed for retirement."""
        self._retire_superseded(skill, actor)
        cap = self._db.execute(
            "SELECT max_active FROM skillbooks WHERE name = ?", [skill.skillbook]
        ).fetchone()
        if cap is None or cap[0] is None:
            return
        live = [s for s in self.active(skill.skillbook) if s.id != skill.id]
        if len(live) + 1 <= cap[0]:
            return
        least = min(live, key=lambda s: (usefulness(s.helpful, s.harmful), -s.created_at))
        reason = (
            f"the skillbook holds at most {cap[0]} active skills and {skill.id} was approved; "
            "this is the least useful"
        )
        self.propose_retire_in_tx(least.id, reason, actor=actor)

    def propose_retire_in_tx(self, skill_id: str, reason: str, *, actor: str) -> None:
        """Flag a live skill for retirement; a person archives it (approving) or not. A skill
        already flagged keeps its first reason."""
        skill = self.snapshot(skill_id)
        if skill.status != "active" or skill.deleted_at is not None or skill.retire_reason:
            return
        changes = {"retire_reason": reason[:500], "retire_proposed_at": time.time()}
        self.apply_change(skill, changes, "retire proposed", actor, bump=False)

    def _retire_superseded(self, successor: Skill, actor: str) -> None:
        """Archive the skill `successor` rewords, linked to it, once `successor` is live."""
        if successor.supersedes is None:
            return
        old = self.snapshot(successor.supersedes)
        if old.deleted_at is not None or old.status not in ("pending", "active"):
            return
        changes = {"status": "archived", "prior_status": old.status, "superseded_by": successor.id}
        self.apply_change(old, changes, f"superseded by {successor.id}", actor)

    def edit(
        self,
        skill_id: str,
        *,
        actor: str,
        content: str | None = None,
        section: str | None = None,
    ) -> SkillDetail:
        changes: dict[str, Any] = {}
        if content is not None:
            changes["content"] = check_content(content)
        if section is not None:
            changes["section"] = normalise_section(section)
        if not changes:
            raise InvalidContent("nothing to edit: give content and/or section")
        with write_transaction(self._db):
            before = self.snapshot(skill_id)
            _refuse_deleted(before, "edit")
            changes = {k: v for k, v in changes.items() if getattr(before, k) != v}
            if changes:  # the same text again is no new revision
                if self.canaries is not None:  # its figures would judge another text
                    self.canaries.on_transition(before, "edit", actor, None)
                self.apply_change(before, changes, "edit", actor)
        return self.get(skill_id)

    def rollback(self, skill_id: str, revision: int, *, actor: str) -> SkillDetail:
        """Make the skill's text, section and status what they were at `revision` (a new
        revision)."""
        with write_transaction(self._db):
            before = self.snapshot(skill_id)
            row = self._db.execute(
                "SELECT after_json FROM skill_events WHERE skill_id = ? AND revision = ?",
                [skill_id, revision],
            ).fetchone()
            if row is None:
                raise NotFound(f"skill {skill_id} has no revision {revision}")
            _refuse_deleted(before, "roll back")
            target = json.loads(row[0])
            changes = {k: target[k] for k in ("section", "content", "status")}
            if changes["status"] == "archived" and before.status != "archived":
                changes["prior_status"] = before.status
            self.apply_change(before, changes, f"rollback to {revision}", actor)
        return self.get(skill_id)

    def tag(
        self, skill_id: str, tag: Tag, *, actor: str, trace_id: str | None = None, reason: str = ""
    ) -> SkillDetail:
        """Count one helpful/harmful/neutral vote at once, with the trace that earned it."""
        with write_transaction(self._db):
            self.tag_in_tx(skill_id, tag, actor=actor, trace_id=trace_id, reason=reason)
        return self.get(skill_id)

    def tag_in_tx(
        self,
        skill_id: str,
        tag: str,
        *,
        actor: str,
        trace_id: str | None,
        reason: str,
        reflection: int | None = None,
    ) -> None:
        """Count the vote; a skill whose harmful votes now clearly outweigh its helpful ones
        gets a retire proposal."""
        if tag not in TAGS:
            raise InvalidContent(f"tag must be helpful, harmful or neutral, got {tag!r}")
        before = self.snapshot(skill_id)
        self.apply_change(before, {tag: getattr(before, tag) + 1}, f"tag {tag}", actor)
        if trace_id:
            self.add_evidence_in_tx(
                skill_id, trace_id, reason or tag, actor, time.time(), reflection=reflection
            )
        after = self.snapshot(skill_id)
        if tag == "harmful" and clearly_harmful(after.helpful, after.harmful):
            reason = (
                f"{after.harmful} harmful against {after.helpful} helpful votes: harmful "
                "outweighs helpful with 95% confidence"
            )
            self.propose_retire_in_tx(skill_id, reason, actor=actor)

    def add_evidence_in_tx(
        self,
        skill_id: str,
        trace_id: str,
        reason: str,
        source: str,
        at: float,
        *,
        reflection: int | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO evidence (skill_id, trace_id, reason, source, created_at, "
            "reflection_seq) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [skill_id, trace_id, reason, source, at, reflection],
        )

    def by_day(self, skillbook: str, *, since: float) -> list[DailySkills]:
        """Per UTC day since `since`: skills proposed, approved, and archived or deleted."""
        rows = self._db.execute(
            "SELECT date(e.at, 'unixepoch') AS day, "
            "sum(e.action = 'create'), "
            "sum(json_extract(e.after_json, '$.status') = 'active' AND (e.before_json IS NULL "
            "    OR json_extract(e.before_json, '$.status') != 'active')), "
            "sum(e.action = 'delete' OR (json_extract(e.after_json, '$.status') = 'archived' "
            "    AND json_extract(e.before_json, '$.status') != 'archived')) "
            "FROM skill_events e JOIN skills s ON s.id = e.skill_id "
            "WHERE s.skillbook = ? AND e.at >= ? GROUP BY day ORDER BY day",
            [skillbook, since],
        ).fetchall()
        return [DailySkills(d, int(p or 0), int(a or 0), int(r or 0)) for d, p, a, r in rows]

    def outcomes(self, skill_id: str) -> SkillOutcome:
        """Episodes since the skill was created, split by whether it was injected."""
        skill = self.snapshot(skill_id)
        rows = self._db.execute(
            _OUTCOME_SQL, {"book": skill.skillbook, "since": skill.created_at, "skill": skill_id}
        ).fetchall()
        scores: dict[str, list[float]] = {}
        marked: dict[str, bool] = {}
        for episode_id, injected, score, label in rows:
            marked[episode_id] = bool(injected)
            value = score if score is not None else label_score(label) if label else None
            if value is not None:
                scores.setdefault(episode_id, []).append(float(value))
        arms = {
            flag: _arm([eid for eid, was in marked.items() if was is flag], scores)
            for flag in (True, False)
        }
        with_it, without = arms[True], arms[False]
        difference = None
        if with_it.mean_score is not None and without.mean_score is not None:
            difference = round(with_it.mean_score - without.mean_score, 4)
        return SkillOutcome(
            skill_id, skill.created_at, with_it, without, difference, _note(with_it, without)
        )

    def evidence(self, skill_id: str) -> list[Evidence]:
        rows = self._db.execute(
            "SELECT trace_id, reason, source, created_at, reflection_seq FROM evidence "
            "WHERE skill_id = ? ORDER BY seq",
            [skill_id],
        ).fetchall()
        return [Evidence(*row) for row in rows]

    def history(self, skill_id: str) -> list[SkillEvent]:
        rows = self._db.execute(
            "SELECT revision, action, actor, at, before_json, after_json, note, detail_json "
            "FROM skill_events WHERE skill_id = ? ORDER BY seq",
            [skill_id],
        ).fetchall()
        return [
            SkillEvent(
                rev, action, actor, at, json.loads(before) if before else None, json.loads(after),
                note, json.loads(detail) if detail else None,
            )
            for rev, action, actor, at, before, after, note, detail in rows
        ]  # fmt: skip

    def apply_change(
        self,
        before: Skill,
        changes: dict[str, Any],
        action: str,
        actor: str,
        *,
        now: float | None = None,
        bump: bool = True,
        note: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Update a skill inside the caller's transaction: one new revision and its history
        event. The skillbook's version moves when the change touches an active skill, unless
        `bump` is False (an import changes many skills and bumps once)."""
        now = time.time() if now is None else now
        assignments = ", ".join(f"{key} = ?" for key in changes)
        self._db.execute(
            f"UPDATE skills SET {assignments}, revision = revision + 1, updated_at = ? "
            "WHERE id = ?",
            [*changes.values(), now, before.id],
        )
        after = self.snapshot(before.id)
        self.record_event(
            before.id, after.revision, action, actor, before, after, now, note, detail=detail
        )
        if bump and "active" in (before.status, after.status):
            self._skillbooks.bump_version(after.skillbook)

    def record_event(
        self,
        skill_id: str,
        revision: int,
        action: str,
        actor: str,
        before: Skill | dict[str, Any] | None,
        after: Skill | dict[str, Any],
        at: float,
        note: str | None = None,
        *,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO skill_events (skill_id, revision, action, actor, at, before_json, "
            "after_json, note, detail_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                skill_id, revision, action, actor, at, _snap(before), _snap(after), note,
                None if detail is None else json.dumps(detail),
            ],
        )  # fmt: skip


_OUTCOME_SQL = """
WITH eps AS (
    SELECT id, session_key FROM episodes WHERE skillbook = :book AND last_at >= :since
),
marked AS (
    SELECT DISTINCT t.episode_id AS id FROM traces AS t, json_each(t.injected_skill_ids) AS j
    WHERE t.skillbook = :book AND t.created_at >= :since AND t.episode_id IS NOT NULL
      AND t.injected_skill_ids IS NOT NULL AND j.value = :skill
),
rated AS (
    SELECT e.id AS episode_id, f.score, f.label FROM eps AS e
    JOIN feedback AS f ON f.skillbook = :book AND f.session_id = e.session_key
    UNION ALL
    SELECT t.episode_id, f.score, f.label FROM feedback AS f JOIN traces AS t ON t.id = f.trace_id
    WHERE t.episode_id IN (SELECT id FROM eps)
)
SELECT e.id, e.id IN (SELECT id FROM marked), r.score, r.label
FROM eps AS e LEFT JOIN rated AS r ON r.episode_id = e.id
"""


def _arm(episodes: list[str], scores: dict[str, list[float]]) -> OutcomeArm:
    means = [sum(scores[e]) / len(scores[e]) for e in episodes if e in scores]
    mean = round(sum(means) / len(means), 4) if means else None
    return OutcomeArm(len(episodes), len(means), mean)


def _note(with_it: OutcomeArm, without: OutcomeArm) -> str:
    if with_it.episodes == 0:
        return (
            "no data: no episode has had this skill injected yet "
            "(episodes form when the learner groups traces)"
        )
    if with_it.with_feedback == 0:
        return "no data: no episode it was injected into has feedback yet"
    if without.with_feedback == 0:
        return "nothing to compare: no comparable episode without it has feedback yet"
    return (
        "observational: episodes with and without it differ in more than this skill, "
        "so read the difference as a hint, not an effect"
    )


def _refuse_deleted(skill: Skill, doing: str) -> None:
    if skill.deleted_at is not None:
        raise InvalidTransition(
            f"cannot {doing} skill {skill.id}: it is deleted (restore it first)"
        )


def _past(action: str) -> str:
    return {"approve": "approved", "reject": "rejected", "archive": "archived"}.get(
        action, "restored"
    )


def _snap(state: Skill | dict[str, Any] | None) -> str | None:
    if state is None:
        return None
    if isinstance(state, Skill):
        return json.dumps({key: getattr(state, key) for key in SNAPSHOT_KEYS})
    return json.dumps({key: state[key] for key in SNAPSHOT_KEYS})
