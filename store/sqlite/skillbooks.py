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
from store.records import Skillbook, SkillbookSettings, SkillCounts
from store.rules import SETTINGS, check_settings
from store.sqlite.transaction import write_transaction

ENSURE_SKILLBOOK = (
    "INSERT INTO skillbooks (name, created_at, updated_at) "
    "VALUES (?1, ?2, ?2) ON CONFLICT (name) DO NOTHING"
)
_SELECT = (
    "SELECT name, version, token_budget, ranking, auto_approve, created_at, updated_at "
    "FROM skillbooks"
)


class SQLiteSkillbooks:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def ensure(self, name: str) -> None:
        self._db.execute(ENSURE_SKILLBOOK, [name, time.time()])

    def bump_version(self, name: str) -> None:
        """Call inside the write transaction that changed what `name` injects."""
        self._db.execute(
            "UPDATE skillbooks SET version = version + 1, updated_at = ? WHERE name = ?",
            [time.time(), name],
        )

    def versions(self) -> dict[str, int]:
        rows = self._db.execute("SELECT name, version FROM skillbooks")
        return {name: version for name, version in rows}

    def exists(self, name: str) -> bool:
        found = self._db.execute("SELECT 1 FROM skillbooks WHERE name = ?", [name])
        return found.fetchone() is not None

    def get(self, name: str) -> Skillbook:
        row = self._db.execute(f"{_SELECT} WHERE name = ?", [name]).fetchone()
        if row is None:
            raise NotFound(f"no skillbook named {name!r}")
        return _shape(row, self._counts(name))

    def list_all(self) -> list[Skillbook]:
        rows = self._db.execute(f"{_SELECT} ORDER BY name").fetchall()
        return [_shape(row, self._counts(row[0])) for row in rows]

    def update_settings(self, name: str, changes: dict[str, Any]) -> Skillbook:
        unknown = set(changes) - set(SETTINGS)
        if unknown:
            raise InvalidContent(f"unknown setting(s): {', '.join(sorted(unknown))}")
        check_settings(changes)
        with write_transaction(self._db):
            self.ensure(name)
            self.store_settings(name, changes)
            self.bump_version(name)
        return self.get(name)

    def store_settings(self, name: str, changes: dict[str, Any]) -> None:
        """Write already checked settings; the caller's transaction, the caller's version bump."""
        for key, value in changes.items():
            stored = int(value) if key == "auto_approve" and value is not None else value
            self._db.execute(f"UPDATE skillbooks SET {key} = ? WHERE name = ?", [stored, name])

    def _counts(self, name: str) -> SkillCounts:
        rows = self._db.execute(
            "SELECT status, count(*) FROM skills WHERE skillbook = ? GROUP BY status", [name]
        )
        return SkillCounts(**dict(rows.fetchall()))


def _shape(row: tuple[Any, ...], counts: SkillCounts) -> Skillbook:
    name, version, budget, ranking, auto, created, updated = row
    settings = SkillbookSettings(budget, ranking, None if auto is None else bool(auto))
    return Skillbook(name, version, settings, counts, created, updated)
