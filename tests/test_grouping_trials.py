"""Grouping the pass^k set-up: identical trials sent at once through the real proxy.

Four 3-turn and four 7-turn trials of one task (same system prompt, same first user message,
same API key) run concurrently against the fake provider, which answers every trial alike or
each differently; the traces are then grouped by learner/episodes.py as the learner does. Two
tenants (two API keys) sending the same conversation close the file.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from learner.episodes import group_new_traces
from store import open_store
from tests.fakes import replies
from tests.harness import RunningProxy

TRIALS = (3, 3, 3, 3, 7, 7, 7, 7)  # turns per trial
TASK = "Book the cheapest flight from Oslo to Rome next Friday."


def run_trials(
    proxy: RunningProxy,
    turns: tuple[int, ...] = TRIALS,
    *,
    keys: tuple[str, ...] = ("sk-bench",),
    session: str | None = None,
) -> list[list[str]]:
    """Run the trials at once; each one's trace ids. Trial n sends key `keys[n % len(keys)]`
    and, given a `session` such as `"trial-{n}"`, that `X-Session-Id`."""
    start = threading.Barrier(len(turns))

    def trial(n: int) -> list[str]:
        client = proxy.openai(key=keys[n % len(keys)])
        headers = {"X-Session-Id": session.format(n=n)} if session else {}
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a travel agent with a booking tool."},
            {"role": "user", "content": TASK},
        ]
        traces: list[str] = []
        start.wait()
        for turn in range(turns[n]):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=messages,  # type: ignore[arg-type]
                extra_headers=headers,
            )
            traces.append(raw.headers["X-Trace-Id"])
            said = raw.parse().choices[0].message.content
            messages += [
                {"role": "assistant", "content": said},
                {"role": "user", "content": f"Go on with step {turn + 2}."},
            ]
        return traces

    with ThreadPoolExecutor(len(turns)) as pool:
        return list(pool.map(trial, range(len(turns))))


def group(proxy: RunningProxy, traces: int, limit: int = 5000) -> dict[str, list[str]]:
    """Group every stored trace; episode id -> its trace ids, episodes in order of creation."""
    proxy.traces(traces)
    store = open_store(proxy.config.store.url)
    try:
        while group_new_traces(store, settle_s=0, limit=limit).traces_seen == limit:
            pass
    finally:
        store.close()
    db = proxy.db()
    try:
        rows = db.execute(
            "SELECT t.episode_id, t.id FROM traces t JOIN episodes e ON e.id = t.episode_id "
            "ORDER BY e.first_at, e.id, t.created_at, t.id"
        ).fetchall()
    finally:
        db.conn.close()
    episodes: dict[str, list[str]] = {}
    for episode_id, trace_id in rows:
        episodes.setdefault(episode_id, []).append(trace_id)
    return episodes


def depths(proxy: RunningProxy, episode: list[str]) -> list[int]:
    """How many messages each trace of an episode sent, in order."""
    return [len(proxy.trace(t)["request_json"]["messages"]) for t in episode]


@pytest.fixture
def unique_replies(proxy: RunningProxy) -> Iterator[None]:
    """Every answer differs (`Leg n.`), so the trials part after their first answer."""
    counter = itertools.count(1)
    proxy.provider.enqueue(*(replies.text(f"Leg {next(counter)}.") for _ in range(sum(TRIALS))))
    yield
    assert proxy.provider.queued == 0


@pytest.mark.parametrize(("limit", "alike"), [(5000, "always"), (3, "always"), (5000, "first")])
def test_identical_trials_give_one_episode_per_trial(
    proxy: RunningProxy, limit: int, alike: str
) -> None:
    """Every trial answered alike, every turn or only the first: counts and shapes are right.

    Where requests and answers are identical, which trial a turn came from is unknowable (the
    fix is one `X-Session-Id` per trial), so each episode is checked to be one whole
    conversation, one trace per turn, in order."""
    proxy.provider.default = replies.text("Searching flights.")
    if alike == "first":  # the barrier sends all first turns at once
        proxy.provider.enqueue(*(replies.text("Searching flights.") for _ in TRIALS))
        proxy.provider.enqueue(*(replies.text(f"Leg {n}.") for n in range(sum(TRIALS))))
    run_trials(proxy)

    episodes = group(proxy, sum(TRIALS), limit=limit)

    counts = [len(e) for e in episodes.values()]
    assert sorted(counts) == sorted(TRIALS), counts
    for episode in episodes.values():
        assert depths(proxy, episode) == [2 + 2 * turn for turn in range(len(episode))]


@pytest.mark.usefixtures("unique_replies")
@pytest.mark.parametrize("limit", [5000, 3])
def test_trials_answered_differently_are_grouped_exactly(proxy: RunningProxy, limit: int) -> None:
    trials = run_trials(proxy)

    episodes = group(proxy, sum(TRIALS), limit=limit)

    assert sorted(episodes.values()) == sorted(trials), [len(e) for e in episodes.values()]


def test_a_session_id_per_trial_groups_identical_trials_exactly(proxy: RunningProxy) -> None:
    proxy.provider.default = replies.text("Searching flights.")
    trials = run_trials(proxy, session="trial-{n}")

    episodes = group(proxy, sum(TRIALS))

    assert sorted(episodes.values()) == sorted(trials)


@pytest.mark.parametrize("session", [None, "shared"])
def test_two_tenants_never_share_an_episode(proxy: RunningProxy, session: str | None) -> None:
    """The same conversation from two API keys, with no session or the same one: two episodes."""
    proxy.provider.default = replies.text("Searching flights.")
    trials = run_trials(proxy, (3, 3), keys=("sk-tenant-a", "sk-tenant-b"), session=session)

    episodes = group(proxy, 6)

    assert sorted(episodes.values()) == sorted(trials)
    for traces in episodes.values():
        assert len({proxy.trace(t)["key_fingerprint"] for t in traces}) == 1
