"""The SQLite engine behind the store's interface.

Covers store/__init__.py (open_store by URL), store/sqlite/__init__.py (SQLiteStore implements
every protocol of store/interfaces.py), store/sqlite/db.py (how a file is opened),
store/sqlite/transaction.py, store/worker.py (work off the event loop) and store/records.py
(the JSON the admin API answers with).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path

import pytest

from store import interfaces, open_store
from store.errors import NotFound
from store.records import Skill, SkillDetail, SkillEvent, as_json
from store.sqlite import SQLiteStore
from store.sqlite.db import PAGE_SIZE, open_database
from store.sqlite.transaction import write_transaction
from store.worker import StoreWorker

REPOSITORIES = {
    "traces": interfaces.TraceRepository,
    "skillbooks": interfaces.SkillbookRepository,
    "skills": interfaces.SkillRepository,
    "transfer": interfaces.TransferRepository,
    "episodes": interfaces.EpisodeRepository,
    "feedback": interfaces.FeedbackRepository,
    "learner": interfaces.LearnerRepository,
    "canaries": interfaces.CanaryRepository,
}


def protocol_methods(protocol: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(protocol).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


@pytest.mark.parametrize("area", sorted(REPOSITORIES))
def test_the_sqlite_engine_implements_every_method_with_the_same_parameters(
    tmp_path: Path, area: str
) -> None:
    store = open_store(str(tmp_path / "x.db"))
    repository = getattr(store, area)
    for name, wanted in protocol_methods(REPOSITORIES[area]).items():
        method = getattr(repository, name, None)
        assert method is not None, f"store.{area}.{name} is missing"
        got = inspect.signature(method)
        assert list(got.parameters) == [p for p in wanted.parameters if p != "self"], name
        for param in got.parameters.values():
            assert param.kind == wanted.parameters[param.name].kind, f"{area}.{name}({param})"
            assert param.default == wanted.parameters[param.name].default, f"{area}.{name}"
    store.close()


def test_the_store_protocol_names_every_repository() -> None:
    names = {n for n, v in vars(interfaces.Store).items() if isinstance(v, property)}
    assert names == {*REPOSITORIES, "url"}


@pytest.mark.parametrize(
    ("url", "relative"),
    [("sqlite:///nested/dir/a.db", "nested/dir/a.db"), ("nested/dir/b.db", "nested/dir/b.db")],
)
def test_open_store_takes_a_url_or_a_path_and_creates_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, relative: str
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(url)
    assert store.migrate()  # a new file: every migration applies
    store.skillbooks.ensure("book")
    store.close()
    assert (tmp_path / relative).is_file()
    again = open_store(f"sqlite:///{tmp_path / relative}")
    assert again.migrate() == [] and [b.name for b in again.skillbooks.list_all()] == ["book"]
    again.close()


def test_a_new_file_is_in_wal_mode_with_large_pages(tmp_path: Path) -> None:
    db = open_database(tmp_path / "x.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    db.conn.close()


def test_a_transaction_commits_whole_rolls_back_whole_and_nested_joins_the_outer(
    tmp_path: Path,
) -> None:
    db = open_database(tmp_path / "x.db")
    db.execute("CREATE TABLE t (n INTEGER)")
    with write_transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
        with write_transaction(db):  # joins: no second BEGIN
            db.execute("INSERT INTO t VALUES (2)")
    with pytest.raises(RuntimeError), write_transaction(db):
        db.execute("INSERT INTO t VALUES (3)")
        with write_transaction(db):
            db.execute("INSERT INTO t VALUES (4)")
        raise RuntimeError("undo 3 and 4")
    assert [n for (n,) in db.execute("SELECT n FROM t ORDER BY n")] == [1, 2]
    assert not db.conn.in_transaction
    db.conn.close()


def test_repositories_over_a_callers_connection_share_it(tmp_path: Path) -> None:
    db = open_database(tmp_path / "x.db")
    store = SQLiteStore.on(db)
    store.migrate()
    with write_transaction(db):
        store.skillbooks.ensure("inside")
        assert store.skillbooks.exists("inside")  # same connection: sees its own write
        db.execute("ROLLBACK")
        db.execute("BEGIN")
    assert not store.skillbooks.exists("inside")
    assert store.path == str(tmp_path / "x.db")
    db.conn.close()


async def test_the_worker_runs_everything_on_one_thread_off_the_loop(tmp_path: Path) -> None:
    worker = StoreWorker(str(tmp_path / "x.db"))
    loop_thread = threading.get_ident()
    threads = await asyncio.gather(*(worker.run(lambda s: threading.get_ident()) for _ in range(5)))
    assert len(set(threads)) == 1 and threads[0] != loop_thread
    assert await worker.run(lambda s: s.migrate())
    with pytest.raises(NotFound):
        await worker.run(lambda s: s.skills.get("nope-00001"))
    assert await worker.run(lambda s: s.traces.count()) == 0  # still usable after a refusal
    worker.close()


def test_records_become_the_json_the_api_has_always_answered() -> None:
    skill = Skill("tone-00001", "book", "tone", "When upset, apologise first.", "active",
                  2, 1, 0, 3, 10.0, 12.0)  # fmt: skip
    event = SkillEvent(1, "create", "alice", 10.0, None, {"content": "x"})
    detail = SkillDetail("tone-00001", "book", "tone", "When upset, apologise first.", "active",
                         2, 1, 0, 3, 10.0, 12.0, evidence=[], history=[event])  # fmt: skip
    assert as_json(skill) == {
        "id": "tone-00001", "skillbook": "book", "section": "tone",
        "content": "When upset, apologise first.", "status": "active", "helpful": 2,
        "harmful": 1, "neutral": 0, "revision": 3, "created_at": 10.0, "updated_at": 12.0,
        "supersedes": None, "superseded_by": None, "prior_status": None, "deleted_at": None,
        "retire_reason": None, "retire_proposed_at": None, "contradicts": None,
    }  # fmt: skip
    assert as_json(detail)["history"] == [
        {"revision": 1, "action": "create", "actor": "alice", "at": 10.0, "before": None,
         "after": {"content": "x"}, "note": None, "detail": None}
    ]  # fmt: skip
    assert as_json(detail)["canary"] is None
    assert as_json([skill, skill]) == [as_json(skill)] * 2
    assert as_json({"plain": 1}) == {"plain": 1}
