"""store/sqlite/canaries.py `sessions`: which conversations a canary is judged on, read
straight from trace and feedback rows (episodes as the learner would have grouped them), and
kept up to date look after look by store/sqlite/canary_tally.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

import store
from core.canary_report import build_report
from store.columns import TRACE_COLUMNS
from store.records import NewFeedback
from store.sqlite import SQLiteStore
from store.sqlite.db import open_database

RULE = "When a customer asks for a refund, check the order date first."
OTHER = "When a customer is upset, acknowledge the problem before any fix."


@pytest.fixture
def db() -> Iterator[store.Store]:
    opened = store.open_store(":memory:")
    opened.migrate()
    yield opened
    opened.close()


def trace(
    n: int,
    at: float,
    *,
    session: str | None = None,
    episode: str | None = None,
    injected: list[str] | None = None,
    version: int | None = 2,
) -> tuple[Any, ...]:
    row: dict[str, Any] = dict.fromkeys(TRACE_COLUMNS)
    row.update(
        id=f"tr_{n:06d}", created_at=at, skillbook="book", method="POST",
        path="/v1/chat/completions", stream=0, client_disconnected=0, session_id=session,
        episode_id=episode, skillbook_version=version, input_tokens=10, output_tokens=5,
        injected_skill_ids=json.dumps(injected or []),
    )  # fmt: skip
    return tuple(row[c] for c in TRACE_COLUMNS)


def test_sessions_by_header_or_episode_with_their_feedback(db: store.Store) -> None:
    rule = db.skills.create("book", "refunds", RULE, actor="a").id
    before = time.time() - 100
    db.traces.insert_values([trace(1, before, session="old")])  # started before the canary
    canary = db.canaries.start(rule, 50, actor="a")
    now = time.time()
    db.traces.insert_values([
        trace(2, now, session="old"),
        trace(3, now, session="s1", injected=[rule]),
        trace(4, now + 1, session="s1", injected=[rule]),
        trace(5, now, episode="ep_a"),
        trace(6, now, session="opted-out", version=None),  # never offered a section
        trace(7, now),  # neither a session nor an episode yet: not counted yet
    ])  # fmt: skip
    db.feedback.add(NewFeedback("book", None, "s1", 1.0, None, None))
    db.feedback.add(NewFeedback("book", None, "s1", None, "bad", None))
    db.feedback.add(NewFeedback("book", "tr_000005", None, None, "good", None))
    found = {s.key: s for s in db.canaries.sessions(canary.seq)}
    assert set(found) == {"s:s1", "e:ep_a"}
    s1, ep = found["s:s1"], found["e:ep_a"]
    assert (s1.arm, s1.turns, s1.tokens, s1.feedback, s1.score) == ("treatment", 2, 30, 2, 0.5)
    assert (ep.arm, ep.turns, ep.feedback, ep.score) == ("control", 1, 1, 1.0)
    assert s1.first_feedback is not None and ep.first_feedback is not None


def test_a_disjoint_canary_leaves_another_ones_treatment_out_of_its_control(
    db: store.Store,
) -> None:
    first = db.skills.create("book", "refunds", RULE, actor="a").id
    second = db.skills.create("book", "tone", OTHER, actor="a").id
    a = db.canaries.start(first, 30, actor="a")
    b = db.canaries.start(second, 30, actor="a")
    assert (a.bucket_lo, a.bucket_hi, b.bucket_lo, b.bucket_hi) == (0, 3000, 3000, 6000)
    now = time.time()
    db.traces.insert_values([
        trace(1, now, session="t", injected=[first]),
        trace(2, now, session="o", injected=[second]),
        trace(3, now, session="c"),
    ])  # fmt: skip
    assert {s.key: s.arm for s in db.canaries.sessions(a.seq)} == {
        "s:t": "treatment",
        "s:c": "control",
    }
    assert [c.skill_id for c in db.canaries.beside(a)] == [second]
    # a freed range is taken again by the next canary that fits
    db.canaries.stop(first, actor="a")
    third = db.skills.create(
        "book", "billing", "When billing fails, retry the card once.", actor="a"
    )
    c = db.canaries.start(third.id, 20, actor="a")
    assert (c.bucket_lo, c.bucket_hi) == (0, 2000)


def test_an_independent_canary_beside_a_disjoint_one_is_in_both_its_arms(
    db: store.Store,
) -> None:
    """A works on nothing, C on everything: A's arms must both hold C's sessions alike, or A
    would be credited with C's effect."""
    first = db.skills.create("book", "refunds", RULE, actor="a").id
    other = db.skills.create("book", "tone", OTHER, actor="a").id
    a = db.canaries.start(first, 50, actor="a")
    db.canaries.update_rules("book", {"assignment": "independent"}, actor="a")
    db.canaries.start(other, 50, actor="a")
    now = time.time()
    rows = []
    for i in range(400):
        injected = [s for s, on in ((first, i % 2), (other, (i // 2) % 2)) if on]
        rows.append(trace(i, now, session=f"s{i}", injected=injected))
    db.traces.insert_values(rows)
    for i in range(400):
        db.feedback.add(NewFeedback("book", None, f"s{i}", float((i // 2) % 2), None, None))
    sessions = db.canaries.sessions(a.seq)
    assert len(sessions) == 400
    canary = db.canaries.get(a.seq)
    shown = build_report(canary, sessions, db.canaries.rules("book"), db.canaries.beside(canary))
    assert (shown.treatment.mean_score, shown.control.mean_score) == (0.5, 0.5)
    assert shown.verdict == "none"


def test_the_tally_reads_what_came_since_and_counts_episodes_once_grouped() -> None:
    raw = open_database(":memory:")
    db = SQLiteStore.on(raw)
    db.migrate()
    rule = db.skills.create("book", "refunds", RULE, actor="a").id
    canary = db.canaries.start(rule, 50, actor="a")
    now = time.time()
    db.traces.insert_values([trace(1, now, session="s1", injected=[rule]), trace(2, now)])
    db.feedback.add(NewFeedback("book", "tr_000002", None, 1.0, None, None))  # not grouped yet
    assert [s.key for s in db.canaries.sessions(canary.seq)] == ["s:s1"]
    db.traces.insert_values([trace(3, now + 1, session="s1", injected=[rule])])
    db.feedback.add(NewFeedback("book", None, "s1", 0.0, None, None))
    db.feedback.add(NewFeedback("book", None, "s1", 1.0, None, None))  # a later one revises
    raw.execute("UPDATE traces SET episode_id = 'ep_x' WHERE id = 'tr_000002'")  # grouped
    found = {s.key: s for s in db.canaries.sessions(canary.seq)}
    assert set(found) == {"s:s1", "e:ep_x"}
    assert (found["s:s1"].turns, found["s:s1"].feedback, found["s:s1"].score) == (2, 2, 0.5)
    assert (found["e:ep_x"].arm, found["e:ep_x"].score) == ("control", 1.0)
    # once ended, what came after its end is left out
    db.canaries.stop(rule, actor="a")
    db.traces.insert_values([trace(4, time.time() + 5, session="late")])
    assert set(s.key for s in db.canaries.sessions(canary.seq)) == {"s:s1", "e:ep_x"}


def test_importing_a_skillbook_file_ends_the_canaries_it_changes(db: store.Store) -> None:
    edited = db.skills.create("book", "refunds", RULE, actor="a").id
    dropped = db.skills.create("book", "tone", OTHER, actor="a").id
    document = db.transfer.export_json("book")
    db.canaries.start(edited, 20, actor="a")
    db.canaries.start(dropped, 20, actor="a")
    document["skills"] = [s for s in document["skills"] if s["id"] == edited]
    document["skills"][0]["content"] = RULE + " Always."
    db.transfer.import_json("book", document, actor="a", mode="replace")
    for skill_id, status in ((edited, "pending"), (dropped, "archived")):
        canary = db.canaries.latest(skill_id)
        assert canary is not None and canary.status == "stopped", skill_id
        assert db.skills.get(skill_id).status == status
    assert db.canaries.running("book") == []


def test_the_watch_looks_only_at_skillbooks_whose_feedback_moved(db: store.Store) -> None:
    from proxy.canary_watch import check_canaries

    rule = db.skills.create("book", "refunds", RULE, actor="a").id
    canary = db.canaries.start(rule, 50, actor="a")
    mark = db.canaries.feedback_mark()
    now = time.time()
    db.traces.insert_values(
        [trace(i, now, session=f"s{i}", injected=[rule] if i % 2 else []) for i in range(200)]
    )
    for i in range(200):
        db.feedback.add(NewFeedback("book", None, f"s{i}", float(i % 2), None, None))
    assert db.canaries.books_with_feedback_after(mark[0]) == {"book"}
    assert check_canaries(db, {"elsewhere"}) == []
    assert check_canaries(db, {"book"}) == [f"{rule}: notify (better)"]
    assert db.canaries.get(canary.seq).verdict == "better"
    before = db.canaries.feedback_mark()
    db.canaries.update_rules("book", {"on_win": "promote"}, actor="a")
    assert db.canaries.feedback_mark()[2] != before[2]  # a rules change moves the mark
