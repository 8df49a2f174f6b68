"""What the canary watch costs the store thread at scale: one look over a canary's sessions.

A skillbook with `--traces` traces since its canary started (two turns a session, half of
them in the treatment arm, one feedback per eight traces), read the way the proxy's watch
reads it (`proxy.canary_watch.check_canaries`): the first look (what a restarted proxy pays
once), then a look after a little new traffic (`--new` traces and their feedback), which is
what every later look pays.

    .venv/bin/python bench/canary_watch_cost.py --traces 200000 --new 200

At 200,000 traces on two shared cores: 1.8 s for every look when each re-read every trace
since the canary started; with the tallies kept between looks, 1.3 s for the first and 0.09 s
for each after (most of it building the report over 100,000 sessions).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import store
from proxy.canary_watch import check_canaries
from store.columns import TRACE_COLUMNS
from store.records import NewFeedback

BOOK = "book"


def trace_row(n: int, at: float, session: str, injected: list[str]) -> tuple[Any, ...]:
    row: dict[str, Any] = dict.fromkeys(TRACE_COLUMNS)
    row.update(
        id=f"tr_{n:08d}", created_at=at, skillbook=BOOK, method="POST",
        path="/v1/chat/completions", stream=0, client_disconnected=0, session_id=session,
        skillbook_version=2, input_tokens=100, output_tokens=20,
        injected_skill_ids=json.dumps(injected),
    )  # fmt: skip
    return tuple(row[c] for c in TRACE_COLUMNS)


def add_traffic(db: store.Store, skill: str, first: int, count: int, at: float) -> None:
    rows = []
    for n in range(first, first + count):
        session = n // 2
        rows.append(trace_row(n, at + n * 1e-3, f"s{session}", [skill] if session % 2 else []))
    for start in range(0, len(rows), 5000):
        db.traces.insert_values(rows[start : start + 5000])
    for n in range(first, first + count, 8):
        db.feedback.add(NewFeedback(BOOK, None, f"s{n // 2}", float(n % 3 == 0), None, None))


def timed(db: store.Store) -> float:
    began = time.perf_counter()
    check_canaries(db)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=200_000)
    parser.add_argument("--new", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = store.open_store(str(Path(folder) / "bench.db"))
        db.migrate()
        skill = db.skills.create(BOOK, "refunds", "Check the order date first.", actor="b").id
        canary = db.canaries.start(skill, 50, actor="b")
        add_traffic(db, skill, 0, args.traces, canary.started_at + 1)
        first = timed(db)
        add_traffic(db, skill, args.traces, args.new, canary.started_at + 1)
        later = timed(db)
        again = timed(db)
        db.close()
    print(json.dumps({
        "traces": args.traces, "new_traces": args.new, "first_look_s": round(first, 4),
        "look_after_new_traffic_s": round(later, 4), "look_without_news_s": round(again, 4),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
