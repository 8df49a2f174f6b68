"""store/sqlite/transfer.py and store/skillbook_document.py: export and import of a whole
skillbook; through them store/sqlite/skills.py, store/sqlite/skillbooks.py and store/rules.py."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from store.errors import InvalidContent, NotFound
from store.records import as_json as J
from store.sqlite import SQLiteStore
from store.sqlite.db import open_database

TABLES = ("skillbooks", "skills", "evidence", "skill_events")


def fresh(path: Path) -> sqlite_utils.Database:
    db = open_database(path)
    on(db).migrate()
    return db


def on(db: sqlite_utils.Database) -> SQLiteStore:
    """The store's repositories over the test's own connection (which also dumps the tables)."""
    return SQLiteStore.on(db)


def dump(db: sqlite_utils.Database) -> dict[str, list[tuple[Any, ...]]]:
    return {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}


@pytest.fixture
def db(tmp_path: Path) -> sqlite_utils.Database:
    return fresh(tmp_path / "x.db")


@pytest.fixture
def ids(db: sqlite_utils.Database) -> dict[str, str]:
    """Fill skillbook "book" with skills that went through every kind of change; their ids."""
    ids: dict[str, str] = {}

    def new(key: str, section: str, content: str, *then: str, **extra: Any) -> str:
        ids[key] = J(on(db).skills.create("book", section, content, actor="learner", **extra))["id"]
        for action in then:
            on(db).skills.transition(ids[key], action, actor="alice")
        return ids[key]

    retry = new("retry", "tools", "Retry flaky tool calls once", "approve")
    on(db).skills.edit(retry, content="Retry a flaky tool call once, then stop", actor="alice")
    on(db).skills.tag(retry, "helpful", actor="judge", trace_id="t1")
    on(db).skills.tag(retry, "helpful", actor="judge", trace_id="t2", reason="saved a run")
    new("tests", "coding", "Run the tests before committing", "approve",
        evidence=[("t3", "broke main")])  # fmt: skip
    types = new("types", "coding", "Read the types first", "approve")
    on(db).skills.tag(types, "harmful", actor="judge", trace_id="t4")
    new("pending", "coding", "Prefer small diffs")
    new("old", "tools", "Use grep before find", "approve", "archive")
    undo = new("undo", "style", "Name things for what they do", "approve")
    on(db).skills.edit(undo, content="Name everything with one letter", actor="mallory")
    on(db).skills.rollback(undo, 2, actor="alice")
    new("no", "style", "Write very long functions", "reject")
    on(db).skillbooks.update_settings("book", {"token_budget": 300, "auto_approve": False})
    return ids


def exported(db: sqlite_utils.Database, name: str = "book") -> dict[str, Any]:
    """What a file on disk would hold."""
    document: dict[str, Any] = json.loads(json.dumps(J(on(db).transfer.export_json(name))))
    return document


def test_export_is_the_whole_skillbook(db: sqlite_utils.Database, ids: dict[str, str]) -> None:
    document = exported(db)
    assert document["format"] == "skillproxy.skillbook/1"
    assert document["settings"] == {
        "token_budget": 300,
        "ranking": None,
        "auto_approve": False,
        "max_active": None,
    }
    assert [s["id"] for s in document["skills"]] == list(ids.values())
    retry = document["skills"][0]
    assert retry["helpful"] == 2 and retry["revision"] == 5
    assert [e["trace_id"] for e in retry["evidence"]] == ["t1", "t2"]
    assert [h["action"] for h in retry["history"]] == [
        "create", "approve", "edit", "tag helpful", "tag helpful",
    ]  # fmt: skip
    with pytest.raises(NotFound):
        on(db).transfer.export_json("nope")


def test_import_into_a_fresh_database_gives_the_same_export(
    db: sqlite_utils.Database, ids: dict[str, str], tmp_path: Path
) -> None:
    document = exported(db)
    other = fresh(tmp_path / "other.db")
    summary = J(on(other).transfer.import_json("book", document, actor="ops"))
    assert summary == {"created": 7, "updated": 0, "unchanged": 0, "archived": 0, "remapped": {}}
    assert exported(other) == document
    assert on(other).transfer.export_markdown("book") == on(db).transfer.export_markdown("book")


def test_reimport_changes_nothing(db: sqlite_utils.Database, ids: dict[str, str]) -> None:
    before = dump(db)
    summary = J(on(db).transfer.import_json("book", exported(db), actor="ops", mode="replace"))
    assert summary == {"created": 0, "updated": 0, "unchanged": 7, "archived": 0, "remapped": {}}
    assert dump(db) == before


def test_merge_updates_a_changed_skill_and_merges_evidence(
    db: sqlite_utils.Database, ids: dict[str, str]
) -> None:
    document = exported(db)
    version = J(on(db).skillbooks.get("book"))["version"]
    changed = document["skills"][1]
    changed.update(content="Run the full test suite before committing", helpful=3)
    changed["evidence"].append(
        {"trace_id": "t9", "reason": "caught a bug", "source": "judge", "created_at": 1.5}
    )
    untouched = document["skills"][0]
    untouched["evidence"].append(
        {"trace_id": "t8", "reason": "", "source": "person", "created_at": 2.5}
    )
    summary = J(on(db).transfer.import_json("book", document, actor="ops"))
    assert summary == {"created": 0, "updated": 1, "unchanged": 6, "archived": 0, "remapped": {}}
    skill = J(on(db).skills.get(changed["id"]))
    assert skill["content"] == "Run the full test suite before committing"
    assert skill["helpful"] == 3 and skill["revision"] == changed["revision"] + 1
    last = skill["history"][-1]
    assert (last["action"], last["actor"], last["revision"]) == ("import", "ops", skill["revision"])
    assert last["before"]["content"] == "Run the tests before committing"
    assert last["after"]["content"] == skill["content"] and last["after"]["helpful"] == 3
    assert [e["trace_id"] for e in skill["evidence"]] == ["t3", "t9"]
    assert J(on(db).skills.evidence(untouched["id"]))[-1]["trace_id"] == "t8"
    assert J(on(db).skills.get(untouched["id"]))["revision"] == untouched["revision"]
    assert J(on(db).skillbooks.get("book"))["version"] == version + 1


def test_replace_archives_skills_the_document_leaves_out(
    db: sqlite_utils.Database, ids: dict[str, str]
) -> None:
    document = exported(db)
    left_out = {ids["tests"], ids["pending"], ids["no"]}
    document["skills"] = [s for s in document["skills"] if s["id"] not in left_out]
    merged = J(on(db).transfer.import_json("book", document, actor="ops"))
    assert merged["archived"] == 0 and J(on(db).skills.get(ids["tests"]))["status"] == "active"
    summary = J(on(db).transfer.import_json("book", document, actor="ops", mode="replace"))
    assert summary == {"created": 0, "updated": 0, "unchanged": 4, "archived": 2, "remapped": {}}
    for skill_id in (ids["tests"], ids["pending"]):
        skill = J(on(db).skills.get(skill_id))
        assert skill["status"] == "archived"
        assert (skill["history"][-1]["action"], skill["history"][-1]["actor"]) == ("archive", "ops")
    assert J(on(db).skills.get(ids["no"]))["status"] == "rejected"


def test_another_skillbooks_export_imports_under_new_ids_and_again_changes_nothing(
    db: sqlite_utils.Database, ids: dict[str, str]
) -> None:
    document = exported(db)
    before = J(on(db).transfer.export_json("book"))
    first = J(on(db).transfer.import_json("other", document, actor="ops"))
    assert first["created"] == 7 and set(first["remapped"]) == {s["id"] for s in document["skills"]}
    assert not set(first["remapped"].values()) & set(first["remapped"])
    copied = {s["id"]: s for s in J(on(db).transfer.export_json("other"))["skills"]}
    for skill in document["skills"]:
        twin = copied[first["remapped"][skill["id"]]]
        assert (twin["content"], twin["status"], twin["evidence"]) == (
            skill["content"], skill["status"], skill["evidence"],
        )  # fmt: skip
        assert [h["action"] for h in twin["history"]] == [h["action"] for h in skill["history"]]
    again = J(on(db).transfer.import_json("other", document, actor="ops"))
    assert again == {**first, "created": 0, "unchanged": 7}
    assert J(on(db).transfer.export_json("book")) == before  # the source is untouched


def test_settings_and_version_follow_the_document(
    db: sqlite_utils.Database, ids: dict[str, str]
) -> None:
    document = exported(db)
    document["settings"]["ranking"] = "relevance"
    version = J(on(db).skillbooks.get("book"))["version"]
    assert J(on(db).transfer.import_json("book", document, actor="ops"))["unchanged"] == 7
    book = J(on(db).skillbooks.get("book"))
    assert book["settings"]["ranking"] == "relevance" and book["version"] == version + 1


def test_imported_ids_are_never_generated_again(
    db: sqlite_utils.Database, ids: dict[str, str], tmp_path: Path
) -> None:
    document = exported(db)
    document["skills"] = document["skills"][-1:]  # the highest id number, alone
    other = fresh(tmp_path / "other.db")
    on(other).transfer.import_json("book", document, actor="ops")
    made = [
        J(on(other).skills.create("book", "style", f"Strategy number {i}", actor="p"))
        for i in range(9)
    ]
    assert len({s["id"] for s in made} | {document["skills"][0]["id"]}) == 10


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        del target[last]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set("format", "skillproxy.skillbook/2"), r"document\.format must be"),
        (_set("skills.2.status", "live"), r"skills\[2\] \(\S+\)\.status must be one of"),
        (_set("skills.1.content", "x" * 401), r"skills\[1\] \(\S+\)\.content: .*at most 400"),
        (_set("skills.0.content", "one\ntwo lines"), r"skills\[0\] \(\S+\)\.content: .*single"),
        (_delete("skills.3.section"), r"skills\[3\] is missing section"),
        (_set("skills.0.surprise", 1), r"skills\[0\] has unknown field\(s\): surprise"),
        (_set("skills.0.helpful", -1), r"skills\[0\] \(\S+\)\.helpful must be a whole number"),
        (_set("skills.0.helpful", True), r"\.helpful must be a whole number"),
        (_set("skills.0.section", "Bad/Section"), r"\.section: section must be"),
        (_set("skills.0.evidence.0.trace_id", ""), r"\.evidence\[0\]\.trace_id must be"),
        (_set("skills.0.history.1.revision", 1), r"\.history\[1\]\.revision"),
        (_set("skills.0.history.0.after", {"content": "x"}), r"\.history\[0\]\.after is missing"),
        (_set("skills.0.revision", 9), r"history ends at revision 5, the skill is at 9"),
        (_set("settings.ranking", "random"), r"document\.settings: ranking must be"),
        (_delete("settings.auto_approve"), r"document\.settings is missing auto_approve"),
        (_set("version", 0), r"document\.version must be"),
        (_set("skills", {}), r"document\.skills must be a list"),
    ],
)
def test_an_invalid_document_is_refused_and_changes_nothing(
    db: sqlite_utils.Database,
    ids: dict[str, str],
    mutate: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    document = exported(db)
    document["skills"][0]["content"] = "A change that would be applied"
    mutate(document)
    before = dump(db)
    with pytest.raises(InvalidContent, match=message):
        on(db).transfer.import_json("book", document, actor="ops", mode="replace")
    assert dump(db) == before


def test_duplicate_ids_and_unknown_modes_are_refused(
    db: sqlite_utils.Database, ids: dict[str, str]
) -> None:
    document = exported(db)
    document["skills"].append(copy.deepcopy(document["skills"][0]))
    with pytest.raises(InvalidContent, match=r"skills\[7\] \(\S+\): the id appears more than once"):
        on(db).transfer.import_json("book", document, actor="ops")
    with pytest.raises(InvalidContent, match="mode must be one of merge, replace"):
        on(db).transfer.import_json("book", exported(db), actor="ops", mode="overwrite")
    with pytest.raises(InvalidContent, match="document must be an object"):
        on(db).transfer.import_json("book", [], actor="ops")


def test_markdown_shows_active_skills_by_section_and_pending_for_review(
    db: sqlite_utils.Database,
    ids: dict[str, str],
) -> None:
    text = J(on(db).transfer.export_markdown("book"))
    assert text == (
        "# Skillbook: book\n"
        "\n"
        "## coding\n"
        "\n"
        "- Run the tests before committing\n"
        "- Read the types first\n"
        "\n"
        "## style\n"
        "\n"
        "- Name things for what they do\n"
        "\n"
        "## tools\n"
        "\n"
        "- Retry a flaky tool call once, then stop\n"
        "\n"
        "# Pending review\n"
        "\n"
        f"- `{ids['pending']}` (coding): Prefer small diffs\n"
    )
    on(db).skills.tag(ids["types"], "helpful", actor="judge")
    on(db).skills.tag(ids["types"], "helpful", actor="judge")
    reordered = J(on(db).transfer.export_markdown("book"))
    assert reordered.index("Read the types") < reordered.index("Run the tests")
    assert J(on(db).transfer.export_markdown("book")) == reordered
    with pytest.raises(NotFound):
        on(db).transfer.export_markdown("nope")


def test_markdown_of_an_empty_skillbook(tmp_path: Path) -> None:
    db = fresh(tmp_path / "x.db")
    on(db).skillbooks.update_settings("empty", {"token_budget": 10})
    assert on(db).transfer.export_markdown("empty") == "# Skillbook: empty\n\n_No active skills._\n"
