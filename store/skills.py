"""Skills: their text, status, counters, evidence, and an append-only history of every change.

Every change is one write transaction that updates the skill, appends a `skill_events` row with
the state before and after (so any revision can be shown and rolled back to), and bumps the
skillbook's version when the change could alter what is injected.

Status transitions (anything else is an `InvalidTransition`):

    approve   pending | rejected -> active
    reject    pending            -> rejected
    archive   pending | active   -> archived
    restore   archived -> active,  rejected -> pending
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Literal

import sqlite_utils

from store import skillbooks
from store.errors import InvalidContent, InvalidTransition, NotFound
from store.transaction import write_transaction

Status = Literal["pending", "active", "rejected", "archived"]
Tag = Literal["helpful", "harmful", "neutral"]
STATUSES: tuple[Status, ...] = ("pending", "active", "rejected", "archived")
MAX_CONTENT_CHARS = 400
MIN_CONTENT_CHARS = 8
MAX_SECTION_CHARS = 40
_SECTION = re.compile(r"^[a-z0-9][a-z0-9 _-]*$")

TRANSITIONS: dict[str, dict[str, Status]] = {
    "approve": {"pending": "active", "rejected": "active"},
    "reject": {"pending": "rejected"},
    "archive": {"pending": "archived", "active": "archived"},
    "restore": {"archived": "active", "rejected": "pending"},
}
_COLUMNS = (
    "id, skillbook, section, content, status, helpful, harmful, neutral, revision, "
    "created_at, updated_at"
)
SNAPSHOT_KEYS = ("section", "content", "status", "helpful", "harmful", "neutral")


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


def create(
    db: sqlite_utils.Database,
    skillbook: str,
    section: str,
    content: str,
    *,
    actor: str,
    status: Status = "pending",
    evidence: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    section = normalise_section(section)
    content = check_content(content)
    now = time.time()
    with write_transaction(db):
        skillbooks.ensure(db, skillbook)
        seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM skills").fetchone()[0]
        skill_id = f"{_slug(section)}-{seq:05d}"
        db.execute(
            "INSERT INTO skills (seq, id, skillbook, section, content, status, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [seq, skill_id, skillbook, section, content, status, now, now],
        )
        record_event(db, skill_id, 1, "create", actor, None, _snapshot(db, skill_id), now)
        for item in evidence or []:
            add_evidence_in_tx(db, skill_id, item["trace_id"], item.get("reason", ""), actor, now)
        if status == "active":
            skillbooks.bump_version(db, skillbook)
    return get(db, skill_id)


def get(db: sqlite_utils.Database, skill_id: str, *, detail: bool = True) -> dict[str, Any]:
    row = db.execute(f"SELECT {_COLUMNS} FROM skills WHERE id = ?", [skill_id]).fetchone()
    if row is None:
        raise NotFound(f"no skill with id {skill_id!r}")
    skill = _shape(row)
    if detail:
        skill["evidence"] = evidence(db, skill_id)
        skill["history"] = history(db, skill_id)
    return skill


def list_skills(
    db: sqlite_utils.Database,
    skillbook: str,
    *,
    status: str | None = None,
    section: str | None = None,
    text: str | None = None,
) -> list[dict[str, Any]]:
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
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM skills WHERE {' AND '.join(where)} ORDER BY seq", params
    ).fetchall()
    return [_shape(row) for row in rows]


def active(db: sqlite_utils.Database, skillbook: str) -> list[dict[str, Any]]:
    return list_skills(db, skillbook, status="active")


def transition(
    db: sqlite_utils.Database, skill_id: str, action: str, *, actor: str
) -> dict[str, Any]:
    if action not in TRANSITIONS:
        raise InvalidTransition(f"unknown action {action!r}")
    with write_transaction(db):
        before = _snapshot(db, skill_id)
        target = TRANSITIONS[action].get(before["status"])
        if target is None:
            allowed = ", ".join(TRANSITIONS[action])
            raise InvalidTransition(
                f"cannot {action} skill {skill_id}: it is {before['status']} "
                f"(only {allowed} skills can be {action}d)"
            )
        apply_change(db, skill_id, before, {"status": target}, action, actor)
    return get(db, skill_id)


def edit(
    db: sqlite_utils.Database,
    skill_id: str,
    *,
    actor: str,
    content: str | None = None,
    section: str | None = None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if content is not None:
        changes["content"] = check_content(content)
    if section is not None:
        changes["section"] = normalise_section(section)
    if not changes:
        raise InvalidContent("nothing to edit: give content and/or section")
    with write_transaction(db):
        before = _snapshot(db, skill_id)
        apply_change(db, skill_id, before, changes, "edit", actor)
    return get(db, skill_id)


def rollback(
    db: sqlite_utils.Database, skill_id: str, revision: int, *, actor: str
) -> dict[str, Any]:
    """Make the skill's text, section and status what they were at `revision` (a new revision)."""
    with write_transaction(db):
        before = _snapshot(db, skill_id)
        row = db.execute(
            "SELECT after_json FROM skill_events WHERE skill_id = ? AND revision = ?",
            [skill_id, revision],
        ).fetchone()
        if row is None:
            raise NotFound(f"skill {skill_id} has no revision {revision}")
        target = json.loads(row[0])
        changes = {k: target[k] for k in ("section", "content", "status")}
        apply_change(db, skill_id, before, changes, f"rollback to {revision}", actor)
    return get(db, skill_id)


def tag(
    db: sqlite_utils.Database,
    skill_id: str,
    tag: Tag,
    *,
    actor: str,
    trace_id: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """Count one helpful/harmful/neutral vote at once, with the trace that earned it."""
    if tag not in ("helpful", "harmful", "neutral"):
        raise InvalidContent(f"tag must be helpful, harmful or neutral, got {tag!r}")
    with write_transaction(db):
        before = _snapshot(db, skill_id)
        apply_change(db, skill_id, before, {tag: before[tag] + 1}, f"tag {tag}", actor)
        if trace_id:
            add_evidence_in_tx(db, skill_id, trace_id, reason or tag, actor, time.time())
    return get(db, skill_id)


def add_evidence_in_tx(
    db: sqlite_utils.Database, skill_id: str, trace_id: str, reason: str, source: str, at: float
) -> None:
    db.execute(
        "INSERT INTO evidence (skill_id, trace_id, reason, source, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [skill_id, trace_id, reason, source, at],
    )


def evidence(db: sqlite_utils.Database, skill_id: str) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT trace_id, reason, source, created_at FROM evidence WHERE skill_id = ? ORDER BY seq",
        [skill_id],
    ).fetchall()
    return [dict(zip(("trace_id", "reason", "source", "created_at"), r, strict=True)) for r in rows]


def history(db: sqlite_utils.Database, skill_id: str) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT revision, action, actor, at, before_json, after_json FROM skill_events "
        "WHERE skill_id = ? ORDER BY seq",
        [skill_id],
    ).fetchall()
    return [
        {
            "revision": rev,
            "action": action,
            "actor": actor,
            "at": at,
            "before": json.loads(before) if before else None,
            "after": json.loads(after),
        }
        for rev, action, actor, at, before, after in rows
    ]


def apply_change(
    db: sqlite_utils.Database,
    skill_id: str,
    before: dict[str, Any],
    changes: dict[str, Any],
    action: str,
    actor: str,
    *,
    now: float | None = None,
    bump: bool = True,
) -> None:
    """Update a skill inside the caller's transaction: one new revision and its history event.

    The skillbook's version moves when the change touches an active skill, unless `bump` is
    False (an import changes many skills and bumps once)."""
    now = time.time() if now is None else now
    assignments = ", ".join(f"{key} = ?" for key in changes)
    db.execute(
        f"UPDATE skills SET {assignments}, revision = revision + 1, updated_at = ? WHERE id = ?",
        [*changes.values(), now, skill_id],
    )
    after = _snapshot(db, skill_id)
    record_event(db, skill_id, after["revision"], action, actor, before, after, now)
    if bump and "active" in (before["status"], after["status"]):
        skillbooks.bump_version(db, after["skillbook"])


def record_event(
    db: sqlite_utils.Database,
    skill_id: str,
    revision: int,
    action: str,
    actor: str,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    at: float,
) -> None:
    def snap(state: dict[str, Any] | None) -> str | None:
        return None if state is None else json.dumps({k: state[k] for k in SNAPSHOT_KEYS})

    db.execute(
        "INSERT INTO skill_events (skill_id, revision, action, actor, at, before_json, after_json) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [skill_id, revision, action, actor, at, snap(before), snap(after)],
    )


def _snapshot(db: sqlite_utils.Database, skill_id: str) -> dict[str, Any]:
    return get(db, skill_id, detail=False)


def _shape(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = [c.strip() for c in _COLUMNS.split(",")]
    return dict(zip(keys, row, strict=True))


def _slug(section: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", section).strip("-")[:24] or "skill"
