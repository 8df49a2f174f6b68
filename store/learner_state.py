"""What the learner keeps between runs: runs with their spend, leases, reflections, feedback.

Each function is one statement or one transaction; the learner composes them inside its own
`write_transaction` so an episode's outcome and its cost commit together.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlite_utils

from store.transaction import write_transaction

RUN_COUNTERS = (
    "episodes",
    "reflections",
    "failures",
    "proposals",
    "merged",
    "tags",
    "llm_calls",
    "input_tokens",
    "output_tokens",
)


def start_run(db: sqlite_utils.Database, skillbook: str) -> int:
    with write_transaction(db):
        cursor = db.execute(
            "INSERT INTO learner_runs (skillbook, started_at) VALUES (?, ?)",
            [skillbook, time.time()],
        )
    return int(cursor.lastrowid or 0)


def add_to_run(
    db: sqlite_utils.Database, run: int, *, cost_usd: float = 0.0, **counts: int
) -> None:
    unknown = set(counts) - set(RUN_COUNTERS)
    if unknown:
        raise ValueError(f"unknown run counters: {sorted(unknown)}")
    sets = ", ".join(f"{key} = {key} + ?" for key in counts)
    sets = f"{sets}, cost_usd = cost_usd + ?" if sets else "cost_usd = cost_usd + ?"
    db.execute(f"UPDATE learner_runs SET {sets} WHERE seq = ?", [*counts.values(), cost_usd, run])


def finish_run(db: sqlite_utils.Database, run: int, status: str, error: str | None = None) -> None:
    with write_transaction(db):
        db.execute(
            "UPDATE learner_runs SET finished_at = ?, status = ?, error = ? WHERE seq = ?",
            [time.time(), status, error, run],
        )


def list_runs(
    db: sqlite_utils.Database,
    *,
    skillbook: str | None = None,
    limit: int = 20,
    run: int | None = None,
) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    if skillbook:
        where.append("skillbook = ?")
        params.append(skillbook)
    if run is not None:
        where.append("seq = ?")
        params.append(run)
    sql = "SELECT * FROM learner_runs" + (" WHERE " + " AND ".join(where) if where else "")
    cursor = db.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def tokens_since(db: sqlite_utils.Database, since: float) -> int:
    """Input + output tokens spent by every learner run started since `since` (all skillbooks)."""
    row = db.execute(
        "SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM learner_runs "
        "WHERE started_at >= ?",
        [since],
    ).fetchone()
    return int(row[0])


def acquire_lease(db: sqlite_utils.Database, skillbook: str, owner: str, seconds: float) -> bool:
    """Take (or renew) the skillbook's learner lease; False while another owner holds it."""
    now = time.time()
    with write_transaction(db):
        row = db.execute(
            "SELECT owner, expires_at FROM learner_leases WHERE skillbook = ?", [skillbook]
        ).fetchone()
        if row is not None and row[0] != owner and row[1] > now:
            return False
        db.execute(
            "INSERT INTO learner_leases (skillbook, owner, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (skillbook) DO UPDATE SET owner = excluded.owner, "
            "expires_at = excluded.expires_at",
            [skillbook, owner, now + seconds],
        )
    return True


def release_lease(db: sqlite_utils.Database, skillbook: str, owner: str) -> None:
    with write_transaction(db):
        db.execute(
            "DELETE FROM learner_leases WHERE skillbook = ? AND owner = ?", [skillbook, owner]
        )


def set_episode_status(
    db: sqlite_utils.Database, episode_id: str, status: str, error: str | None = None
) -> None:
    db.execute(
        "UPDATE episodes SET status = ?, reflected_at = ?, error = ? WHERE id = ?",
        [status, time.time(), error, episode_id],
    )


def save_reflection(
    db: sqlite_utils.Database, episode_id: str, run: int, reflection: dict[str, Any]
) -> int:
    cursor = db.execute(
        "INSERT INTO reflections (episode_id, run_seq, created_at, reflection_json) "
        "VALUES (?, ?, ?, ?)",
        [episode_id, run, time.time(), json.dumps(reflection)],
    )
    return int(cursor.lastrowid or 0)


def add_feedback(
    db: sqlite_utils.Database,
    *,
    skillbook: str,
    trace_id: str | None,
    session_id: str | None,
    score: float | None,
    label: str | None,
    comment: str | None,
) -> int:
    with write_transaction(db):
        cursor = db.execute(
            "INSERT INTO feedback (trace_id, session_id, skillbook, score, label, comment, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [trace_id, session_id, skillbook, score, label, comment, time.time()],
        )
    return int(cursor.lastrowid or 0)


def trace_exists(db: sqlite_utils.Database, trace_id: str) -> bool:
    return db.execute("SELECT 1 FROM traces WHERE id = ?", [trace_id]).fetchone() is not None


def session_exists(db: sqlite_utils.Database, session_id: str) -> bool:
    found = db.execute("SELECT 1 FROM traces WHERE session_id = ? LIMIT 1", [session_id])
    if found.fetchone() is not None:
        return True
    found = db.execute("SELECT 1 FROM episodes WHERE session_key = ? LIMIT 1", [session_id])
    return found.fetchone() is not None
