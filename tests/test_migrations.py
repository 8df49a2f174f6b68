"""store/sqlite/migrations.py: a new database gets every migration, and an old one upgrades intact.

`fixtures/release_32ea961.sql` is a database made by release 32ea961 (the last one before the
store became repositories behind `open_store`): a throwaway script ran that release's own
`open_database` + `migrate`, filled every table through its public functions (traces, skillbook
settings, skill changes, feedback, `group_new_traces`, learner runs, a reflection, a lease) under
a clock it set by hand, and saved `iterdump()`. The tests load it, upgrade it, and read it back
through today's repositories, expecting exactly what that script wrote.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import store
from learner.episodes import GroupingResult, episode_conversation, group_new_traces
from store.records import (
    Episode,
    Evidence,
    Feedback,
    LearnerRun,
    NewFeedback,
    Skill,
    Skillbook,
    SkillbookSettings,
    SkillCounts,
    SkillDetail,
    SkillEvent,
    Trace,
    TraceSummary,
)
from store.sqlite.migrations import MIGRATIONS

FIXTURE = Path(__file__).parent / "fixtures" / "release_32ea961.sql"
RELEASED = ("m001_traces", "m002_skillbooks", "m003_learner")
"""The migrations release 32ea961 had applied."""
TABLES = {
    "_migrations", "traces", "skillbooks", "skills", "evidence", "skill_events", "episodes",
    "conversation_heads", "grouping_cursor", "feedback", "learner_runs", "reflections",
    "learner_leases",
}  # fmt: skip

T0 = 1_795_500_000.0
"""The fixture script's clock: every timestamp in the file is T0 plus a chosen offset."""

# What the fixture script wrote (ids as the old code made them)
T1, T2, T3, T4, T5, T6, T7 = (
    "tr_01a20c2549a0a1b2c300000001",
    "tr_01a20c330540a1b2c300000002",
    "tr_01a20c348be0a1b2c300000003",
    "tr_01a20c357834a1b2c300000004",
    "tr_01a20c379a1aa1b2c300000005",
    "tr_01a20c391fc0a1b2c300000006",
    "tr_01a20c3aa660a1b2c300000007",
)
TOOL, STYLE, GIT, GENERAL, TESTING = (
    "tool-use-00001", "style-00002", "git-00003", "general-00004", "testing-00005",
)  # fmt: skip
EP_FIX = "ep_01a20c2549a0e3e9d1132eed"  # T1, T2: a chat continued by its message prefix
EP_SESSION = "ep_01a20c348be01e97af360725"  # T3, T4: session "sess-42", T4 a hang-up
EP_HINTS = "ep_01a20c379a1a9cd1994dc7b2"  # T5, rated down after grouping
EP_SHELL = "ep_01a20c3aa660726774e6e03c"  # T7; T6 (a 500) joined nothing

SYSTEM = "You are a careful coding assistant working in the user's repository."
U1 = "The login test fails with KeyError: 'user'. Can you fix it?"
A1 = "The fixture returns a dict without 'user'; I added it to conftest.py. The fix is done."
U2 = "It still fails on CI."
A2 = "CI runs with --strict-markers; I registered the 'slow' marker in pyproject.toml."
U3 = "How do I list the ten largest files under /var/log?"
A3 = "du -ah /var/log | sort -rh | head -n 10"
U4 = "And only the ones changed today?"
A4 = "find /var/log -type f -mtime -1 -exec du -h {} + | sort -rh | head"
U5 = "Add type hints to utils/paths.py."
A5 = "Done: every function in utils/paths.py now has annotations, and mypy passes."
U7 = "What does `set -euo pipefail` do?"
A7 = "It exits on errors, on unset variables, and when any command in a pipeline fails."

TOOL_FIRST = "Run the test suite before reporting a fix as done"
TOOL_EDITED = "Run the full test suite before saying a fix works"
STYLE_TEXT = "Always reply in French"
GIT_TEXT = "Commit after every edit with a one-line message"
GENERAL_TEXT = "Answer with the shortest correct command first"
TESTING_TEXT = "Prefer pytest -x when a suite is slow to fail"


def say(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def request(*messages: dict[str, str], stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": list(messages)}
    if stream:
        body["stream"] = True
    return body


def answer(rid: str, offset: int, text: str, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(T0) + offset,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": say("assistant", text), "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def trace(
    trace_id: str,
    offset: float,
    skillbook: str,
    episode: str | None,
    **values: Any,
) -> Trace:
    row: dict[str, Any] = {
        "id": trace_id, "created_at": T0 + offset, "skillbook": skillbook, "format": "chat",
        "method": "POST", "path": "/v1/chat/completions", "model": "gpt-4o-mini",
        "stream": False, "status": 200, "key_fingerprint": "fp_3f9a1c0d2e7b", "error": None,
        "client_disconnected": False, "session_id": None, "episode_id": episode,
    }  # fmt: skip
    row.update(values)
    return Trace(**row)


TRACES = {
    T1: trace(
        T1, 100.0, "coding", EP_FIX, latency_ms=1843.2, ttfb_ms=1843.2, input_tokens=58,
        output_tokens=31, skillbook_version=1, injected_skill_ids=[], skill_tokens=0,
        request_json=request(say("system", SYSTEM), say("user", U1)),
        response_json=answer("chatcmpl-B1x9aa", 100, A1, 58, 31),
    ),
    T2: trace(
        T2, 1000.0, "coding", EP_FIX, latency_ms=2210.7, ttfb_ms=2210.7, input_tokens=131,
        output_tokens=27, skillbook_version=5, injected_skill_ids=[TOOL, GIT], skill_tokens=36,
        request_json=request(
            say("system", SYSTEM), say("user", U1), say("assistant", A1), say("user", U2)
        ),
        response_json=answer("chatcmpl-B1xAbb", 1000, A2, 131, 27),
    ),
    T3: trace(
        T3, 1100.0, "default", EP_SESSION, session_id="sess-42", latency_ms=903.0,
        ttfb_ms=903.0, input_tokens=40, output_tokens=14, skillbook_version=3,
        injected_skill_ids=[GENERAL], skill_tokens=12, request_json=request(say("user", U3)),
        response_json=answer("chatcmpl-B1xBcc", 1100, A3, 40, 14),
    ),
    T4: trace(
        T4, 1160.5, "default", EP_SESSION, session_id="sess-42", stream=True,
        client_disconnected=True, latency_ms=4120.9, ttfb_ms=388.4, input_tokens=70,
        output_tokens=22, skillbook_version=3, injected_skill_ids=[GENERAL], skill_tokens=12,
        request_json=request(
            say("user", U3), say("assistant", A3), say("user", U4), stream=True
        ),
        response_json=answer("chatcmpl-B1xCdd", 1160, A4, 70, 22),
    ),
    T5: trace(
        T5, 1300.25, "coding", EP_HINTS, latency_ms=3012.4, ttfb_ms=3012.4, input_tokens=64,
        output_tokens=20, skillbook_version=5, injected_skill_ids=[TOOL, GIT], skill_tokens=36,
        request_json=request(say("system", SYSTEM), say("user", U5)),
        response_json=answer("chatcmpl-B1xDee", 1300, A5, 64, 20),
    ),
    T6: trace(
        T6, 1400.0, "coding", None, status=500, error="upstream returned 500",
        latency_ms=15000.0, ttfb_ms=None, input_tokens=None, output_tokens=None,
        skillbook_version=5, injected_skill_ids=[TOOL, GIT], skill_tokens=36,
        request_json=request(say("user", "Explain this stack trace.")),
        response_json={"error": {"message": "The server had an error", "type": "server_error"}},
    ),
    T7: trace(
        T7, 1500.0, "default", EP_SHELL, latency_ms=655.5, ttfb_ms=655.5, input_tokens=33,
        output_tokens=19, skillbook_version=3, injected_skill_ids=[GENERAL], skill_tokens=12,
        request_json=request(say("user", U7)),
        response_json=answer("chatcmpl-B1xEff", 1500, A7, 33, 19),
    ),
}  # fmt: skip


def state(section: str, content: str, status: str, h: int = 0, x: int = 0, n: int = 0) -> Any:
    """A history snapshot: helpful `h`, harmful `x`, neutral `n`."""
    return {
        "section": section, "content": content, "status": status,
        "helpful": h, "harmful": x, "neutral": n,
    }  # fmt: skip


SKILLS = {
    TOOL: SkillDetail(
        TOOL, "coding", "tool use", TOOL_FIRST, "active", 1, 0, 0, 5, T0 + 300, T0 + 2010,
        evidence=[
            Evidence(T1, "claimed a fix without running tests", "learner", T0 + 300),
            Evidence(T2, "tests caught the regression", "learner", T0 + 2000),
        ],
        history=[
            SkillEvent(1, "create", "learner", T0 + 300, None,
                       state("tool use", TOOL_FIRST, "pending")),
            SkillEvent(2, "approve", "alice", T0 + 310, state("tool use", TOOL_FIRST, "pending"),
                       state("tool use", TOOL_FIRST, "active")),
            SkillEvent(3, "edit", "alice", T0 + 320, state("tool use", TOOL_FIRST, "active"),
                       state("tool use", TOOL_EDITED, "active")),
            SkillEvent(4, "tag helpful", "learner", T0 + 2000,
                       state("tool use", TOOL_EDITED, "active"),
                       state("tool use", TOOL_EDITED, "active", h=1)),
            SkillEvent(5, "rollback to 2", "alice", T0 + 2010,
                       state("tool use", TOOL_EDITED, "active", h=1),
                       state("tool use", TOOL_FIRST, "active", h=1)),
        ],
    ),
    STYLE: SkillDetail(
        STYLE, "coding", "style", STYLE_TEXT, "rejected", 0, 0, 0, 2, T0 + 330, T0 + 340,
        evidence=[],
        history=[
            SkillEvent(1, "create", "learner", T0 + 330, None,
                       state("style", STYLE_TEXT, "pending")),
            SkillEvent(2, "reject", "alice", T0 + 340, state("style", STYLE_TEXT, "pending"),
                       state("style", STYLE_TEXT, "rejected")),
        ],
    ),
    GIT: SkillDetail(
        GIT, "coding", "git", GIT_TEXT, "archived", 0, 1, 0, 3, T0 + 350, T0 + 2030,
        prior_status="active",  # read from the history by m004, for restore
        evidence=[Evidence(T5, "harmful", "learner", T0 + 2020)],
        history=[
            SkillEvent(1, "create", "alice", T0 + 350, None, state("git", GIT_TEXT, "active")),
            SkillEvent(2, "tag harmful", "learner", T0 + 2020, state("git", GIT_TEXT, "active"),
                       state("git", GIT_TEXT, "active", x=1)),
            SkillEvent(3, "archive", "alice", T0 + 2030, state("git", GIT_TEXT, "active", x=1),
                       state("git", GIT_TEXT, "archived", x=1)),
        ],
    ),
    GENERAL: SkillDetail(
        GENERAL, "default", "general", GENERAL_TEXT, "active", 0, 0, 1, 2, T0 + 360, T0 + 2050,
        evidence=[],
        history=[
            SkillEvent(1, "create", "bob", T0 + 360, None,
                       state("general", GENERAL_TEXT, "active")),
            SkillEvent(2, "tag neutral", "bob", T0 + 2050,
                       state("general", GENERAL_TEXT, "active"),
                       state("general", GENERAL_TEXT, "active", n=1)),
        ],
    ),
    TESTING: SkillDetail(
        TESTING, "coding", "testing", TESTING_TEXT, "pending", 0, 0, 0, 1, T0 + 2040, T0 + 2040,
        evidence=[Evidence(T5, "waited for the whole suite", "learner", T0 + 2040)],
        history=[
            SkillEvent(1, "create", "learner", T0 + 2040, None,
                       state("testing", TESTING_TEXT, "pending")),
        ],
    ),
}  # fmt: skip

SKILLBOOKS = [
    Skillbook(
        "coding", 9, SkillbookSettings(1200, "relevance", False),
        SkillCounts(pending=1, active=1, rejected=1, archived=1), T0 + 102, T0 + 2030,
    ),
    Skillbook(
        "default", 4, SkillbookSettings(None, "usefulness", True), SkillCounts(active=1),
        T0 + 210, T0 + 2050,
    ),
]  # fmt: skip

EPISODES = {
    EP_FIX: Episode(
        EP_FIX, "coding", None, T0 + 100, T0 + 1000, 2, "reflected", T0 + 6030, None, False
    ),
    EP_SESSION: Episode(
        EP_SESSION, "default", "sess-42", T0 + 1100, T0 + 1160.5, 2, "failed", T0 + 7020,
        "invalid reflection after one repair: the JSON does not match", True,
    ),
    EP_HINTS: Episode(
        EP_HINTS, "coding", None, T0 + 1300.25, T0 + 1300.25, 1, "open", None, None, True
    ),
    EP_SHELL: Episode(
        EP_SHELL, "default", None, T0 + 1500, T0 + 1500, 1, "skipped", T0 + 7025,
        "no signal, not sampled", False,
    ),
}  # fmt: skip
FEEDBACK = [
    Feedback(1, T1, None, "coding", 1.0, "helpful", None, T0 + 1600),
    Feedback(2, None, "sess-42", "default", 0.9, "good", "exactly the command I needed", T0 + 1610),
    Feedback(3, T5, None, "coding", 0.0, "thumbs-down", "claimed mypy passes; it does not",
             T0 + 5100),
]  # fmt: skip
RUNS = [
    LearnerRun(3, "coding", T0 + 8000, None, "running", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, None),
    LearnerRun(2, "default", T0 + 7000, T0 + 7030, "done", 2, 0, 1, 0, 0, 0, 2, 900, 15, 0.0009,
               "daily token budget reached"),
    LearnerRun(1, "coding", T0 + 6000, T0 + 6040, "done", 1, 1, 0, 1, 0, 1, 2, 5321, 812, 0.01234,
               None),
]  # fmt: skip
REFLECTION = {
    "what_happened": "The agent fixed a fixture, then a CI-only marker failure.",
    "what_went_wrong": "It first said the fix was done without running the tests.",
    "root_cause": "No test run before reporting success.",
    "key_insight": "Run the tests before claiming a fix.",
    "skill_tags": [{"skill_id": TOOL, "tag": "helpful", "reason": "tests caught the regression"}],
    "new_skill": None,
    "updates": [],
    "removals": [],
}


def summary(full: Trace) -> TraceSummary:
    return TraceSummary(**{f.name: getattr(full, f.name) for f in dataclasses.fields(TraceSummary)})


def plain(detail: SkillDetail) -> Skill:
    return Skill(**{f.name: getattr(detail, f.name) for f in dataclasses.fields(Skill)})


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Raw rows, for what no repository reads back."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def schema(path: Path) -> list[tuple[Any, ...]]:
    return rows(path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A file holding exactly what release 32ea961 left."""
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(FIXTURE.read_text())
    return path


@pytest.fixture
def upgraded(old_db: Path) -> Iterator[store.Store]:
    opened = store.open_store(str(old_db))
    opened.migrate()
    yield opened
    opened.close()


# --- the migrations themselves ---------------------------------------------------------------


def test_a_fresh_database_gets_every_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    fresh = store.open_store(str(path))
    try:
        assert fresh.migrate() == [m.__name__ for m in MIGRATIONS]
        assert fresh.migrate() == []
    finally:
        fresh.close()
    tables = {name for type_, name, _, _ in schema(path) if type_ == "table"}
    assert tables >= TABLES
    applied = rows(path, "SELECT name FROM _migrations ORDER BY name")
    assert [name for (name,) in applied] == sorted(m.__name__ for m in MIGRATIONS)


def test_the_release_database_upgrades_to_the_fresh_schema(old_db: Path, tmp_path: Path) -> None:
    old = store.open_store(str(old_db))
    try:
        assert old.migrate() == [m.__name__ for m in MIGRATIONS if m.__name__ not in RELEASED]
        assert old.migrate() == []
    finally:
        old.close()
    recorded = rows(old_db, "SELECT name, applied_at FROM _migrations ORDER BY name")
    assert recorded[: len(RELEASED)] == [(name, T0) for name in RELEASED]

    fresh_path = tmp_path / "fresh.db"
    fresh = store.open_store(str(fresh_path))
    fresh.migrate()
    fresh.close()
    assert schema(old_db) == schema(fresh_path)


# --- every row the release wrote, read back through today's repositories ---------------------


def test_skillbooks_survive(upgraded: store.Store) -> None:
    assert upgraded.skillbooks.list_all() == SKILLBOOKS
    assert upgraded.skillbooks.get("coding") == SKILLBOOKS[0]
    assert upgraded.skillbooks.get("default") == SKILLBOOKS[1]
    assert upgraded.skillbooks.versions() == {"coding": 9, "default": 4}


def test_skills_survive_with_evidence_and_history(upgraded: store.Store) -> None:
    for skill_id, expected in SKILLS.items():
        assert upgraded.skills.get(skill_id) == expected
        assert upgraded.skills.history(skill_id) == expected.history
        assert upgraded.skills.evidence(skill_id) == expected.evidence
    skills = upgraded.skills
    assert skills.find("coding") == [plain(SKILLS[i]) for i in (TOOL, STYLE, GIT, TESTING)]
    assert skills.find("default") == [plain(SKILLS[GENERAL])]
    for status, skill_id in [
        ("pending", TESTING), ("active", TOOL), ("rejected", STYLE), ("archived", GIT)
    ]:  # fmt: skip
        assert skills.find("coding", status=status) == [plain(SKILLS[skill_id])]
    assert skills.find("coding", section="Tool Use") == [plain(SKILLS[TOOL])]
    assert skills.find("coding", text="pytest -x") == [plain(SKILLS[TESTING])]
    assert skills.active("default") == [plain(SKILLS[GENERAL])]


def test_traces_survive_with_their_bodies(upgraded: store.Store) -> None:
    for trace_id, expected in TRACES.items():
        assert upgraded.traces.get(trace_id) == expected
    assert upgraded.traces.count() == 7
    newest = [summary(TRACES[t]) for t in (T7, T6, T5, T4, T3, T2, T1)]
    assert upgraded.traces.newest() == newest
    assert upgraded.traces.newest(skillbook="coding", limit=2) == newest[1:3]
    assert upgraded.traces.newest(skillbook="default", before=T0 + 1160.5) == [summary(TRACES[T3])]
    assert upgraded.traces.exists(T6)
    assert upgraded.traces.session_exists("sess-42")
    assert not upgraded.traces.session_exists("sess-43")


def test_episodes_and_feedback_survive(upgraded: store.Store) -> None:
    episodes = upgraded.episodes
    for episode_id, expected in EPISODES.items():
        assert episodes.get(episode_id) == expected
        assert episodes.signal(episode_id) is expected.signal
    members = {EP_FIX: [T1, T2], EP_SESSION: [T3, T4], EP_HINTS: [T5], EP_SHELL: [T7]}
    for episode_id, trace_ids in members.items():
        assert episodes.traces(episode_id) == [TRACES[t] for t in trace_ids]
    assert episodes.feedback(EP_FIX) == [FEEDBACK[0]]
    assert episodes.feedback(EP_SESSION) == [FEEDBACK[1]]
    assert episodes.feedback(EP_HINTS) == [FEEDBACK[2]]
    assert episodes.feedback(EP_SHELL) == []

    assert episodes.cursor() == (T0 + 5000, "")
    assert episodes.ready("coding", idle_s=60, now=T0 + 9000) == [EPISODES[EP_HINTS]]
    assert episodes.ready("default", idle_s=60, now=T0 + 9000) == []
    assert episodes.sessions("default", ["sess-42", "sess-43"]) == {"sess-42": EP_SESSION}
    heads = ["0bf82ab5c491b736d8702378f0a5456b", "df2c3b1c3513e894950f79e0ee14c17a"]
    assert episodes.heads("coding", heads) == dict.fromkeys(heads, EP_FIX)
    assert episodes.negatively_rated([T1, T5], ["sess-42"]) == ({T5}, set())

    conversation = episode_conversation(upgraded, EP_FIX)
    assert conversation.trace_ids == [T1, T2]
    assert conversation.skill_ids == [TOOL, GIT]
    assert [(m.role, m.content) for m in conversation.messages][-2:] == [
        ("user", U2),
        ("assistant", A2),
    ]


def test_learner_runs_reflections_and_leases_survive(upgraded: store.Store, old_db: Path) -> None:
    learner = upgraded.learner
    assert learner.list_runs() == RUNS
    assert learner.list_runs(skillbook="coding") == [RUNS[0], RUNS[2]]
    assert learner.list_runs(run=2) == [RUNS[1]]
    assert learner.tokens_since(T0) == 5321 + 812 + 900 + 15
    assert learner.tokens_since(T0 + 6500) == 900 + 15

    # no repository reads these two back, so the rows themselves
    [(seq, episode, run, created, text)] = rows(old_db, "SELECT * FROM reflections")
    assert (seq, episode, run, created, json.loads(text)) == (
        1, EP_FIX, 1, T0 + 6030, REFLECTION
    )  # fmt: skip
    lease = "SELECT skillbook, owner, expires_at FROM learner_leases"
    assert rows(old_db, lease) == [("coding", "host-a:4242", T0 + 8300)]
    learner.release_lease("coding", "host-b:1")  # not the holder: nothing changes
    assert rows(old_db, lease) == [("coding", "host-a:4242", T0 + 8300)]
    learner.release_lease("coding", "host-a:4242")
    assert rows(old_db, lease) == []


def test_the_export_carries_the_release_data(upgraded: store.Store) -> None:
    def item(skill_id: str) -> dict[str, Any]:
        exported = dataclasses.asdict(SKILLS[skill_id])
        for key in (
            "skillbook", "deleted_at", "supersedes", "superseded_by", "prior_status",
            "contradicts", "retire_reason", "retire_proposed_at",
        ):  # fmt: skip
            if key == "skillbook" or exported[key] is None:  # links appear only when set
                del exported[key]
        for item in exported["evidence"]:
            del item["reflection"]  # a reflection's number is local to its store
        del exported["canary"]  # a rollout is this store's, not the document's
        for event in exported["history"]:
            del event["detail"]  # only a canary decision's event carries figures
        return exported

    assert upgraded.transfer.export_json("coding") == {
        "format": "skillproxy.skillbook/1",
        "skillbook": "coding",
        "version": 9,
        "settings": {
            "token_budget": 1200,
            "ranking": "relevance",
            "auto_approve": False,
            "max_active": None,
        },
        "skills": [item(i) for i in (TOOL, STYLE, GIT, TESTING)],
    }
    assert upgraded.transfer.export_json("default")["skills"] == [item(GENERAL)]


# --- writing to the upgraded database --------------------------------------------------------


def test_writes_continue_where_the_release_stopped(upgraded: store.Store) -> None:
    skills = upgraded.skills
    new = skills.create(
        "coding", "debugging", "Read the whole traceback before changing code", actor="carol"
    )
    assert (new.id, new.status, new.revision) == ("debugging-00006", "pending", 1)
    assert upgraded.skillbooks.get("coding").version == 9
    approved = skills.transition(new.id, "approve", actor="alice")
    assert (approved.status, approved.revision) == ("active", 2)
    assert upgraded.skillbooks.get("coding").version == 10
    assert [s.id for s in skills.active("coding")] == [TOOL, "debugging-00006"]

    tagged = skills.tag(TOOL, "helpful", actor="learner", trace_id=T5, reason="ran the tests")
    assert (tagged.helpful, tagged.revision) == (2, 6)
    assert tagged.history[:5] == SKILLS[TOOL].history
    assert tagged.evidence[:2] == SKILLS[TOOL].evidence
    assert skills.rollback(TOOL, 3, actor="alice").content == TOOL_EDITED

    rating = NewFeedback("coding", T2, None, 0.2, "wrong", "still failing")
    assert upgraded.feedback.add(rating) == 4
    assert upgraded.learner.start_run("default") == 4
    assert upgraded.learner.acquire_lease("default", "host-b:1", 60)


def test_grouping_continues_the_release_conversations(upgraded: store.Store) -> None:
    """A new turn of an old chat and of an old session joins the episode the release made,
    so its conversation heads and session keys still match."""
    fix = request(
        say("system", SYSTEM), say("user", U1), say("assistant", A1), say("user", U2),
        say("assistant", A2), say("user", "Now the test passes locally but not in CI."),
    )  # fmt: skip
    session = request(
        say("user", U3), say("assistant", A3), say("user", U4), say("assistant", A4),
        say("user", "Thanks. And how do I compress them?"),
    )  # fmt: skip
    common: dict[str, Any] = {
        "latency_ms": 1200.0, "ttfb_ms": 1200.0, "skill_tokens": 36, "skillbook_version": 10,
    }  # fmt: skip
    new_rows = [
        trace("tr_new_fix", 9000.0, "coding", None, input_tokens=160, output_tokens=6,
              injected_skill_ids=[TOOL], request_json=fix,
              response_json=answer("chatcmpl-N1", 9000, "Run the marker check.", 160, 6),
              **common),
        trace("tr_new_session", 9010.0, "default", None, session_id="sess-42",
              input_tokens=95, output_tokens=8, injected_skill_ids=[GENERAL],
              request_json=session,
              response_json=answer("chatcmpl-N2", 9010, "gzip /var/log/*.log", 95, 8),
              **common),
    ]  # fmt: skip
    upgraded.traces.insert_values([stored(row) for row in new_rows])
    result = group_new_traces(upgraded, settle_s=0, now=T0 + 9100)
    assert result == GroupingResult(traces_seen=2, grouped=2, new_episodes=0, skipped=0)

    reopened = upgraded.episodes.get(EP_FIX)
    assert (reopened.status, reopened.trace_count, reopened.first_at, reopened.last_at) == (
        "open", 3, T0 + 100, T0 + 9000
    )  # fmt: skip
    assert [t.id for t in upgraded.episodes.traces(EP_FIX)] == [T1, T2, "tr_new_fix"]
    resumed = upgraded.episodes.get(EP_SESSION)
    assert (resumed.status, resumed.trace_count, resumed.last_at) == ("open", 3, T0 + 9010)
    assert [t.id for t in upgraded.episodes.traces(EP_SESSION)] == [T3, T4, "tr_new_session"]


def stored(row: Trace) -> tuple[Any, ...]:
    """A trace as the sink hands it over: `TRACE_COLUMNS` order, JSON as text, flags as 0/1."""
    values: list[Any] = []
    for column in store.TRACE_COLUMNS:
        value = getattr(row, column)
        if column in ("request_json", "response_json", "injected_skill_ids"):
            value = json.dumps(value)
        elif column in ("stream", "client_disconnected"):
            value = int(value)
        values.append(value)
    return tuple(values)


def released_before(migration: Any, path: Path) -> Any:
    """A database as the release before `migration` left it: every earlier migration applied
    and recorded, and a skillbook `book`."""
    from store.sqlite.db import open_database

    db = open_database(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for earlier in MIGRATIONS[: MIGRATIONS.index(migration)]:
        earlier(db)
        db.execute("INSERT INTO _migrations VALUES (?, ?)", [earlier.__name__, T0])
    db.execute(
        "INSERT INTO skillbooks (name, created_at, updated_at) VALUES ('book', ?, ?)", [T0, T0]
    )
    return db


def test_m008_canaries_upgrades_a_database_of_the_release_before_it(tmp_path: Path) -> None:
    """A database made by every migration up to m007 (the release before canaries), with a
    skill and its history written then, takes m008: the old events read back without figures,
    and a canary can start, run and end on the skill."""
    from store.sqlite.migrations import m008_canaries

    path = tmp_path / "m007.db"
    db = released_before(m008_canaries, path)
    db.execute(
        "INSERT INTO skills (seq, id, skillbook, section, content, status, created_at, "
        "updated_at) VALUES (1, 'refunds-00001', 'book', 'refunds', 'Check the order date "
        "first.', 'pending', ?, ?)",
        [T0, T0],
    )
    db.execute(
        "INSERT INTO skill_events (skill_id, revision, action, actor, at, after_json) "
        "VALUES ('refunds-00001', 1, 'create', 'alice', ?, ?)",
        [T0, json.dumps(state("refunds", "Check the order date first.", "pending"))],
    )
    db.conn.commit()
    db.conn.close()

    upgraded = store.open_store(str(path))
    try:
        later = MIGRATIONS[MIGRATIONS.index(m008_canaries) :]
        assert upgraded.migrate() == [m.__name__ for m in later]
        assert [event.detail for event in upgraded.skills.history("refunds-00001")] == [None]
        started = upgraded.canaries.start("refunds-00001", 20, actor="alice")
        assert (started.status, started.bucket_lo, started.bucket_hi) == ("running", 0, 2000)
        assert upgraded.canaries.sessions(started.seq) == []
        assert upgraded.canaries.stop("refunds-00001", actor="alice").status == "stopped"
        assert upgraded.skills.get("refunds-00001").status == "pending"
    finally:
        upgraded.close()
    fresh = store.open_store(str(tmp_path / "fresh.db"))
    fresh.migrate()
    fresh.close()
    assert schema(path) == schema(tmp_path / "fresh.db")


REVIEW_LISTINGS = {
    "episodes of a skillbook": "WHERE e.skillbook = ? ORDER BY e.last_at DESC, e.id DESC",
    "episodes": "ORDER BY e.last_at DESC, e.id DESC",
    "failed episodes of a skillbook": (
        "WHERE e.skillbook = ? AND e.status = ? ORDER BY e.last_at DESC, e.id DESC"
    ),
    "failed episodes": "WHERE e.status = ? ORDER BY e.last_at DESC, e.id DESC",
}


@pytest.mark.parametrize("listing", sorted(REVIEW_LISTINGS))
def test_m009_review_listings_read_in_index_order(tmp_path: Path, listing: str) -> None:
    """The review page's newest-first listings (the shapes `list_episodes` and
    `traces.newest(outcome="error")` send) walk an index in their order and stop at the
    limit; a temporary sort would mean reading every row to return fifty."""
    from store.sqlite.episodes import EPISODE_SELECT

    path = tmp_path / "plans.db"
    made = store.open_store(str(path))
    made.migrate()
    made.close()
    query = f"{EPISODE_SELECT} {REVIEW_LISTINGS[listing]} LIMIT 50"
    with closing(sqlite3.connect(path)) as db:
        plan = [
            row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", ["x"] * query.count("?"))
        ]
    assert "episodes_" in plan[0] and not any("TEMP B-TREE" in step for step in plan), plan


@pytest.mark.parametrize("skillbook", ["WHERE skillbook = ? AND", "WHERE"])
def test_m009_errors_only_reads_only_failed_traces(tmp_path: Path, skillbook: str) -> None:
    path = tmp_path / "plans.db"
    made = store.open_store(str(path))
    made.migrate()
    made.close()
    query = (
        f"SELECT id FROM traces {skillbook} (status >= 400 OR error IS NOT NULL) "
        "ORDER BY created_at DESC LIMIT 50"
    )
    with closing(sqlite3.connect(path)) as db:
        plan = [
            row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", ["x"] * query.count("?"))
        ]
    assert "errors" in plan[0] and not any("TEMP B-TREE" in step for step in plan), plan


def test_m010_a_canary_keeps_the_test_it_started_with(tmp_path: Path) -> None:
    """A database made up to m009 with a canary running takes m010: that canary reads the
    live rules, as before; one started after keeps its alpha and min_sessions whatever the
    rules become."""
    from core.canary_report import build_report
    from store.sqlite.migrations import m010_canary_test_fixed

    path = tmp_path / "m009.db"
    db = released_before(m010_canary_test_fixed, path)
    for seq, section in ((1, "refunds"), (2, "tone")):
        db.execute(
            "INSERT INTO skills (seq, id, skillbook, section, content, status, created_at, "
            "updated_at) VALUES (?, ?, 'book', ?, 'Check first.', 'pending', ?, ?)",
            [seq, f"{section}-0000{seq}", section, T0, T0],
        )
    db.execute(
        "INSERT INTO canaries (skill_id, skillbook, share, assignment, bucket_lo, bucket_hi, "
        "prior_status, started_at, started_by) VALUES ('refunds-00001', 'book', 20, "
        "'disjoint', 0, 2000, 'pending', ?, 'alice')",
        [T0],
    )
    db.conn.commit()
    db.conn.close()

    upgraded = store.open_store(str(path))
    try:
        assert upgraded.migrate() == ["m010_canary_test_fixed"]
        old = upgraded.canaries.latest("refunds-00001")
        assert old is not None and (old.alpha, old.min_sessions) == (None, None)
        upgraded.canaries.update_rules("book", {"alpha": 0.1, "min_sessions": 40}, actor="a")
        new = upgraded.canaries.start("tone-00002", 20, actor="alice")
        assert (new.alpha, new.min_sessions) == (0.1, 40)
        upgraded.canaries.update_rules("book", {"alpha": 0.01, "min_sessions": 500}, actor="a")
        rules = upgraded.canaries.rules("book")
        kept = build_report(new, [], rules)
        assert (kept.alpha, kept.min_sessions, kept.test_values) == (0.1, 40, "fixed at start")
        assert "alpha 0.1 and min_sessions 40 (fixed at start)" in kept.limits[0]
        live = build_report(old, [], rules)
        assert (live.alpha, live.min_sessions, live.test_values) == (0.01, 500, "skillbook rules")
    finally:
        upgraded.close()
    fresh = store.open_store(str(tmp_path / "fresh.db"))
    fresh.migrate()
    fresh.close()
    assert schema(path) == schema(tmp_path / "fresh.db")
