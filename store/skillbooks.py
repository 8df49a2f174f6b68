"""The `skillbooks` table: names, per-skillbook settings, and the version that moves on change.

The version is what lets every proxy process cache the rendered skillbook: a process polls
`versions()` and re-renders only the skillbooks whose number moved. Any change that could alter
what is injected (a skill approved, edited, archived, re-ranked by a tag; a setting) bumps it.
"""

from __future__ import annotations

import time
from typing import Any

import sqlite_utils

from store.errors import InvalidContent, NotFound
from store.transaction import write_transaction

ENSURE_SKILLBOOK = (
    "INSERT INTO skillbooks (name, created_at, updated_at) "
    "VALUES (?1, ?2, ?2) ON CONFLICT (name) DO NOTHING"
)
SETTINGS = ("token_budget", "ranking", "auto_approve")
RANKINGS = ("usefulness", "relevance")


def ensure(db: sqlite_utils.Database, name: str) -> None:
    db.execute(ENSURE_SKILLBOOK, [name, time.time()])


def bump_version(db: sqlite_utils.Database, name: str) -> None:
    """Call inside the write transaction that changed what `name` injects."""
    db.execute(
        "UPDATE skillbooks SET version = version + 1, updated_at = ? WHERE name = ?",
        [time.time(), name],
    )


def versions(db: sqlite_utils.Database) -> dict[str, int]:
    return {name: version for name, version in db.execute("SELECT name, version FROM skillbooks")}


def get(db: sqlite_utils.Database, name: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT name, version, token_budget, ranking, auto_approve, created_at, updated_at "
        "FROM skillbooks WHERE name = ?",
        [name],
    ).fetchone()
    if row is None:
        raise NotFound(f"no skillbook named {name!r}")
    return _shape(row, _counts(db, name))


def list_all(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT name, version, token_budget, ranking, auto_approve, created_at, updated_at "
        "FROM skillbooks ORDER BY name"
    ).fetchall()
    return [_shape(row, _counts(db, row[0])) for row in rows]


def update_settings(
    db: sqlite_utils.Database, name: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Set per-skillbook settings; `None` returns a setting to the configured default."""
    unknown = set(changes) - set(SETTINGS)
    if unknown:
        raise InvalidContent(f"unknown setting(s): {', '.join(sorted(unknown))}")
    check_settings(changes)
    with write_transaction(db):
        ensure(db, name)
        store_settings(db, name, changes)
        bump_version(db, name)
    return get(db, name)


def store_settings(db: sqlite_utils.Database, name: str, changes: dict[str, Any]) -> None:
    """Write already checked settings; the caller's transaction, the caller's version bump."""
    for key, value in changes.items():
        stored = int(value) if key == "auto_approve" and value is not None else value
        db.execute(f"UPDATE skillbooks SET {key} = ? WHERE name = ?", [stored, name])


def check_settings(changes: dict[str, Any]) -> None:
    budget = changes.get("token_budget")
    if budget is not None and (type(budget) is not int or budget < 0):
        raise InvalidContent("token_budget must be a whole number of tokens, 0 or more")
    ranking = changes.get("ranking")
    if ranking is not None and ranking not in RANKINGS:
        raise InvalidContent(f"ranking must be one of {', '.join(RANKINGS)}")
    auto = changes.get("auto_approve")
    if auto is not None and not isinstance(auto, bool):
        raise InvalidContent("auto_approve must be true, false or null")


def _counts(db: sqlite_utils.Database, name: str) -> dict[str, int]:
    counts = {"pending": 0, "active": 0, "rejected": 0, "archived": 0}
    for status, n in db.execute(
        "SELECT status, count(*) FROM skills WHERE skillbook = ? GROUP BY status", [name]
    ):
        counts[status] = n
    return counts


def _shape(row: tuple[Any, ...], counts: dict[str, int]) -> dict[str, Any]:
    name, version, budget, ranking, auto, created, updated = row
    return {
        "name": name,
        "version": version,
        "settings": {
            "token_budget": budget,
            "ranking": ranking,
            "auto_approve": None if auto is None else bool(auto),
        },
        "skills": counts,
        "created_at": created,
        "updated_at": updated,
    }
