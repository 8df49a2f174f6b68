"""Feedback people can trust: filed under the skillbook of what it judges, accepted as soon as
the client has its answer, made of labels that mean something, and readable back.

Covers proxy/feedback.py (the filing rule), proxy/trace_writer.py (what is still queued),
store/feedback_labels.py (the closed set and `label_score`), store/sqlite/traces.py
(`skillbook_of`, `session_skillbooks`), store/sqlite/feedback.py (`for_trace`) and
skillproxy/admin/traces.py (a trace with its feedback). Traces are kept queued by a writer
told to wait a minute before its first batch; nothing is patched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from proxy.feedback import Feedback, Refusal, filing_skillbook
from store import open_store
from store.feedback_labels import (
    LABELS,
    NEGATIVE_LABELS,
    NEUTRAL_LABELS,
    POSITIVE_LABELS,
    label_score,
)
from store.records import NewFeedback
from store.sqlite.db import open_database
from tests.harness import RunningProxy

QUEUED = {"flush_interval_ms": 60_000}
"""The writer's first batch waits a minute (or for shutdown): every trace stays queued."""


def chat(proxy: RunningProxy, skillbook: str | None = None, *, session: str | None = None) -> str:
    """One exchange, in `skillbook` (by path) or the default; its trace id."""
    base = proxy.sb(skillbook) if skillbook else proxy.v1
    headers = {"X-Session-Id": session} if session else {}
    answer = httpx.post(
        base + "/chat/completions", json={"model": "m", "messages": []}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Trace-Id"]


def post(
    proxy: RunningProxy, body: dict[str, Any], *, path: str | None = None, header: str | None = None
) -> httpx.Response:
    """Feedback posted to `/sb/{path}/v1/feedback`, or `/v1/feedback` with an `X-Skillbook`."""
    url = (proxy.sb(path) if path else proxy.v1) + "/feedback"
    return httpx.post(url, json=body, headers={"X-Skillbook": header} if header else {})


def filed(proxy: RunningProxy) -> list[tuple[Any, ...]]:
    db = proxy.db()
    try:
        query = "SELECT trace_id, session_id, skillbook, label FROM feedback ORDER BY seq"
        return list(db.execute(query))
    finally:
        db.conn.close()


def stored_traces(proxy: RunningProxy) -> int:
    db = proxy.db()
    try:
        return int(db.execute("SELECT count(*) FROM traces").fetchone()[0])
    finally:
        db.conn.close()


def refused(response: httpx.Response, status: int, code: str, param: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    message: str = error["message"]
    return message


# A session whose traces are still queued -----------------------------------------------------


def test_feedback_on_a_session_still_queued_is_recorded_under_its_skillbook(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(traces=QUEUED)
    chat(proxy, "bot", session="sess-fresh")
    assert stored_traces(proxy) == 0  # still in the writer's queue
    answer = post(proxy, {"session_id": "sess-fresh", "label": "thumbs_up"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "recorded"
    assert filed(proxy) == [(None, "sess-fresh", "bot", "thumbs_up")]
    assert post(proxy, {"session_id": "sess-other", "score": 1}).status_code == 404


def test_feedback_on_a_queued_session_waits_with_it_while_the_store_is_locked(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(traces=QUEUED)
    chat(proxy, "bot", session="sess-locked")
    lock = proxy.db()
    lock.conn.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        answer = post(proxy, {"session_id": "sess-locked", "score": 0.0})
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "queued"
    finally:
        lock.conn.execute("ROLLBACK")
        lock.conn.close()
    deadline = time.monotonic() + 10
    while not filed(proxy):
        assert time.monotonic() < deadline, "queued feedback never written"
        time.sleep(0.05)
    assert filed(proxy) == [(None, "sess-locked", "bot", None)]


def test_a_queued_trace_of_another_skillbook_is_refused_when_one_is_named(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(traces=QUEUED)
    trace_id = chat(proxy, "bot")
    assert stored_traces(proxy) == 0
    message = refused(
        post(proxy, {"trace_id": trace_id, "score": 0}, path="support"),
        400,
        "wrong_skillbook",
        "trace_id",
    )
    assert trace_id in message and "'bot'" in message and "'support'" in message
    assert post(proxy, {"trace_id": trace_id, "score": 0}).status_code == 201
    assert filed(proxy) == [(trace_id, None, "bot", None)]


# Which skillbook, for stored traces and sessions ----------------------------------------------


def test_feedback_naming_another_skillbook_than_its_traces_is_refused(
    proxy: RunningProxy,
) -> None:
    trace_id = chat(proxy, "bot", session="sess-bot")
    proxy.trace(trace_id)
    for named in ({"path": "support"}, {"header": "support"}, {"header": "default"}):
        by_trace = post(proxy, {"trace_id": trace_id, "label": "bad"}, **named)
        message = refused(by_trace, 400, "wrong_skillbook", "trace_id")
        assert "'bot'" in message and repr(named.get("path") or named["header"]) in message
        by_session = post(proxy, {"session_id": "sess-bot", "label": "bad"}, **named)
        message = refused(by_session, 400, "wrong_skillbook", "session_id")
        assert "sess-bot" in message and "'bot'" in message
    assert filed(proxy) == []
    assert post(proxy, {"trace_id": trace_id, "score": 1}, path="bot").status_code == 201
    assert post(proxy, {"trace_id": trace_id, "score": 1}, header="bot").status_code == 201
    assert post(proxy, {"session_id": "sess-bot", "score": 1}).status_code == 201
    assert [row[2] for row in filed(proxy)] == ["bot", "bot", "bot"]


def test_a_session_in_several_skillbooks_needs_one_named(proxy: RunningProxy) -> None:
    chat(proxy, "bot", session="shared")
    chat(proxy, "support", session="shared")
    proxy.traces(2)
    message = refused(
        post(proxy, {"session_id": "shared", "score": 0.2}),
        400,
        "ambiguous_skillbook",
        "session_id",
    )
    assert "'bot'" in message and "'support'" in message and "X-Skillbook" in message
    message = refused(
        post(proxy, {"session_id": "shared", "score": 0.2}, path="billing"),
        400,
        "wrong_skillbook",
        "session_id",
    )
    assert all(f"'{name}'" in message for name in ("bot", "support", "billing"))
    assert post(proxy, {"session_id": "shared", "score": 0.2}, path="support").status_code == 201
    assert filed(proxy) == [(None, "shared", "support", None)]


def test_a_bad_skillbook_name_is_refused_before_anything_else(proxy: RunningProxy) -> None:
    answer = post(proxy, {"trace_id": "tr_nope", "score": 1}, header="no spaces")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_skillbook"


def test_the_filing_rule_as_a_plain_function() -> None:
    trace = Feedback(trace_id="tr_1", score=1.0)
    session = Feedback(session_id="s", score=1.0)
    assert filing_skillbook(trace, ["bot"], None) == "bot"
    assert filing_skillbook(trace, ["bot"], "bot") == "bot"
    assert filing_skillbook(session, ["a", "b"], "b") == "b"
    missing = filing_skillbook(trace, [], "bot")
    assert isinstance(missing, Refusal) and (missing.status, missing.code) == (404, "not_found")
    wrong = filing_skillbook(trace, ["bot"], "support")
    assert isinstance(wrong, Refusal) and wrong.code == "wrong_skillbook"
    assert wrong.param == "trace_id" and "'bot'" in wrong.message
    unsure = filing_skillbook(session, ["a", "b"], None)
    assert isinstance(unsure, Refusal) and unsure.code == "ambiguous_skillbook"


# Labels -------------------------------------------------------------------------------------


def test_labels_are_a_closed_set_that_scores() -> None:
    groups = (POSITIVE_LABELS, NEGATIVE_LABELS, NEUTRAL_LABELS)
    assert sum(len(g) for g in groups) == len(LABELS)  # each label means one thing
    assert {"good", "thumbs_up", "success", "correct", "helpful", "resolved"} <= POSITIVE_LABELS
    assert {"bad", "thumbs_down", "wrong", "harmful"} <= NEGATIVE_LABELS
    assert label_score("Thumbs-Up") == 1.0 and label_score(" not helpful ") == 0.0
    assert label_score("neutral") is None and label_score("meh") is None


def test_an_unknown_label_is_refused_with_the_accepted_ones(proxy: RunningProxy) -> None:
    trace_id = chat(proxy)
    message = refused(
        post(proxy, {"trace_id": trace_id, "label": "meh"}), 400, "invalid_feedback", "label"
    )
    assert "label" in message and "'meh'" in message
    assert all(name in message for name in ("thumbs_up", "thumbs_down", "neutral"))
    for spelling in ("Thumbs-Up", "not helpful", "NEUTRAL"):
        assert post(proxy, {"trace_id": trace_id, "label": spelling}).status_code == 201
    assert [row[3] for row in filed(proxy)] == ["thumbs_up", "not_helpful", "neutral"]


# Reading it back ------------------------------------------------------------------------------


def test_a_trace_is_shown_with_its_feedback_and_its_sessions(proxy: RunningProxy) -> None:
    first = chat(proxy, "bot", session="s-1")
    second = chat(proxy, "bot", session="s-1")
    elsewhere = chat(proxy, "support", session="s-1")  # the same session id, another skillbook
    proxy.traces(3)
    assert post(proxy, {"trace_id": first, "score": 0.9, "comment": "fine"}).status_code == 201
    assert post(proxy, {"session_id": "s-1", "label": "resolved"}, path="bot").status_code == 201
    assert post(proxy, {"session_id": "s-1", "label": "wrong"}, path="support").status_code == 201
    assert post(proxy, {"trace_id": second, "label": "bad"}).status_code == 201

    def feedback_of(trace_id: str) -> list[tuple[Any, ...]]:
        shown = proxy.admin("GET", f"/traces/{trace_id}")
        assert shown.status_code == 200, shown.text
        assert shown.json()["id"] == trace_id
        return [
            (f["trace_id"], f["session_id"], f["skillbook"], f["score"], f["label"])
            for f in shown.json()["feedback"]
        ]

    assert feedback_of(first) == [
        (first, None, "bot", 0.9, None),
        (None, "s-1", "bot", None, "resolved"),
    ]
    assert feedback_of(second) == [
        (None, "s-1", "bot", None, "resolved"),
        (second, None, "bot", None, "bad"),
    ]
    assert feedback_of(elsewhere) == [(None, "s-1", "support", None, "wrong")]
    alone = chat(proxy)
    proxy.trace(alone)
    assert proxy.admin("GET", f"/traces/{alone}").json()["feedback"] == []


def test_the_store_reads_sessions_from_traces_and_episodes(tmp_path: Path) -> None:
    """An episode's session may come from the request's metadata, not `X-Session-Id`: the
    session is known by its episode, and its feedback shows with the episode's traces."""
    store = open_store(str(tmp_path / "s.db"))
    try:
        store.migrate()
        assert store.traces.skillbook_of("tr_none") is None
        assert store.traces.session_skillbooks("s") == []
        assert store.feedback.for_trace("tr_none") == []
        db = open_database(tmp_path / "s.db")  # another process: the learner's grouping
        db.table("episodes").insert(
            {"id": "ep_1", "skillbook": "bot", "session_key": "s", "first_at": 1.0, "last_at": 1.0}
        )
        trace = {"id": "tr_1", "created_at": 1.0, "skillbook": "bot", "method": "POST"}
        db.table("traces").insert({**trace, "path": "/v1/chat/completions", "episode_id": "ep_1"})
        db.conn.close()
        assert store.traces.skillbook_of("tr_1") == "bot"
        assert store.traces.session_skillbooks("s") == ["bot"]
        for skillbook in ("bot", "other"):
            store.feedback.add(NewFeedback(skillbook, None, "s", None, "resolved", skillbook))
        store.feedback.add(NewFeedback("bot", "tr_1", None, 0.0, None, "on the trace"))
        shown = store.feedback.for_trace("tr_1")
        assert [f.comment for f in shown] == ["bot", "on the trace"]  # not the other's
    finally:
        store.close()
