"""A whole skillbook as one document: exported losslessly, imported back in one transaction.

The JSON document carries every skill in every status with its counters, evidence and full
history, so importing an export into a fresh database and exporting again gives an equal
document: it is a backup and the way to move a skillbook between deployments. The document's
shape, checks and Markdown view are in `store.skillbook_document`.

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

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlite_utils

from store.errors import Conflict, InvalidContent, NotFound
from store.records import ImportSummary, as_json
from store.rules import SNAPSHOT_KEYS, TRANSITIONS
from store.skillbook_document import FORMAT, ID_NUMBER, MODES, SKILL_COLUMNS, markdown, validated
from store.sqlite.skillbooks import SQLiteSkillbooks
from store.sqlite.skills import SQLiteSkills
from store.sqlite.transaction import write_transaction


class SQLiteTransfer:
    def __init__(
        self, db: sqlite_utils.Database, skillbooks: SQLiteSkillbooks, skills: SQLiteSkills
    ) -> None:
        self._db = db
        self._skillbooks = skillbooks
        self._skills = skills

    def export_json(self, name: str) -> dict[str, Any]:
        with self._read_snapshot():
            book = self._skillbooks.get(name)
            exported = []
            for skill in self._skills.find(name):
                item = as_json(skill)
                del item["skillbook"]
                item["evidence"] = as_json(self._skills.evidence(skill.id))
                item["history"] = as_json(self._skills.history(skill.id))
                exported.append(item)
        return {
            "format": FORMAT,
            "skillbook": name,
            "version": book.version,
            "settings": as_json(book.settings),
            "skills": exported,
        }

    def export_markdown(self, name: str) -> str:
        with self._read_snapshot():
            self._skillbooks.get(name)  # NotFound for an unknown skillbook
            active = self._skills.find(name, status="active")
            pending = self._skills.find(name, status="pending")
        return markdown(name, active, pending)

    def import_json(
        self, name: str, document: object, *, actor: str, mode: str = "merge"
    ) -> ImportSummary:
        if mode not in MODES:
            raise InvalidContent(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        doc = validated(document)
        summary = {"created": 0, "updated": 0, "unchanged": 0, "archived": 0}
        now = time.time()
        db = self._db
        with write_transaction(db):
            is_new = not self._skillbooks.exists(name)
            if is_new:
                db.execute(
                    "INSERT INTO skillbooks (name, version, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?)",
                    [name, doc["version"], now, now],
                )
            settings_changed = self._apply_settings(name, doc["settings"])
            for skill in doc["skills"]:
                summary[self._import_skill(name, skill, actor, now)] += 1
            if mode == "replace":
                kept = {skill["id"] for skill in doc["skills"]}
                summary["archived"] = self._archive_absent(name, kept, actor, now)
            moved = summary["created"] + summary["updated"] + summary["archived"]
            if not is_new and (settings_changed or moved):
                self._skillbooks.bump_version(name)
        return ImportSummary(**summary)

    @contextmanager
    def _read_snapshot(self) -> Iterator[None]:
        """Several SELECTs see one state of the file, even while another process writes."""
        conn = self._db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def _apply_settings(self, name: str, settings: dict[str, Any]) -> bool:
        if as_json(self._skillbooks.get(name).settings) == settings:
            return False
        self._skillbooks.store_settings(name, settings)
        return True

    def _import_skill(self, name: str, skill: dict[str, Any], actor: str, now: float) -> str:
        try:
            current = self._skills.snapshot(skill["id"])
        except NotFound:
            self._insert(name, skill)
            return "created"
        if current.skillbook != name:
            raise Conflict(
                f"skill {skill['id']!r} belongs to skillbook {current.skillbook!r}, not {name!r}"
            )
        self._merge_evidence(skill)
        if all(getattr(current, key) == skill[key] for key in SNAPSHOT_KEYS):
            return "unchanged"
        changes = {key: skill[key] for key in SNAPSHOT_KEYS}
        self._skills.apply_change(current, changes, "import", actor, now=now, bump=False)
        return "updated"

    def _insert(self, name: str, skill: dict[str, Any]) -> None:
        """`create` makes ids from `seq`; placing an imported skill at or after its id's
        number keeps a later create from generating the same id."""
        seq = self._db.execute("SELECT coalesce(max(seq), 0) + 1 FROM skills").fetchone()[0]
        number = ID_NUMBER.search(skill["id"])
        seq = max(seq, int(number.group(1)) if number else 0)
        columns = (*SKILL_COLUMNS, "updated_at")
        self._db.execute(
            f"INSERT INTO skills (seq, skillbook, {', '.join(columns)}) "
            f"VALUES ({', '.join('?' * (len(columns) + 2))})",
            [seq, name, *(skill[column] for column in columns)],
        )
        for event in skill["history"]:
            self._skills.record_event(
                skill["id"], event["revision"], event["action"], event["actor"],
                event["before"], event["after"], event["at"],
            )  # fmt: skip
        self._merge_evidence(skill)

    def _merge_evidence(self, skill: dict[str, Any]) -> None:
        for item in skill["evidence"]:
            self._skills.add_evidence_in_tx(
                skill["id"], item["trace_id"], item["reason"], item["source"], item["created_at"]
            )

    def _archive_absent(self, name: str, kept: set[str], actor: str, now: float) -> int:
        archived = 0
        for skill in self._skills.find(name):
            if skill.id not in kept and skill.status in TRANSITIONS["archive"]:
                change = {"status": "archived"}
                self._skills.apply_change(skill, change, "archive", actor, now=now, bump=False)
                archived += 1
        return archived
