"""store/sqlite/learner.py: leases, runs, and each episode's outcome committed as one unit.

Everything goes through the store's public interface (`open_store`), over a real SQLite file;
episodes are made the way the learner makes them, by inserting trace rows and grouping them
with learner/episodes.py. Only the `reflections` table, which the store writes but never reads
back, is inspected over a second connection.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from learner.episodes import group_new_traces
from store import TRACE_COLUMNS, Store, open_store
from store.errors import NotFound
from store.records import (
    AddEvidence,
    LearnerRun,
    ProposeSkill,
    ReflectedEpisode,
    RunCounts,
    SkillOperation,
    TagSkill,
)

BOOK = "default"
DATES = "When a date has no time zone, assume UTC and say so."
REFUNDS = "When a customer asks for a refund, link the returns policy first."
PROPOSED = "When a test fails only at midnight, look for a local time zone bug."


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "x.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = open_store(str(db_path))
    opened.migrate()
    yield opened
    opened.close()


# --- episodes made the way the learner makes them ------------------------------------------------


def _chat_trace(
    trace_id: str, at: float, messages: list[dict[str, Any]], answer: str, injected: list[str]
) -> tuple[Any, ...]:
    request = {"model": "gpt-4o-mini", "messages": messages}
    response = {
        "id": f"chatcmpl-{trace_id}",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
    }
    values: dict[str, Any] = {
        "id": trace_id,
        "created_at": at,
        "skillbook": BOOK,
        "format": "chat",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": "gpt-4o-mini",
        "stream": 0,
        "status": 200,
        "input_tokens": 20,
        "output_tokens": 5,
        "client_disconnected": 0,
        "injected_skill_ids": json.dumps(injected),
        "request_json": json.dumps(request),
        "response_json": json.dumps(response),
    }
    return tuple(values.get(column) for column in TRACE_COLUMNS)


def make_episode(store: Store, name: str, at: float, injected: list[str]) -> tuple[str, list[str]]:
    """A two-turn chat conversation, grouped into one episode: (episode id, trace ids)."""
    ask = {"role": "user", "content": f"When is the {name} meeting?"}
    said = {"role": "assistant", "content": "At 10:00."}
    again = {"role": "user", "content": "In which time zone?"}
    first, second = f"tr_{name}_1", f"tr_{name}_2"
    store.traces.insert_values(
        [
            _chat_trace(first, at, [ask], "At 10:00.", injected),
            _chat_trace(second, at + 5, [ask, said, again], "UTC.", injected),
        ]
    )
    result = group_new_traces(store, settle_s=0, now=at + 10)
    assert (result.grouped, result.new_episodes) == (2, 1)
    one, two = store.traces.get(first), store.traces.get(second)
    assert one is not None and two is not None
    assert one.episode_id is not None and one.episode_id == two.episode_id
    return one.episode_id, [first, second]


def run_of(store: Store, run: int) -> LearnerRun:
    (found,) = store.learner.list_runs(run=run)
    return found


def counters(run: LearnerRun) -> dict[str, Any]:
    return {f.name: getattr(run, f.name) for f in dataclasses.fields(RunCounts)}


def reflection_rows(db_path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(
            "SELECT episode_id, run_seq, reflection_json FROM reflections ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


# --- leases -------------------------------------------------------------------------------------


def test_a_lease_is_held_by_one_owner_until_released(store: Store) -> None:
    leases = store.learner

    assert leases.acquire_lease(BOOK, "worker-a", 60)
    assert not leases.acquire_lease(BOOK, "worker-b", 60)
    assert leases.acquire_lease(BOOK, "worker-a", 60)  # the holder renews
    leases.release_lease(BOOK, "worker-b")  # not the holder's: changes nothing
    assert not leases.acquire_lease(BOOK, "worker-b", 60)
    leases.release_lease(BOOK, "worker-a")
    assert leases.acquire_lease(BOOK, "worker-b", 60)
    assert not leases.acquire_lease(BOOK, "worker-a", 60)


def test_leases_are_per_skillbook(store: Store) -> None:
    assert store.learner.acquire_lease("alpha", "worker-a", 60)
    assert store.learner.acquire_lease("beta", "worker-b", 60)
    assert not store.learner.acquire_lease("beta", "worker-a", 60)


def test_an_expired_lease_can_be_taken_by_another_owner(store: Store) -> None:
    assert store.learner.acquire_lease(BOOK, "worker-a", 0.05)
    assert not store.learner.acquire_lease(BOOK, "worker-b", 60)

    time.sleep(0.1)

    assert store.learner.acquire_lease(BOOK, "worker-b", 60)
    assert not store.learner.acquire_lease(BOOK, "worker-a", 60)


def test_renewing_a_lease_moves_its_expiry(store: Store) -> None:
    assert store.learner.acquire_lease(BOOK, "worker-a", 0.05)
    assert store.learner.acquire_lease(BOOK, "worker-a", 60)

    time.sleep(0.1)

    assert not store.learner.acquire_lease(BOOK, "worker-b", 60)


# --- runs ---------------------------------------------------------------------------------------


def test_a_new_run_is_running_with_zero_counters(store: Store) -> None:
    before = time.time()
    run = store.learner.start_run(BOOK)

    started = run_of(store, run)
    assert started.seq == run
    assert started.skillbook == BOOK
    assert before <= started.started_at <= time.time()
    assert (started.status, started.finished_at, started.error) == ("running", None, None)
    assert set(counters(started).values()) == {0}


def test_finish_run_records_status_error_and_time(store: Store) -> None:
    done, broken = store.learner.start_run(BOOK), store.learner.start_run(BOOK)

    store.learner.finish_run(done, "done")
    store.learner.finish_run(broken, "failed", "upstream said 500")

    finished = run_of(store, done)
    assert (finished.status, finished.error) == ("done", None)
    assert finished.finished_at is not None and finished.finished_at >= finished.started_at
    failed = run_of(store, broken)
    assert (failed.status, failed.error) == ("failed", "upstream said 500")
    assert failed.finished_at is not None


def test_list_runs_filters_by_skillbook_and_run_newest_first(store: Store) -> None:
    first = store.learner.start_run("alpha")
    second = store.learner.start_run("beta")
    third = store.learner.start_run("alpha")

    def seqs(**filters: Any) -> list[int]:
        return [r.seq for r in store.learner.list_runs(**filters)]

    assert seqs() == [third, second, first]
    assert seqs(skillbook="alpha") == [third, first]
    assert seqs(skillbook="beta") == [second]
    assert seqs(skillbook="gamma") == []
    assert seqs(run=second) == [second]
    assert seqs(skillbook="alpha", run=second) == []
    assert seqs(limit=2) == [third, second]
    assert seqs(skillbook="alpha", limit=1) == [third]


def test_tokens_since_sums_input_and_output_of_runs_started_since(store: Store) -> None:
    episode_id, _ = make_episode(store, "standup", 1000.0, [])
    early = store.learner.start_run("alpha")
    store.learner.close_episode(
        episode_id, early, "failed", "x", RunCounts(input_tokens=100, output_tokens=20)
    )
    time.sleep(0.01)
    mark = time.time()
    time.sleep(0.01)
    late = store.learner.start_run("beta")
    store.learner.close_episode(
        episode_id, late, "failed", "x", RunCounts(input_tokens=5, output_tokens=7)
    )

    assert store.learner.tokens_since(0) == 132  # every skillbook
    assert store.learner.tokens_since(mark) == 12
    assert store.learner.tokens_since(time.time() + 60) == 0


# --- close_episode ------------------------------------------------------------------------------


def test_close_episode_sets_status_and_error_and_adds_to_the_run(store: Store) -> None:
    skipped_id, _ = make_episode(store, "standup", 1000.0, [])
    failed_id, _ = make_episode(store, "retro", 2000.0, [])
    run = store.learner.start_run(BOOK)

    store.learner.close_episode(skipped_id, run, "skipped", "no signal", RunCounts(episodes=1))
    spent = RunCounts(
        episodes=1, failures=1, llm_calls=2, input_tokens=300, output_tokens=40, cost_usd=0.25
    )
    store.learner.close_episode(failed_id, run, "failed", "bad JSON twice", spent)

    skipped, failed = store.episodes.get(skipped_id), store.episodes.get(failed_id)
    assert (skipped.status, skipped.error) == ("skipped", "no signal")
    assert (failed.status, failed.error) == ("failed", "bad JSON twice")
    assert skipped.reflected_at is not None and failed.reflected_at is not None
    totals = counters(run_of(store, run))
    assert totals == {
        **{name: 0 for name in totals},
        "episodes": 2,
        "failures": 1,
        "llm_calls": 2,
        "input_tokens": 300,
        "output_tokens": 40,
        "cost_usd": pytest.approx(0.25),
    }


# --- commit_reflection ---------------------------------------------------------------------------


@dataclass
class Setting:
    episode_id: str
    last_trace: str
    run: int
    tagged: str
    evidenced: str


@pytest.fixture
def setting(store: Store) -> Setting:
    tagged = store.skills.create(BOOK, "dates", DATES, actor="person", status="active")
    evidenced = store.skills.create(BOOK, "billing", REFUNDS, actor="person", status="active")
    episode_id, traces = make_episode(store, "planning", 1000.0, [tagged.id])
    assert store.episodes.get(episode_id).status == "open"
    return Setting(episode_id, traces[-1], store.learner.start_run(BOOK), tagged.id, evidenced.id)


def outcome(
    setting: Setting, operations: list[SkillOperation], counts: RunCounts
) -> ReflectedEpisode:
    reflection = {"what_happened": "the agent guessed the time zone", "key_insight": "ask"}
    return ReflectedEpisode(
        setting.episode_id, BOOK, setting.run, "learner", operations, reflection, counts
    )


def test_commit_reflection_applies_every_operation_and_the_episodes_outcome(
    store: Store, setting: Setting, db_path: Path
) -> None:
    trace = setting.last_trace
    operations: list[SkillOperation] = [
        TagSkill(setting.tagged, "helpful", trace, "helpful: assumed UTC"),
        ProposeSkill("tests", PROPOSED, "pending", trace, "midnight failures"),
        AddEvidence(setting.evidenced, trace, "removal suggested: stale"),
    ]
    counts = RunCounts(
        episodes=1,
        reflections=1,
        proposals=1,
        tags=1,
        llm_calls=2,
        input_tokens=1200,
        output_tokens=300,
        cost_usd=0.0125,
    )
    version = store.skillbooks.get(BOOK).version

    created = store.learner.commit_reflection(outcome(setting, operations, counts))

    (new_id,) = created
    proposed = store.skills.get(new_id)
    assert proposed.id.startswith("tests-")
    assert (proposed.skillbook, proposed.section, proposed.content) == (BOOK, "tests", PROPOSED)
    assert (proposed.status, proposed.revision) == ("pending", 1)
    assert [(e.trace_id, e.reason, e.source) for e in proposed.evidence] == [
        (trace, "midnight failures", "learner")
    ]
    assert [(h.action, h.actor, h.before) for h in proposed.history] == [
        ("create", "learner", None)
    ]

    tagged = store.skills.get(setting.tagged)
    assert (tagged.helpful, tagged.harmful, tagged.neutral, tagged.revision) == (1, 0, 0, 2)
    assert [(e.trace_id, e.reason, e.source) for e in tagged.evidence] == [
        (trace, "helpful: assumed UTC", "learner")
    ]
    event = tagged.history[-1]
    assert (event.revision, event.action, event.actor) == (2, "tag helpful", "learner")
    assert event.before is not None and event.before["helpful"] == 0
    assert event.after["helpful"] == 1

    evidenced = store.skills.get(setting.evidenced)
    assert (evidenced.helpful, evidenced.harmful, evidenced.revision) == (0, 0, 1)
    assert [(e.trace_id, e.reason, e.source) for e in evidenced.evidence] == [
        (trace, "removal suggested: stale", "learner")
    ]
    assert len(evidenced.history) == 1  # evidence is not a change of the skill

    episode = store.episodes.get(setting.episode_id)
    assert (episode.status, episode.error) == ("reflected", None)
    assert episode.reflected_at is not None

    assert counters(run_of(store, setting.run)) == {
        **dataclasses.asdict(counts),
        "cost_usd": pytest.approx(0.0125),
    }
    assert reflection_rows(db_path) == [
        (setting.episode_id, setting.run, json.dumps(outcome(setting, [], counts).reflection))
    ]
    # a vote on an active skill changes what is injected; a pending proposal does not
    assert store.skillbooks.get(BOOK).version == version + 1


def test_an_active_proposal_is_live_at_once(store: Store, setting: Setting) -> None:
    version = store.skillbooks.get(BOOK).version
    operation = ProposeSkill("tests", PROPOSED, "active", setting.last_trace, "auto-approved")

    (new_id,) = store.learner.commit_reflection(outcome(setting, [operation], RunCounts()))

    assert store.skills.get(new_id).status == "active"
    assert new_id in [s.id for s in store.skills.active(BOOK)]
    assert store.skillbooks.get(BOOK).version == version + 1


def test_commit_reflection_returns_the_created_ids_in_order(store: Store, setting: Setting) -> None:
    trace = setting.last_trace
    operations: list[SkillOperation] = [
        ProposeSkill("tests", PROPOSED, "pending", trace, "one"),
        TagSkill(setting.tagged, "neutral", trace, "neutral"),
        ProposeSkill(
            "billing", "If an invoice is overdue, offer a payment plan.", "pending", trace, "two"
        ),
    ]

    created = store.learner.commit_reflection(outcome(setting, operations, RunCounts()))

    assert [store.skills.get(i).content for i in created] == [
        PROPOSED,
        "If an invoice is overdue, offer a payment plan.",
    ]
    assert len(set(created)) == 2


def test_a_reflection_naming_a_missing_skill_changes_nothing(
    store: Store, setting: Setting, db_path: Path
) -> None:
    trace = setting.last_trace
    operations: list[SkillOperation] = [
        TagSkill(setting.tagged, "helpful", trace, "helpful"),
        ProposeSkill("tests", PROPOSED, "active", trace, "new lesson"),
        AddEvidence(setting.evidenced, trace, "removal suggested: stale"),
        TagSkill("nope-00001", "harmful", trace, "harmful"),
    ]
    counts = RunCounts(episodes=1, reflections=1, proposals=1, tags=2, input_tokens=9)
    skills_before = store.skills.find(BOOK)
    run_before = run_of(store, setting.run)
    version = store.skillbooks.get(BOOK).version

    with pytest.raises(NotFound, match="nope-00001"):
        store.learner.commit_reflection(outcome(setting, operations, counts))

    assert store.skills.find(BOOK) == skills_before  # no new skill, no counter moved
    assert store.skills.evidence(setting.tagged) == []
    assert store.skills.evidence(setting.evidenced) == []
    assert [h.action for h in store.skills.history(setting.tagged)] == ["create"]
    episode = store.episodes.get(setting.episode_id)
    assert (episode.status, episode.reflected_at) == ("open", None)
    assert run_of(store, setting.run) == run_before
    assert reflection_rows(db_path) == []
    assert store.skillbooks.get(BOOK).version == version

    # the failed unit left no transaction open: the same episode can still be committed
    store.learner.commit_reflection(outcome(setting, operations[:3], counts))
    assert store.episodes.get(setting.episode_id).status == "reflected"
    assert store.skills.get(setting.tagged).helpful == 1


def test_evidence_for_a_missing_skill_is_refused_as_not_found(
    store: Store, setting: Setting
) -> None:
    """Not as the engine's own foreign-key error: callers catch the store's errors only."""
    missing = AddEvidence("nope-00002", setting.last_trace, "same lesson")
    counts = RunCounts(episodes=1)
    with pytest.raises(NotFound, match="nope-00002"):
        store.learner.commit_reflection(outcome(setting, [missing], counts))
    assert store.episodes.get(setting.episode_id).status == "open"


def test_an_unknown_episode_is_refused_as_not_found(store: Store, setting: Setting) -> None:
    with pytest.raises(NotFound, match="ep_nope"):
        store.learner.close_episode("ep_nope", setting.run, "failed", "x", RunCounts(episodes=1))
    ghost = dataclasses.replace(outcome(setting, [], RunCounts()), episode_id="ep_nope")
    with pytest.raises(NotFound, match="ep_nope"):
        store.learner.commit_reflection(ghost)
    assert run_of(store, setting.run).episodes == 0


def test_an_auto_approved_rewording_archives_the_skill_it_supersedes_in_the_same_commit(
    store: Store, setting: Setting
) -> None:
    reworded = "When a date has no time zone, ask for the zone before booking anything."
    propose = ProposeSkill(
        "dates", reworded, "active", setting.last_trace, "rewording", supersedes=setting.tagged
    )
    version = store.skillbooks.get(BOOK).version
    [created] = store.learner.commit_reflection(outcome(setting, [propose], RunCounts()))
    old = store.skills.get(setting.tagged)
    assert (old.status, old.superseded_by, old.prior_status) == ("archived", created, "active")
    assert [s.id for s in store.skills.active(BOOK)] == [setting.evidenced, created]
    assert store.skills.get(created).supersedes == setting.tagged
    assert store.skillbooks.get(BOOK).version > version
    restored = store.skills.transition(setting.tagged, "restore", actor="person")
    assert restored.status == "active"  # it was approved before it was superseded
