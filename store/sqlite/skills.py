"""Skills: their text, status, counters, evidence, and an append-only history of every change.

Every change is one write transaction that updates the skill, appends a `skill_events` row with
the state before and after (so any revision can be shown and rolled back to), and bumps the
skillbook's version when the change could alter what is injected. The transitions allowed are
in `store.rules`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import sqlite_utils

from store.errors import InvalidContent, InvalidTransition, NotFound
from store.records import Evidence, Skill, SkillDetail, SkillEvent, Status, Tag
from store.rules import (
    SNAPSHOT_KEYS,
    STATUSES,
    TAGS,
    TRANSITIONS,
    check_content,
    normalise_section,
    skill_id_for,
)
from store.sqlite.skillbooks import SQLiteSkillbooks
from store.sqlite.transaction import write_transaction

COLUMNS = (
    "id", "skillbook", "section", "content", "status", "helpful", "harmful", "neutral",
    "revision", "created_at", "updated_at",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM skills"


class SQLiteSkills:
    def __init__(self, db: sqlite_utils.Database, skillbooks: SQLiteSkillbooks) -> None:
        self._db = db
        self._skillbooks = skillbooks

    def create(
        self,
        skillbook: str,
        section: str,
        content: str,
        *,
        actor: str,
        status: Status = "pending",
        evidence: Iterable[tuple[str, str]] = (),
    ) -> SkillDetail:
        with write_transaction(self._db):
            skill_id = self.create_in_tx(
                skillbook, section, content, actor=actor, status=status, evidence=evidence
            )
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
    ) -> str:
        """`create` inside the caller's transaction; returns the new id."""
        section = normalise_section(section)
        content = check_content(content)
        now = time.time()
        db = self._db
        self._skillbooks.ensure(skillbook)
        seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM skills").fetchone()[0]
        skill_id = skill_id_for(section, seq)
        db.execute(
            "INSERT INTO skills (seq, id, skillbook, section, content, status, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [seq, skill_id, skillbook, section, content, status, now, now],
        )
        self.record_event(skill_id, 1, "create", actor, None, self.snapshot(skill_id), now)
        for trace_id, reason in evidence:
            self.add_evidence_in_tx(skill_id, trace_id, reason, actor, now)
        if status == "active":
            self._skillbooks.bump_version(skillbook)
        return skill_id

    def get(self, skill_id: str) -> SkillDetail:
        s = self.snapshot(skill_id)
        return SkillDetail(
            s.id, s.skillbook, s.section, s.content, s.status, s.helpful, s.harmful, s.neutral,
            s.revision, s.created_at, s.updated_at,
            evidence=self.evidence(skill_id), history=self.history(skill_id),
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
    ) -> list[Skill]:
        if status is not None and status not in STATUSES:
            raise InvalidContent(f"status must be one of {', '.join(STATUSES)}")
        where, params = ["skillbook = ?"], [skillbook]
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
        rows = self._db.execute(
            f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY seq", params
        ).fetchall()
        return [Skill(*row) for row in rows]

    def active(self, skillbook: str) -> list[Skill]:
        return self.find(skillbook, status="active")

    def transition(self, skill_id: str, action: str, *, actor: str) -> SkillDetail:
        if action not in TRANSITIONS:
            raise InvalidTransition(f"unknown action {action!r}")
        with write_transaction(self._db):
            before = self.snapshot(skill_id)
            target = TRANSITIONS[action].get(before.status)
            if target is None:
                allowed = ", ".join(TRANSITIONS[action])
                raise InvalidTransition(
                    f"cannot {action} skill {skill_id}: it is {before.status} "
                    f"(only {allowed} skills can be {action}d)"
                )
            self.apply_change(before, {"status": target}, action, actor)
        return self.get(skill_id)

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
            self.apply_change(self.snapshot(skill_id), changes, "edit", actor)
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
            target = json.loads(row[0])
            changes = {k: target[k] for k in ("section", "content", "status")}
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
        self, skill_id: str, tag: str, *, actor: str, trace_id: str | None, reason: str
    ) -> None:
        if tag not in TAGS:
            raise InvalidContent(f"tag must be helpful, harmful or neutral, got {tag!r}")
        before = self.snapshot(skill_id)
        self.apply_change(before, {tag: getattr(before, tag) + 1}, f"tag {tag}", actor)
        if trace_id:
            self.add_evidence_in_tx(skill_id, trace_id, reason or tag, actor, time.time())

    def add_evidence_in_tx(
        self, skill_id: str, trace_id: str, reason: str, source: str, at: float
    ) -> None:
        self._db.execute(
            "INSERT INTO evidence (skill_id, trace_id, reason, source, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [skill_id, trace_id, reason, source, at],
        )

    def evidence(self, skill_id: str) -> list[Evidence]:
        rows = self._db.execute(
            "SELECT trace_id, reason, source, created_at FROM evidence WHERE skill_id = ? "
            "ORDER BY seq",
            [skill_id],
        ).fetchall()
        return [Evidence(*row) for row in rows]

    def history(self, skill_id: str) -> list[SkillEvent]:
        rows = self._db.execute(
            "SELECT revision, action, actor, at, before_json, after_json FROM skill_events "
            "WHERE skill_id = ? ORDER BY seq",
            [skill_id],
        ).fetchall()
        return [
            SkillEvent(
                rev, action, actor, at, json.loads(before) if before else None, json.loads(after)
            )
            for rev, action, actor, at, before, after in rows
        ]

    def apply_change(
        self,
        before: Skill,
        changes: dict[str, Any],
        action: str,
        actor: str,
        *,
        now: float | None = None,
        bump: bool = True,
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
        self.record_event(before.id, after.revision, action, actor, before, after, now)
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
    ) -> None:
        self._db.execute(
            "INSERT INTO skill_events (skill_id, revision, action, actor, at, before_json, "
            "after_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [skill_id, revision, action, actor, at, _snap(before), _snap(after)],
        )


def _snap(state: Skill | dict[str, Any] | None) -> str | None:
    if state is None:
        return None
    if isinstance(state, Skill):
        return json.dumps({key: getattr(state, key) for key in SNAPSHOT_KEYS})
    return json.dumps({key: state[key] for key in SNAPSHOT_KEYS})
