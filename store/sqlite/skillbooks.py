"""The `skillbooks` table: names, per-skillbook settings, and the version that moves on change.

The version is what lets every proxy process cache the rendered skillbook: a process polls
`versions()` and re-renders only the skillbooks whose number moved. Any change that could alter
what is injected (a skill approved, edited, archived, re-ranked by a tag; a setting; a freeze,
a delete) bumps it.

A skillbook named by traffic is created on first use (zero-config) and says so: `created_by`
is `traffic` and `created_at` is when it was first seen. Deleting is soft: a deleted skillbook
injects nothing and is left out of listings until restored, with its skills as they were.
Freezing stores the injected set as it is served (effective settings and active skills), so
its bytes stay the same until it is unfrozen, whatever is approved meanwhile.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import sqlite_utils

from store.errors import InvalidContent, InvalidTransition, NotFound
from store.records import (
    FrozenSet,
    Skill,
    Skillbook,
    SkillbookEvent,
    SkillbookSettings,
    SkillCounts,
)
from store.rules import SETTINGS, check_settings
from store.sqlite.transaction import write_transaction

ENSURE_SKILLBOOK = (
    "INSERT INTO skillbooks (name, created_at, updated_at, created_by) "
    "VALUES (?1, ?2, ?2, 'traffic') ON CONFLICT (name) DO NOTHING"
)
"""What the trace writer runs for each skillbook a batch names."""
_SELECT = (
    "SELECT name, version, token_budget, ranking, auto_approve, max_active, created_at, "
    "updated_at, created_by, deleted_at, frozen_version FROM skillbooks"
)


class SQLiteSkillbooks:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def ensure(self, name: str, *, by: str = "admin", actor: str = "admin") -> bool:
        """Create `name` if it is new (inside the caller's transaction); True if it was."""
        now = time.time()
        cursor = self._db.execute(
            "INSERT INTO skillbooks (name, created_at, updated_at, created_by) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            [name, now, now, by],
        )
        created = cursor.rowcount == 1
        if created:
            self.record_event(name, "create", actor, {"by": by}, now)
        return created

    def refuse_deleted(self, name: str) -> None:
        row = self._db.execute("SELECT deleted_at FROM skillbooks WHERE name = ?", [name])
        found = row.fetchone()
        if found is not None and found[0] is not None:
            raise InvalidTransition(f"skillbook {name!r} is deleted: restore it first")

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

    def list_all(self, *, deleted: bool = False) -> list[Skillbook]:
        """Live skillbooks by name; `deleted=True` lists the deleted ones instead."""
        where = "deleted_at IS NOT NULL" if deleted else "deleted_at IS NULL"
        rows = self._db.execute(f"{_SELECT} WHERE {where} ORDER BY name").fetchall()
        return [_shape(row, self._counts(row[0])) for row in rows]

    def update_settings(
        self, name: str, changes: dict[str, Any], *, actor: str = "admin"
    ) -> Skillbook:
        unknown = set(changes) - set(SETTINGS)
        if unknown:
            raise InvalidContent(f"unknown setting(s): {', '.join(sorted(unknown))}")
        check_settings(changes)
        with write_transaction(self._db):
            self.ensure(name, actor=actor)
            self.refuse_deleted(name)
            current = dataclasses.asdict(self.get(name).settings)
            changes = {k: v for k, v in changes.items() if current.get(k) != v}
            if changes:  # a setting set to what it is moves nothing
                self.store_settings(name, changes)
                self.record_event(name, "settings", actor, changes)
                self.bump_version(name)
        return self.get(name)

    def store_settings(self, name: str, changes: dict[str, Any]) -> None:
        """Write already checked settings; the caller's transaction, the caller's version bump."""
        for key, value in changes.items():
            stored = int(value) if key == "auto_approve" and value is not None else value
            self._db.execute(f"UPDATE skillbooks SET {key} = ? WHERE name = ?", [stored, name])

    def freeze(
        self,
        name: str,
        *,
        actor: str,
        default_budget: int,
        default_ranking: str,
        active: Callable[[], list[Skill]],
    ) -> Skillbook:
        """Keep serving what `name` injects now until `unfreeze`: its active skills (read by
        `active()` inside this transaction) under its effective settings."""
        with write_transaction(self._db):
            book = self.get(name)
            if book.deleted_at is not None:
                raise InvalidTransition(f"skillbook {name!r} is deleted: restore it first")
            if book.frozen_version is not None:
                return book
            own = book.settings
            skills = active()
            self.bump_version(name)
            version = book.version + 1
            frozen = {
                "version": version,
                "token_budget": default_budget if own.token_budget is None else own.token_budget,
                "ranking": own.ranking or default_ranking,
                "skills": [dataclasses.asdict(skill) for skill in skills],
            }
            self._db.execute(
                "UPDATE skillbooks SET frozen_version = ?, frozen_json = ? WHERE name = ?",
                [version, json.dumps(frozen), name],
            )
            detail = {"version": version, "skills": [skill.id for skill in skills]}
            self.record_event(name, "freeze", actor, detail)
            self.stop_canaries(name, actor, "the skillbook was frozen")
        return self.get(name)

    def unfreeze(self, name: str, *, actor: str) -> Skillbook:
        with write_transaction(self._db):
            book = self.get(name)
            if book.frozen_version is None:
                return book
            self._db.execute(
                "UPDATE skillbooks SET frozen_version = NULL, frozen_json = NULL WHERE name = ?",
                [name],
            )
            self.record_event(name, "unfreeze", actor, {"was": book.frozen_version})
            self.bump_version(name)
        return self.get(name)

    def frozen_set(self, name: str) -> FrozenSet | None:
        row = self._db.execute("SELECT frozen_json FROM skillbooks WHERE name = ?", [name])
        found = row.fetchone()
        if found is None or found[0] is None:
            return None
        data = json.loads(found[0])
        skills = [Skill(**skill) for skill in data["skills"]]
        return FrozenSet(data["version"], data["token_budget"], data["ranking"], skills)

    def delete(self, name: str, *, actor: str) -> Skillbook:
        with write_transaction(self._db):
            book = self.get(name)
            if book.deleted_at is not None:
                raise InvalidTransition(f"skillbook {name!r} is already deleted")
            now = time.time()
            self._db.execute("UPDATE skillbooks SET deleted_at = ? WHERE name = ?", [now, name])
            self.record_event(name, "delete", actor, {}, now)
            self.stop_canaries(name, actor, "the skillbook was deleted")
            self.bump_version(name)
        return self.get(name)

    def restore(self, name: str, *, actor: str) -> Skillbook:
        with write_transaction(self._db):
            book = self.get(name)
            if book.deleted_at is None:
                raise InvalidTransition(f"skillbook {name!r} is not deleted")
            self._db.execute("UPDATE skillbooks SET deleted_at = NULL WHERE name = ?", [name])
            self.record_event(name, "restore", actor, {})
            self.bump_version(name)
        return self.get(name)

    def stop_canaries(self, name: str, actor: str, reason: str) -> None:
        """End its running canaries, skills left as they were: a frozen or deleted skillbook
        injects no canary, so its sessions would no longer say anything about one."""
        self._db.execute(
            "UPDATE canaries SET status = 'stopped', ended_at = ?, ended_by = ?, end_reason = ? "
            "WHERE skillbook = ? AND status = 'running'",
            [time.time(), actor, reason, name],
        )

    def history(self, name: str) -> list[SkillbookEvent]:
        """Oldest first; a skillbook created by traffic starts with a `create` line of its
        first-seen time (the trace writer records no event of its own)."""
        book = self.get(name)
        rows = self._db.execute(
            "SELECT action, actor, at, detail_json FROM skillbook_events WHERE skillbook = ? "
            "ORDER BY seq",
            [name],
        ).fetchall()
        events = [SkillbookEvent(a, who, at, json.loads(detail)) for a, who, at, detail in rows]
        if not any(event.action == "create" for event in events):
            first = SkillbookEvent(
                "create", book.created_by, book.created_at, {"by": book.created_by}
            )
            events.insert(0, first)
        return events

    def record_event(
        self, name: str, action: str, actor: str, detail: dict[str, Any], at: float | None = None
    ) -> None:
        self._db.execute(
            "INSERT INTO skillbook_events (skillbook, action, actor, at, detail_json) "
            "VALUES (?, ?, ?, ?, ?)",
            [name, action, actor, time.time() if at is None else at, json.dumps(detail)],
        )

    def _counts(self, name: str) -> SkillCounts:
        rows = self._db.execute(
            "SELECT status, count(*) FROM skills WHERE skillbook = ? AND deleted_at IS NULL "
            "GROUP BY status",
            [name],
        )
        return SkillCounts(**dict(rows.fetchall()))


def _shape(row: tuple[Any, ...], counts: SkillCounts) -> Skillbook:
    name, version, budget, ranking, auto, cap, created, updated, by, deleted, frozen = row
    settings = SkillbookSettings(budget, ranking, None if auto is None else bool(auto), cap)
    return Skillbook(name, version, settings, counts, created, updated, by, deleted, frozen)
