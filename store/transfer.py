"""A whole skillbook as one document: exported losslessly, imported back in one transaction.

The JSON document carries every skill in every status with its counters, evidence and full
history, so importing an export into a fresh database and exporting again gives an equal
document: it is a backup and the way to move a skillbook between deployments. The Markdown
export is for people and prompts: active skills by section, then those awaiting review, with no
timestamps so that two exports diff cleanly.

Import validates the whole document before it writes anything, then applies it in one write
transaction. Per skill id in the document:

    new id                    inserted verbatim, with its evidence and history
    id in this skillbook      unchanged if its state matches; otherwise set to the document's
                              state as a new revision with an "import" history event
    id in another skillbook   Conflict

Evidence the database lacks is merged in either way. `mode="replace"` also archives this
skillbook's pending and active skills the document leaves out; nothing is ever deleted. A
skillbook the import creates takes the document's version (nothing here can have cached it);
an existing one moves on by exactly one if anything changed.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlite_utils

from store import skillbooks, skills
from store.errors import Conflict, InvalidContent, NotFound

# Private in their modules; shared so that history rows and settings rules match exactly.
from store.skillbooks import check_settings
from store.skills import SNAPSHOT_KEYS as STATE_KEYS
from store.skills import record_event
from store.transaction import write_transaction

FORMAT = "skillproxy.skillbook/1"
MODES = ("merge", "replace")
COUNTERS = ("helpful", "harmful", "neutral")
_DOCUMENT_KEYS = ("format", "skillbook", "version", "settings", "skills")
_COLUMNS = ("id", "section", "content", "status", *COUNTERS, "revision", "created_at")
_SKILL_KEYS = (*_COLUMNS, "updated_at", "evidence", "history")
_EVIDENCE_KEYS = ("trace_id", "reason", "source", "created_at")
_EVENT_KEYS = ("revision", "action", "actor", "at", "before", "after")
_ID_NUMBER = re.compile(r"-(\d{1,18})$")
T = TypeVar("T")
R = TypeVar("R")


def export_json(db: sqlite_utils.Database, name: str) -> dict[str, Any]:
    with _read_snapshot(db):
        book = skillbooks.get(db, name)
        exported = []
        for skill in skills.list_skills(db, name):
            del skill["skillbook"]
            skill["evidence"] = skills.evidence(db, skill["id"])
            skill["history"] = skills.history(db, skill["id"])
            exported.append(skill)
    return {
        "format": FORMAT,
        "skillbook": name,
        "version": book["version"],
        "settings": book["settings"],
        "skills": exported,
    }


def export_markdown(db: sqlite_utils.Database, name: str) -> str:
    with _read_snapshot(db):
        skillbooks.get(db, name)  # NotFound for an unknown skillbook
        active = skills.list_skills(db, name, status="active")
        pending = skills.list_skills(db, name, status="pending")
    lines = [f"# Skillbook: {name}", ""]
    if not active:
        lines += ["_No active skills._", ""]
    for section in sorted({skill["section"] for skill in active}):
        ranked = sorted((s for s in active if s["section"] == section), key=_usefulness)
        lines += [f"## {section}", "", *(f"- {s['content']}" for s in ranked), ""]
    if pending:
        lines += ["# Pending review", ""]
        lines += [f"- `{s['id']}` ({s['section']}): {s['content']}" for s in pending]
        lines.append("")
    return "\n".join(lines)


def import_json(
    db: sqlite_utils.Database, name: str, document: object, *, actor: str, mode: str = "merge"
) -> dict[str, int]:
    if mode not in MODES:
        raise InvalidContent(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    doc = _validated(document)
    summary = {"created": 0, "updated": 0, "unchanged": 0, "archived": 0}
    now = time.time()
    with write_transaction(db):
        is_new = db.execute("SELECT 1 FROM skillbooks WHERE name = ?", [name]).fetchone() is None
        if is_new:
            db.execute(
                "INSERT INTO skillbooks (name, version, created_at, updated_at) "
                "VALUES (?, ?, ?, ?)",
                [name, doc["version"], now, now],
            )
        settings_changed = _apply_settings(db, name, doc["settings"])
        for skill in doc["skills"]:
            summary[_import_skill(db, name, skill, actor, now)] += 1
        if mode == "replace":
            kept = {skill["id"] for skill in doc["skills"]}
            summary["archived"] = _archive_absent(db, name, kept, actor, now)
        moved = summary["created"] + summary["updated"] + summary["archived"]
        if not is_new and (settings_changed or moved):
            skillbooks.bump_version(db, name)
    return summary


@contextmanager
def _read_snapshot(db: sqlite_utils.Database) -> Iterator[None]:
    """Several SELECTs see one state of the file, even while another process writes to it."""
    if db.conn.in_transaction:
        yield
        return
    db.conn.execute("BEGIN")
    try:
        yield
    finally:
        db.conn.execute("COMMIT")


def _usefulness(skill: dict[str, Any]) -> tuple[int, float, str]:
    return (skill["harmful"] - skill["helpful"], skill["created_at"], skill["id"])


def _apply_settings(db: sqlite_utils.Database, name: str, settings: dict[str, Any]) -> bool:
    if skillbooks.get(db, name)["settings"] == settings:
        return False
    skillbooks.store_settings(db, name, settings)
    return True


def _import_skill(
    db: sqlite_utils.Database, name: str, skill: dict[str, Any], actor: str, now: float
) -> str:
    try:
        current = skills.get(db, skill["id"], detail=False)
    except NotFound:
        _insert(db, name, skill)
        return "created"
    if current["skillbook"] != name:
        raise Conflict(
            f"skill {skill['id']!r} belongs to skillbook {current['skillbook']!r}, not {name!r}"
        )
    _merge_evidence(db, skill)
    if all(current[key] == skill[key] for key in STATE_KEYS):
        return "unchanged"
    changes = {key: skill[key] for key in STATE_KEYS}
    skills.apply_change(db, current["id"], current, changes, "import", actor, now=now, bump=False)
    return "updated"


def _insert(db: sqlite_utils.Database, name: str, skill: dict[str, Any]) -> None:
    """`skills.create` makes ids from `seq`; placing an imported skill at or after its id's
    number keeps a later create from generating the same id."""
    seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM skills").fetchone()[0]
    number = _ID_NUMBER.search(skill["id"])
    seq = max(seq, int(number.group(1)) if number else 0)
    columns = (*_COLUMNS, "updated_at")
    db.execute(
        f"INSERT INTO skills (seq, skillbook, {', '.join(columns)}) "
        f"VALUES ({', '.join('?' * (len(columns) + 2))})",
        [seq, name, *(skill[column] for column in columns)],
    )
    for event in skill["history"]:
        record_event(
            db, skill["id"], event["revision"], event["action"], event["actor"],
            event["before"], event["after"], event["at"],
        )  # fmt: skip
    _merge_evidence(db, skill)


def _merge_evidence(db: sqlite_utils.Database, skill: dict[str, Any]) -> None:
    for item in skill["evidence"]:
        skills.add_evidence_in_tx(
            db, skill["id"], item["trace_id"], item["reason"], item["source"], item["created_at"]
        )


def _archive_absent(
    db: sqlite_utils.Database, name: str, kept: set[str], actor: str, now: float
) -> int:
    archived = 0
    for skill in skills.list_skills(db, name):
        if skill["id"] not in kept and skill["status"] in skills.TRANSITIONS["archive"]:
            skills.apply_change(
                db,
                skill["id"],
                skill,
                {"status": "archived"},
                "archive",
                actor,
                now=now,
                bump=False,
            )
            archived += 1
    return archived


# Validation: every problem names where it is, as `skills[2] (coding-00003).status`.


def _validated(document: object) -> dict[str, Any]:
    doc = _object(document, _DOCUMENT_KEYS, "document")
    if doc["format"] != FORMAT:
        raise InvalidContent(f"document.format must be {FORMAT!r}, got {doc['format']!r}")
    _text(doc["skillbook"], "document.skillbook")
    settings = _object(doc["settings"], skillbooks.SETTINGS, "document.settings")
    _rule(check_settings, settings, "document.settings")
    if not isinstance(doc["skills"], list):
        raise InvalidContent("document.skills must be a list")
    checked: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(doc["skills"]):
        skill = _object(raw, _SKILL_KEYS, f"skills[{index}]")
        skill_id = _text(skill["id"], f"skills[{index}].id")
        where = f"skills[{index}] ({skill_id})"
        if skill_id in checked:
            raise InvalidContent(f"{where}: the id appears more than once")
        checked[skill_id] = _skill(skill, where)
    return {
        "version": _whole(doc["version"], "document.version", minimum=1),
        "settings": settings,
        "skills": list(checked.values()),
    }


def _skill(skill: dict[str, Any], where: str) -> dict[str, Any]:
    skill["section"] = _rule(
        skills.normalise_section, _text(skill["section"], f"{where}.section"), f"{where}.section"
    )
    skill["content"] = _rule(
        skills.check_content, _text(skill["content"], f"{where}.content"), f"{where}.content"
    )
    _status(skill["status"], f"{where}.status")
    for key in COUNTERS:
        _whole(skill[key], f"{where}.{key}")
    revision = _whole(skill["revision"], f"{where}.revision", minimum=1)
    _number(skill["created_at"], f"{where}.created_at")
    _number(skill["updated_at"], f"{where}.updated_at")
    skill["evidence"] = _list(skill["evidence"], f"{where}.evidence")
    for i, raw in enumerate(skill["evidence"]):
        at = f"{where}.evidence[{i}]"
        item = _object(raw, _EVIDENCE_KEYS, at)
        _text(item["trace_id"], f"{at}.trace_id")
        for key in ("reason", "source"):
            _text(item[key], f"{at}.{key}", empty=True)
        _number(item["created_at"], f"{at}.created_at")
    skill["history"] = _list(skill["history"], f"{where}.history")
    last = 0
    for i, raw in enumerate(skill["history"]):
        at = f"{where}.history[{i}]"
        event = _object(raw, _EVENT_KEYS, at)
        last = _whole(
            event["revision"], f"{at}.revision (revisions must increase)", minimum=last + 1
        )
        _text(event["action"], f"{at}.action")
        _text(event["actor"], f"{at}.actor")
        _number(event["at"], f"{at}.at")
        if event["before"] is not None:
            _state(event["before"], f"{at}.before")
        _state(event["after"], f"{at}.after")
    if skill["history"] and last != revision:
        raise InvalidContent(f"{where}.history ends at revision {last}, the skill is at {revision}")
    return skill


def _state(value: object, where: str) -> None:
    """A history snapshot: rollback reads these back, so they must be whole."""
    state = _object(value, STATE_KEYS, where)
    _text(state["section"], f"{where}.section")
    _text(state["content"], f"{where}.content")
    _status(state["status"], f"{where}.status")
    for key in COUNTERS:
        _whole(state[key], f"{where}.{key}")


def _object(value: object, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidContent(f"{where} must be an object")
    missing = [key for key in keys if key not in value]
    if missing:
        raise InvalidContent(f"{where} is missing {', '.join(missing)}")
    unknown = sorted(str(key) for key in value if key not in keys)
    if unknown:
        raise InvalidContent(f"{where} has unknown field(s): {', '.join(unknown)}")
    return dict(value)


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidContent(f"{where} must be a list")
    return list(value)


def _text(value: object, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise InvalidContent(f"{where} must be a {'' if empty else 'non-empty '}string")
    return value


def _whole(value: object, where: str, *, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum:
        raise InvalidContent(f"{where} must be a whole number, {minimum} or more, got {value!r}")
    return value


def _number(value: object, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidContent(f"{where} must be a finite number, got {value!r}")


def _status(value: object, where: str) -> None:
    if value not in skills.STATUSES:
        raise InvalidContent(f"{where} must be one of {', '.join(skills.STATUSES)}, got {value!r}")


def _rule(check: Callable[[T], R], value: T, where: str) -> R:
    """Run one of the store's own rules, prefixing its message with where the value was."""
    try:
        return check(value)
    except InvalidContent as exc:
        raise InvalidContent(f"{where}: {exc}") from exc
