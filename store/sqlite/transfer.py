"""A whole skillbook as one document: exported losslessly, imported back in one transaction.

The JSON document carries every skill in every status with its counters, evidence and full
history, so importing an export into a fresh database and exporting again gives an equal
document: it is a backup and the way to move a skillbook between deployments. The document's
shape, checks and Markdown view are in `store.skillbook_document`. Deleted skills are left out.

Import validates the whole document before it writes anything, then applies it in one write
transaction. Skill ids are unique across the store, so a document can be imported into
another skillbook of the same store (a copy): its ids are remapped. Per skill in the document:

    id in this skillbook          unchanged if its state matches; otherwise set to the
    (or imported here before       document's state as a new revision with an "import"
     under a new id)               history event
    id in another skillbook       inserted under a new id, remembered as its `origin` so a
                                  second import of the same document finds it; the summary's
                                  `remapped` maps document ids to the new ones
    new id                        inserted verbatim, with its evidence and history

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
from store.records import ImportSummary, Skill, as_json
from store.rules import SNAPSHOT_KEYS, TRANSITIONS, skill_id_for
from store.skillbook_document import (
    EVIDENCE_KEYS,
    FORMAT,
    ID_NUMBER,
    LINK_KEYS,
    MODES,
    SKILL_COLUMNS,
    markdown,
    validated,
)
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
            return self._document(name)

    def _document(self, name: str) -> dict[str, Any]:
        book = self._skillbooks.get(name)
        exported = []
        for skill in self._skills.find(name):
            data = as_json(skill)
            item = {key: data[key] for key in (*SKILL_COLUMNS, "updated_at")}
            item.update({key: data[key] for key in LINK_KEYS if data[key] is not None})
            item["evidence"] = [  # a reflection's number means nothing in another store
                {key: e[key] for key in EVIDENCE_KEYS}
                for e in as_json(self._skills.evidence(skill.id))
            ]
            item["history"] = [  # a canary decision's figures only where there are some
                {k: v for k, v in event.items() if k != "detail" or v is not None}
                for event in as_json(self._skills.history(skill.id))
            ]
            exported.append(item)
        return {
            "format": FORMAT,
            "skillbook": name,
            "version": book.version,
            "settings": as_json(book.settings),
            "skills": exported,
        }

    def copy(self, source: str, target: str, *, actor: str) -> ImportSummary:
        """A new skillbook `target` with everything `source` has, under new ids."""
        with write_transaction(self._db):
            if self._skillbooks.exists(target):
                raise Conflict(f"skillbook {target!r} already exists: copy into a new name")
            document = self._document(source)
            summary = self._import(target, document, actor, "merge", by="copy")
            self._skillbooks.record_event(target, "copy", actor, {"from": source})
        return summary

    def export_markdown(self, name: str) -> str:
        with self._read_snapshot():
            self._skillbooks.get(name)  # NotFound for an unknown skillbook
            active = self._skills.find(name, status="active")
            pending = self._skills.find(name, status="pending")
        return markdown(name, active, pending)

    def import_json(
        self, name: str, document: object, *, actor: str, mode: str = "merge"
    ) -> ImportSummary:
        with write_transaction(self._db):
            return self._import(name, document, actor, mode, by="import")

    def _import(
        self, name: str, document: object, actor: str, mode: str, *, by: str
    ) -> ImportSummary:
        if mode not in MODES:
            raise InvalidContent(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        doc = validated(document)
        counts = {"created": 0, "updated": 0, "unchanged": 0, "archived": 0}
        now = time.time()
        is_new = not self._skillbooks.exists(name)
        if is_new:
            self._db.execute(
                "INSERT INTO skillbooks (name, version, created_at, updated_at, created_by) "
                "VALUES (?, ?, ?, ?, ?)",
                [name, doc["version"], now, now, by],
            )
            self._skillbooks.record_event(name, "create", actor, {"by": by}, now)
        self._skillbooks.refuse_deleted(name)
        settings_changed = self._apply_settings(name, doc["settings"])
        local = self._local_ids(name, doc["skills"])
        touched: dict[str, list[str]] = {"created": [], "updated": []}
        for skill in doc["skills"]:
            skill = _relinked(skill, local)
            outcome = self._import_skill(name, skill, actor, now)
            counts[outcome] += 1
            touched.get(outcome, []).append(skill["id"])
        if mode == "replace":
            kept = {local.get(skill["id"], skill["id"]) for skill in doc["skills"]}
            counts["archived"] = self._archive_absent(name, kept, actor, now)
        moved = counts["created"] + counts["updated"] + counts["archived"]
        if not is_new and (settings_changed or moved):
            self._skillbooks.bump_version(name)
        detail = {"mode": mode, **counts, **touched}  # who brought which skills in, and when
        self._skillbooks.record_event(name, "import", actor, detail, now)
        remapped = {old: new for old, new in local.items() if old != new}
        return ImportSummary(**counts, remapped=remapped)

    def _local_ids(self, name: str, skills: list[dict[str, Any]]) -> dict[str, str]:
        """Document id -> the id it has (or will have) in skillbook `name`: its own, the one
        an earlier import of it was given, or a new one when another skillbook has the id."""
        local: dict[str, str] = {}
        foreign: list[dict[str, Any]] = []
        next_seq = self._db.execute("SELECT coalesce(max(seq), 0) + 1 FROM skills").fetchone()[0]
        for skill in skills:
            doc_id = skill["id"]
            row = self._db.execute(
                "SELECT id FROM skills WHERE skillbook = ? AND (id = ? OR origin = ?) "
                "ORDER BY id = ? DESC LIMIT 1",
                [name, doc_id, doc_id, doc_id],
            ).fetchone()
            if row is not None:
                local[doc_id] = row[0]
            elif self._db.execute("SELECT 1 FROM skills WHERE id = ?", [doc_id]).fetchone():
                foreign.append(skill)
            else:
                local[doc_id] = doc_id
                number = ID_NUMBER.search(doc_id)
                next_seq = max(next_seq, int(number.group(1)) + 1 if number else 0)
        for skill in foreign:  # numbered past every id this import keeps, so none collide
            local[skill["id"]] = skill_id_for(skill["section"], next_seq)
            next_seq += 1
        return local

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
        if current.skillbook != name:  # `_local_ids` remaps these; kept as the last guard
            raise Conflict(
                f"skill {skill['id']!r} belongs to skillbook {current.skillbook!r}, not {name!r}"
            )
        self._merge_evidence(skill)
        if all(getattr(current, key) == skill[key] for key in SNAPSHOT_KEYS):
            return "unchanged"
        changes = {key: skill[key] for key in SNAPSHOT_KEYS}
        self._end_canary(current, "edit", actor)
        self._skills.apply_change(current, changes, "import", actor, now=now, bump=False)
        return "updated"

    def _insert(self, name: str, skill: dict[str, Any]) -> None:
        """`create` makes ids from `seq`; placing an imported skill at or after its id's
        number keeps a later create from generating the same id."""
        seq = self._db.execute("SELECT coalesce(max(seq), 0) + 1 FROM skills").fetchone()[0]
        number = ID_NUMBER.search(skill["id"])
        seq = max(seq, int(number.group(1)) if number else 0)
        columns = (*SKILL_COLUMNS, "updated_at", *LINK_KEYS, "origin")
        self._db.execute(
            f"INSERT INTO skills (seq, skillbook, {', '.join(columns)}) "
            f"VALUES ({', '.join('?' * (len(columns) + 2))})",
            [seq, name, *(skill.get(column) for column in columns)],
        )
        for event in skill["history"]:
            self._skills.record_event(
                skill["id"], event["revision"], event["action"], event["actor"],
                event["before"], event["after"], event["at"], event.get("note"),
                detail=event.get("detail"),
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
                change = {"status": "archived", "prior_status": skill.status}
                self._end_canary(skill, "archive", actor)
                self._skills.apply_change(skill, change, "archive", actor, now=now, bump=False)
                archived += 1
        return archived

    def _end_canary(self, skill: Skill, action: str, actor: str) -> None:
        """An imported change ends the skill's running canary as the same change by hand
        would: its figures would judge a text or a status no longer served."""
        if self._skills.canaries is not None:
            self._skills.canaries.on_transition(skill, action, actor, None)


def _relinked(skill: dict[str, Any], local: dict[str, str]) -> dict[str, Any]:
    """The document's skill under its local id, its links to other skills of the document
    under theirs, and its document id as `origin` when that differs."""
    out = dict(skill)
    out["id"] = local[skill["id"]]
    if out["id"] != skill["id"]:
        out["origin"] = skill["id"]
    for key in ("supersedes", "superseded_by", "contradicts"):
        if out.get(key) is not None:
            out[key] = local.get(out[key], out[key])
    return out
