"""A store that cannot serve: locked by another process, damaged, deleted. Nothing is patched;
the real database file is broken from outside, as an operator's tool or a failing disk would.

Covers store/worker.py (unavailable calls, lock waits, the health probe), store/errors.py
(StoreUnavailable, StoreCorrupt), store/sqlite/__init__.py and store/sqlite/db.py (which
SQLite failures mean unavailable), proxy/feedback.py and proxy/feedback_queue.py (accepted
feedback is kept), proxy/health.py (`/healthz`), and the admin API's 503.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from store import open_store
from store.errors import StoreCorrupt, StoreUnavailable
from store.sqlite.db import PAGE_SIZE, open_database
from store.worker import LOCK_WAIT_S
from tests.harness import RunningProxy, wait_for

RULE = "When a customer asks for a refund, check the order date before promising anything."


def db_path(proxy: RunningProxy) -> Path:
    return Path(proxy.config.store.location.path)


@contextmanager
def locked(proxy: RunningProxy) -> Iterator[Callable[[], None]]:
    """Another process's connection holding the write lock; call the result to let go early."""
    db = proxy.db()
    db.conn.execute("BEGIN EXCLUSIVE")
    done = False

    def release() -> None:
        nonlocal done
        if not done:
            done = True
            db.conn.execute("ROLLBACK")
            db.conn.close()

    try:
        yield release
    finally:
        release()


def corrupt_pages(path: Path, db: Any) -> None:
    """Garbage over every page but the first (the schema), with nothing left in the WAL that
    would hide it: what a failing disk or a stray write leaves behind."""
    for _ in range(100):
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            break
        time.sleep(0.05)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.seek(PAGE_SIZE)
        fh.write(b"\xa5" * (size - PAGE_SIZE))


def assert_unavailable(response: httpx.Response, fragment: str) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Retry-After"]) >= 1
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "store_unavailable", error
    assert fragment in error["message"], error
    return error


def health(proxy: RunningProxy) -> dict[str, Any]:
    response = httpx.get(proxy.url + "/healthz")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body["traces"]) >= {"queued", "written", "dropped", "lost", "store_errors"}
    return body


def feedback_rows(proxy: RunningProxy) -> list[tuple[Any, ...]]:
    db = proxy.db()
    try:
        return list(db.execute("SELECT trace_id, score, comment FROM feedback ORDER BY seq"))
    finally:
        db.conn.close()


def new_trace(proxy: RunningProxy) -> str:
    answer = httpx.post(proxy.v1 + "/chat/completions", json={"model": "m", "messages": []})
    return answer.headers["X-Trace-Id"]


# Locked by another process ------------------------------------------------------------------


def test_admin_writes_answer_503_json_while_locked_and_wait_once_at_most(
    proxy: RunningProxy,
) -> None:
    proxy.add_skill("support", "refunds", RULE, approve=False)
    body = {"section": "refunds", "content": RULE.replace("refund", "exchange")}
    with locked(proxy):
        started = time.monotonic()
        first = proxy.admin("POST", "/skillbooks/support/skills", json=body)
        assert time.monotonic() - started < LOCK_WAIT_S + 1.5
        assert_unavailable(first, "locked")
        # Queued on the one database thread behind each other, they must not each wait the
        # full lock wait in turn: the store is known to be locked now.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            started = time.monotonic()
            answers = list(
                pool.map(lambda _: proxy.admin("POST", "/skills/refunds-00001/approve"), range(4))
            )
            assert time.monotonic() - started < LOCK_WAIT_S
        for answer in answers:
            assert_unavailable(answer, "locked")
        reads = proxy.admin("GET", "/skillbooks/support/skills")  # WAL: readers go on
        assert reads.status_code == 200 and len(reads.json()["data"]) == 1
    wait_for(lambda: health(proxy)["status"] == "ok")
    assert proxy.admin("POST", "/skillbooks/support/skills", json=body).status_code == 201
    assert proxy.admin("POST", "/skills/refunds-00001/approve").status_code == 200


def test_feedback_accepted_while_locked_is_queued_and_written_once_the_lock_goes(
    proxy: RunningProxy,
) -> None:
    stored = new_trace(proxy)
    proxy.trace(stored)
    with locked(proxy):
        first = httpx.post(proxy.v1 + "/feedback", json={"trace_id": stored, "score": 0.0})
        assert first.status_code == 202, first.text
        assert first.json() == {"id": None, "object": "feedback", "status": "queued"}
        started = time.monotonic()
        second = httpx.post(
            proxy.v1 + "/feedback", json={"trace_id": stored, "score": 1.0, "comment": "ok"}
        )
        assert second.status_code == 202 and time.monotonic() - started < 1.0
        unknown = httpx.post(proxy.v1 + "/feedback", json={"trace_id": "tr_nope", "score": 1})
        assert unknown.status_code == 404  # still validated: reads work under the lock
        state = health(proxy)
        assert state["status"] == "degraded" and "locked" in state["reason"]
        assert state["feedback"]["queued"] == 2
        assert feedback_rows(proxy) == []
    wait_for(lambda: len(feedback_rows(proxy)) == 2)
    assert feedback_rows(proxy) == [(stored, 0.0, None), (stored, 1.0, "ok")]
    wait_for(lambda: health(proxy)["status"] == "ok")
    assert health(proxy)["feedback"] == {"queued": 0, "written_late": 2, "lost": 0, "refused": 0}


def test_feedback_for_a_trace_still_queued_is_accepted_while_locked(proxy: RunningProxy) -> None:
    with locked(proxy) as release:
        pending = new_trace(proxy)  # its row cannot be written either: it waits in the writer
        answer = httpx.post(proxy.v1 + "/feedback", json={"trace_id": pending, "label": "bad"})
        assert answer.status_code == 202, answer.text
        release()
        proxy.trace(pending, timeout=15)
        wait_for(lambda: feedback_rows(proxy) == [(pending, None, None)])


def test_queued_feedback_is_written_at_shutdown(proxy: RunningProxy) -> None:
    stored = new_trace(proxy)
    proxy.trace(stored)
    with locked(proxy) as release:
        answer = httpx.post(proxy.v1 + "/feedback", json={"trace_id": stored, "score": 0.5})
        assert answer.status_code == 202
        timer = threading.Timer(1.0, release)  # the lock goes while the proxy shuts down
        timer.start()
        proxy.server.stop()
        timer.join()
    assert feedback_rows(proxy) == [(stored, 0.5, None)]


# Damaged ------------------------------------------------------------------------------------


def test_admin_reads_and_feedback_answer_503_json_when_the_file_is_damaged(
    proxy: RunningProxy,
) -> None:
    proxy.add_skill("support", "refunds", RULE)
    stored = new_trace(proxy)
    proxy.trace(stored)
    db = proxy.db()
    corrupt_pages(db_path(proxy), db)
    db.conn.close()
    for path in ("/skillbooks", "/skills/refunds-00001", "/skillbooks/support/skills"):
        error = assert_unavailable(proxy.admin("GET", path), str(db_path(proxy)))
        assert "restore it from a backup" in error["message"]
    feedback = httpx.post(proxy.v1 + "/feedback", json={"trace_id": stored, "score": 1})
    assert_unavailable(feedback, "damaged")  # not accepted: it could not even be checked
    state = health(proxy)
    assert state["status"] == "degraded" and "damaged" in state["reason"]


def test_starting_on_a_damaged_database_says_which_file_and_what_to_do(
    make_proxy: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    path = tmp_path / "skillproxy.db"
    path.write_bytes(b"these are not the pages you are looking for\n" * 1000)
    with pytest.raises(StoreCorrupt) as raised:
        make_proxy()
    message = str(raised.value)
    assert str(path) in message and "\n" not in message
    assert "restore it from a backup, or move it aside" in message


def test_opening_a_database_with_damaged_pages_raises_store_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    store = open_store(str(path))
    store.migrate()
    store.skills.create("support", "refunds", RULE, actor="test")
    store.close()
    raw = open_database(path)
    corrupt_pages(path, raw)
    raw.conn.close()
    with pytest.raises(StoreCorrupt, match="restore it from a backup"):
        reopened = open_store(str(path))
        try:
            reopened.migrate()
        finally:
            reopened.close()
    assert isinstance(StoreCorrupt("x"), StoreUnavailable)


# Deleted --------------------------------------------------------------------------------------


def test_a_database_deleted_while_open_is_unavailable_not_silently_written(
    proxy: RunningProxy,
) -> None:
    assert health(proxy)["status"] == "ok"
    os.remove(db_path(proxy))
    created = proxy.admin(
        "POST", "/skillbooks/support/skills", json={"section": "refunds", "content": RULE}
    )
    assert_unavailable(created, "deleted")
    state = health(proxy)
    assert state["status"] == "degraded" and "restart skillproxy" in state["reason"]


# Health ---------------------------------------------------------------------------------------


def test_healthz_is_degraded_while_locked_and_ok_after(proxy: RunningProxy) -> None:
    assert health(proxy) == {**health(proxy), "status": "ok"}
    assert "reason" not in health(proxy)
    with locked(proxy):
        wait_for(lambda: health(proxy)["status"] == "degraded")
        assert "locked" in health(proxy)["reason"]
        started = time.monotonic()
        for _ in range(20):  # cached: polling it does not queue probes on the database thread
            health(proxy)
        assert time.monotonic() - started < 2.0
    wait_for(lambda: health(proxy)["status"] == "ok")


def test_healthz_is_degraded_while_trace_writes_fail(proxy: RunningProxy) -> None:
    db = proxy.db()
    db.execute(
        "CREATE TRIGGER no_room BEFORE INSERT ON traces "
        "BEGIN SELECT RAISE(ABORT, 'no room for traces'); END"
    )
    try:
        new_trace(proxy)
        wait_for(lambda: health(proxy)["traces"]["store_errors"] >= 1)
        state = health(proxy)
        assert state["status"] == "degraded" and state["reason"].startswith("traces:"), state
    finally:
        db.execute("DROP TRIGGER no_room")
        db.conn.close()
    wait_for(lambda: health(proxy)["status"] == "ok")
    assert health(proxy)["traces"]["written"] == 1
