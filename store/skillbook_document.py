"""The skillbook document (`skillproxy.skillbook/1`): its shape, its checks, its Markdown view.

Engine-independent, so every store backend validates an import the same way before it writes
anything, and renders the same Markdown. Every problem names where it is, as
`skills[2] (coding-00003).status`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

from store.errors import InvalidContent
from store.records import Skill
from store.rules import (
    SETTINGS,
    SNAPSHOT_KEYS,
    STATUSES,
    check_content,
    check_settings,
    normalise_section,
)

FORMAT = "skillproxy.skillbook/1"
MODES = ("merge", "replace")
COUNTERS = ("helpful", "harmful", "neutral")
DOCUMENT_KEYS = ("format", "skillbook", "version", "settings", "skills")
SKILL_COLUMNS = ("id", "section", "content", "status", *COUNTERS, "revision", "created_at")
SKILL_KEYS = (*SKILL_COLUMNS, "updated_at", "evidence", "history")
LINK_KEYS = (
    "supersedes", "superseded_by", "prior_status", "contradicts", "retire_reason",
    "retire_proposed_at",
)  # fmt: skip
NEWER_SETTINGS = ("max_active",)
"""Settings later releases added: a document from before them imports with them unset."""
"""Optional per skill (left out when null): what it rewords, what replaced it, and the
status an archived skill restores to. Documents without them import as before."""
EVIDENCE_KEYS = ("trace_id", "reason", "source", "created_at")
EVENT_KEYS = ("revision", "action", "actor", "at", "before", "after")
ID_NUMBER = re.compile(r"-(\d{1,18})$")
SKILL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
T = TypeVar("T")
R = TypeVar("R")


def markdown(name: str, active: list[Skill], pending: list[Skill]) -> str:
    """Active skills by section (most useful first), then those awaiting review; no
    timestamps, so two exports diff cleanly."""
    lines = [f"# Skillbook: {name}", ""]
    if not active:
        lines += ["_No active skills._", ""]
    for section in sorted({skill.section for skill in active}):
        ranked = sorted((s for s in active if s.section == section), key=_usefulness)
        lines += [f"## {section}", "", *(f"- {s.content}" for s in ranked), ""]
    if pending:
        lines += ["# Pending review", ""]
        lines += [f"- `{s.id}` ({s.section}): {s.content}" for s in pending]
        lines.append("")
    return "\n".join(lines)


def _usefulness(skill: Skill) -> tuple[int, float, str]:
    return (skill.harmful - skill.helpful, skill.created_at, skill.id)


def validated(document: object) -> dict[str, Any]:
    doc = _object(document, DOCUMENT_KEYS, "document")
    if doc["format"] != FORMAT:
        raise InvalidContent(f"document.format must be {FORMAT!r}, got {doc['format']!r}")
    _text(doc["skillbook"], "document.skillbook")
    required = tuple(key for key in SETTINGS if key not in NEWER_SETTINGS)
    settings = _object(doc["settings"], required, "document.settings", optional=NEWER_SETTINGS)
    settings = {key: settings.get(key) for key in SETTINGS}
    _rule(check_settings, settings, "document.settings")
    if not isinstance(doc["skills"], list):
        raise InvalidContent("document.skills must be a list")
    checked: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(doc["skills"]):
        skill = _object(raw, SKILL_KEYS, f"skills[{index}]", optional=LINK_KEYS)
        skill_id = _text(skill["id"], f"skills[{index}].id")
        if not SKILL_ID.match(skill_id):
            raise InvalidContent(
                f"skills[{index}].id must be 1-100 letters, digits, '.', '_' or '-', "
                f"starting with a letter or digit: got {skill_id[:100]!r}"
            )
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
        normalise_section, _text(skill["section"], f"{where}.section"), f"{where}.section"
    )
    skill["content"] = _rule(
        check_content, _text(skill["content"], f"{where}.content"), f"{where}.content"
    )
    _status(skill["status"], f"{where}.status")
    for key in COUNTERS:
        _whole(skill[key], f"{where}.{key}")
    for key in ("supersedes", "superseded_by", "contradicts", "retire_reason"):
        if skill.get(key) is not None:
            _text(skill[key], f"{where}.{key}")
    if skill.get("retire_proposed_at") is not None:
        _number(skill["retire_proposed_at"], f"{where}.retire_proposed_at")
    if skill.get("prior_status") is not None:
        _status(skill["prior_status"], f"{where}.prior_status")
    revision = _whole(skill["revision"], f"{where}.revision", minimum=1)
    _number(skill["created_at"], f"{where}.created_at")
    _number(skill["updated_at"], f"{where}.updated_at")
    skill["evidence"] = _list(skill["evidence"], f"{where}.evidence")
    for i, raw in enumerate(skill["evidence"]):
        at = f"{where}.evidence[{i}]"
        item = _object(raw, EVIDENCE_KEYS, at)
        _text(item["trace_id"], f"{at}.trace_id")
        for key in ("reason", "source"):
            _text(item[key], f"{at}.{key}", empty=True)
        _number(item["created_at"], f"{at}.created_at")
    skill["history"] = _list(skill["history"], f"{where}.history")
    last = 0
    for i, raw in enumerate(skill["history"]):
        at = f"{where}.history[{i}]"
        event = _object(raw, EVENT_KEYS, at, optional=("note", "detail"))
        if event.get("note") is not None:
            _text(event["note"], f"{at}.note", empty=True)
        if event.get("detail") is not None and not isinstance(event["detail"], dict):
            raise InvalidContent(f"{at}.detail must be an object (a decision's figures)")
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
    state = _object(value, SNAPSHOT_KEYS, where)
    _text(state["section"], f"{where}.section")
    _text(state["content"], f"{where}.content")
    _status(state["status"], f"{where}.status")
    for key in COUNTERS:
        _whole(state[key], f"{where}.{key}")


def _object(
    value: object, keys: tuple[str, ...], where: str, *, optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidContent(f"{where} must be an object")
    missing = [key for key in keys if key not in value]
    if missing:
        raise InvalidContent(f"{where} is missing {', '.join(missing)}")
    unknown = sorted(str(key) for key in value if key not in keys and key not in optional)
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
    if value not in STATUSES:
        raise InvalidContent(f"{where} must be one of {', '.join(STATUSES)}, got {value!r}")


def _rule(check: Callable[[T], R], value: T, where: str) -> R:
    """Run one of the store's own rules, prefixing its message with where the value was."""
    try:
        return check(value)
    except InvalidContent as exc:
        raise InvalidContent(f"{where}: {exc}") from exc
