"""What the learner keeps between runs: runs with their spend, leases, each episode's outcome.

An episode's outcome (its skill operations, the reflection, its new status, what it cost the
run) commits in one transaction, so a crash repeats at most the reflection in flight and never
applies anything twice.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import sqlite_utils

from store.errors import NotFound
from store.records import (
    AddEvidence,
    LearnerRun,
    ProposeSkill,
    ReflectedEpisode,
    RunCounts,
    TagSkill,
)
from store.sqlite.skills import SQLiteSkills
from store.sqlite.transaction import write_transaction

_RUN_COLUMNS = tuple(f.name for f in dataclasses.fields(LearnerRun))
_COUNTERS = tuple(f.name for f in dataclasses.fields(RunCounts))


class SQLiteLearner:
    def __init__(self, db: sqlite_utils.Database, skills: SQLiteSkills) -> None:
        self._db = db
        self._skills = skills

    def start_run(self, skillbook: str) -> int:
        with write_transaction(self._db):
            cursor = self._db.execute(
                "INSERT INTO learner_runs (skillbook, started_at) VALUES (?, ?)",
                [skillbook, time.time()],
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run: int, status: str, error: str | None = None) -> None:
        with write_transaction(self._db):
            self._db.execute(
                "UPDATE learner_runs SET finished_at = ?, status = ?, error = ? WHERE seq = ?",
                [time.time(), status, error, run],
            )

    def list_runs(
        self, *, skillbook: str | None = None, limit: int = 20, run: int | None = None
    ) -> list[LearnerRun]:
        where: list[str] = []
        params: list[Any] = []
        if skillbook:
            where.append("skillbook = ?")
            params.append(skillbook)
        if run is not None:
            where.append("seq = ?")
            params.append(run)
        sql = f"SELECT {', '.join(_RUN_COLUMNS)} FROM learner_runs"
        sql += " WHERE " + " AND ".join(where) if where else ""
        rows = self._db.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit]).fetchall()
        return [LearnerRun(*row) for row in rows]

    def tokens_since(self, since: float) -> int:
        """Input + output tokens spent by every run started since `since` (all skillbooks)."""
        row = self._db.execute(
            "SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM learner_runs "
            "WHERE started_at >= ?",
            [since],
        ).fetchone()
        return int(row[0])

    def acquire_lease(self, skillbook: str, owner: str, seconds: float) -> bool:
        now = time.time()
        with write_transaction(self._db):
            row = self._db.execute(
                "SELECT owner, expires_at FROM learner_leases WHERE skillbook = ?", [skillbook]
            ).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            self._db.execute(
                "INSERT INTO learner_leases (skillbook, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (skillbook) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at",
                [skillbook, owner, now + seconds],
            )
        return True

    def release_lease(self, skillbook: str, owner: str) -> None:
        with write_transaction(self._db):
            self._db.execute(
                "DELETE FROM learner_leases WHERE skillbook = ? AND owner = ?", [skillbook, owner]
            )

    def close_episode(
        self, episode_id: str, run: int, status: str, error: str | None, counts: RunCounts
    ) -> None:
        with write_transaction(self._db):
            self._set_episode_status(episode_id, status, error)
            self._add_to_run(run, counts)

    def commit_reflection(self, outcome: ReflectedEpisode) -> list[str]:
        created: list[str] = []
        at = time.time()
        skills, actor = self._skills, outcome.actor
        with write_transaction(self._db):
            self._set_episode_status(outcome.episode_id, "reflected", None)  # NotFound first
            for op in outcome.operations:
                if isinstance(op, TagSkill):
                    skills.tag_in_tx(
                        op.skill_id, op.tag, actor=actor, trace_id=op.trace_id, reason=op.reason
                    )
                elif isinstance(op, ProposeSkill):
                    created.append(
                        skills.create_in_tx(
                            outcome.skillbook,
                            op.section,
                            op.content,
                            actor=actor,
                            status=op.status,
                            evidence=[(op.trace_id, op.reason)],
                            supersedes=op.supersedes,
                        )
                    )
                elif isinstance(op, AddEvidence):
                    skills.snapshot(op.skill_id)  # NotFound for an unknown skill
                    skills.add_evidence_in_tx(op.skill_id, op.trace_id, op.reason, actor, at)
            self._db.execute(
                "INSERT INTO reflections (episode_id, run_seq, created_at, reflection_json) "
                "VALUES (?, ?, ?, ?)",
                [outcome.episode_id, outcome.run, at, json.dumps(outcome.reflection)],
            )
            self._add_to_run(outcome.run, outcome.counts)
        return created

    def _set_episode_status(self, episode_id: str, status: str, error: str | None) -> None:
        cursor = self._db.execute(
            "UPDATE episodes SET status = ?, reflected_at = ?, error = ? WHERE id = ?",
            [status, time.time(), error, episode_id],
        )
        if cursor.rowcount == 0:
            raise NotFound(f"no episode {episode_id!r}")

    def _add_to_run(self, run: int, counts: RunCounts) -> None:
        sets = ", ".join(f"{key} = {key} + ?" for key in _COUNTERS)
        values = [getattr(counts, key) for key in _COUNTERS]
        self._db.execute(f"UPDATE learner_runs SET {sets} WHERE seq = ?", [*values, run])
