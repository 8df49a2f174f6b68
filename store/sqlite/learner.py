"""What the learner keeps between runs: runs with their spend, leases, each episode's outcome.

An episode's outcome (its skill operations, the reflection, its new status, what it cost the
run) commits in one transaction, so a crash repeats at most the reflection in flight and never
applies anything twice.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from store.errors import InvalidTransition, NotFound
from store.records import (
    AddEvidence,
    DailySpend,
    Episode,
    EpisodeDetail,
    LearnerRun,
    LearnerTotals,
    ProposeRetire,
    ProposeSkill,
    RecentReflection,
    ReflectedEpisode,
    RefusedProposal,
    RefuseProposal,
    RunCounts,
    SkillOperation,
    StoredReflection,
    TagSkill,
    Waiting,
)
from store.sqlite.episodes import EPISODE_SELECT, SQLiteEpisodes, episode_of
from store.sqlite.skills import SQLiteSkills
from store.sqlite.traces import SUMMARY_COLUMNS, decode_summary
from store.sqlite.transaction import write_transaction

_RUN_COLUMNS = tuple(f.name for f in dataclasses.fields(LearnerRun))
_COUNTERS = tuple(f.name for f in dataclasses.fields(RunCounts))


class SQLiteLearner:
    def __init__(
        self, db: sqlite_utils.Database, skills: SQLiteSkills, episodes: SQLiteEpisodes
    ) -> None:
        self._db = db
        self._skills = skills
        self._episodes = episodes

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

    def spend_by_day(self, *, skillbook: str | None, since: float) -> list[DailySpend]:
        """The learner's calls, tokens and cost per UTC day of runs started since `since`."""
        clause, params = ("AND skillbook = ?", [skillbook]) if skillbook else ("", [])
        rows = self._db.execute(
            "SELECT date(started_at, 'unixepoch') AS day, count(*), sum(llm_calls), "
            "sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM learner_runs "
            f"WHERE started_at >= ? {clause} GROUP BY day ORDER BY day",
            [since, *params],
        ).fetchall()
        return [DailySpend(d, n, c, i, o, round(float(cost), 6)) for d, n, c, i, o, cost in rows]

    def totals(self) -> list[LearnerTotals]:
        rows = self._db.execute(
            "SELECT skillbook, status, count(*), sum(episodes), sum(reflections), sum(failures), "
            "sum(proposals), sum(llm_calls), sum(input_tokens), sum(output_tokens), "
            "sum(cost_usd) FROM learner_runs GROUP BY skillbook, status ORDER BY skillbook, status"
        ).fetchall()
        return [
            LearnerTotals(sb, status, n, ep, refl, fail, prop, calls, inp, out, round(cost, 6))
            for sb, status, n, ep, refl, fail, prop, calls, inp, out, cost in rows
        ]

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

    def defer_episode(
        self,
        episode_id: str,
        run: int,
        error: str,
        counts: RunCounts,
        *,
        max_attempts: int,
    ) -> str:
        """Count one failed attempt: the episode stays open for a later run, or is failed
        once it has had `max_attempts`; returns the status it has now."""
        with write_transaction(self._db):
            row = self._db.execute(
                "UPDATE episodes SET attempts = attempts + 1, error = ? WHERE id = ? "
                "RETURNING attempts",
                [error, episode_id],
            ).fetchone()
            if row is None:
                raise NotFound(f"no episode {episode_id!r}")
            status = "failed" if row[0] >= max_attempts else "open"
            if status == "failed":
                self._set_episode_status(episode_id, "failed", f"{error} ({row[0]} attempts)")
            self._add_to_run(run, counts)
        return status

    def retry_episodes(
        self, *, skillbook: str | None = None, episode_ids: list[str] | None = None
    ) -> list[str]:
        """Re-queue failed episodes (these ids, or every failed one of `skillbook`): open,
        attempts back to 0, the last error kept until the next try; returns their ids."""
        with write_transaction(self._db):
            if episode_ids is not None:
                found = []
                for episode_id in episode_ids:
                    row = self._db.execute(
                        "SELECT status FROM episodes WHERE id = ?", [episode_id]
                    ).fetchone()
                    if row is None:
                        raise NotFound(f"no episode {episode_id!r}")
                    if row[0] != "failed":
                        raise InvalidTransition(
                            f"episode {episode_id} is {row[0]}: only failed ones are retried"
                        )
                    found.append(episode_id)
            else:
                rows = self._db.execute(
                    "SELECT id FROM episodes WHERE status = 'failed' AND skillbook = ?",
                    [skillbook],
                ).fetchall()
                found = [row[0] for row in rows]
            for episode_id in found:
                self._db.execute(
                    "UPDATE episodes SET status = 'open', attempts = 0, reflected_at = NULL "
                    "WHERE id = ?",
                    [episode_id],
                )
        return found

    def list_episodes(
        self,
        *,
        skillbook: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: float | None = None,
    ) -> list[Episode]:
        """Newest activity first; page with `before` = the last row's `last_at`."""
        where, params = _episode_filter(skillbook, status, before)
        rows = self._db.execute(
            f"{EPISODE_SELECT} {where} ORDER BY e.last_at DESC, e.id DESC LIMIT ?", [*params, limit]
        ).fetchall()
        return [episode_of(row) for row in rows]

    def episode_detail(self, episode_id: str) -> EpisodeDetail:
        episode = self._episodes.get(episode_id)
        columns = ", ".join(SUMMARY_COLUMNS)
        traces = self._db.execute(
            f"SELECT {columns} FROM traces WHERE episode_id = ? ORDER BY created_at, id",
            [episode_id],
        ).fetchall()
        fields = {f.name: getattr(episode, f.name) for f in dataclasses.fields(Episode)}
        return EpisodeDetail(
            **fields,
            traces=[decode_summary(t) for t in traces],
            feedback=self._episodes.feedback(episode_id),
            reflections=self.reflections(episode_id),
            refused=self.refused(episode_id=episode_id),
        )

    def reflections(self, episode_id: str) -> list[StoredReflection]:
        rows = self._db.execute(
            f"{_REFLECTION} WHERE episode_id = ? ORDER BY seq", [episode_id]
        ).fetchall()
        return [_reflection(row) for row in rows]

    def reflection(self, seq: int) -> StoredReflection:
        row = self._db.execute(f"{_REFLECTION} WHERE seq = ?", [seq]).fetchone()
        if row is None:
            raise NotFound(f"no reflection {seq}")
        return _reflection(row)

    def refused(
        self, *, skillbook: str | None = None, episode_id: str | None = None, limit: int = 100
    ) -> list[RefusedProposal]:
        """Lessons the skill rules refused, newest first."""
        where, params = [], []
        if skillbook is not None:
            where.append("skillbook = ?")
            params.append(skillbook)
        if episode_id is not None:
            where.append("episode_id = ?")
            params.append(episode_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT {', '.join(_REFUSED_COLUMNS)} FROM refused_proposals {clause} "
            "ORDER BY seq DESC LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [RefusedProposal(*row) for row in rows]

    def waiting(self, skillbook: str, *, settle_s: float, idle_s: float, now: float) -> Waiting:
        """What the next run cannot use yet: traces still settling (not grouped), episodes
        not idle long enough, and when the first of either becomes ready."""
        cursor = self._db.execute("SELECT created_at, trace_id FROM grouping_cursor").fetchone()
        after = cursor[0] if cursor else float("-inf")
        settling, oldest = self._db.execute(
            "SELECT count(*), min(created_at) FROM traces WHERE skillbook = ? AND created_at > ?",
            [skillbook, after],
        ).fetchone()
        grouped_until = min(now, cursor[0]) if cursor else now
        idle, first_idle = self._db.execute(
            "SELECT count(*), min(last_at) FROM episodes WHERE skillbook = ? AND status = 'open' "
            "AND last_at >= ?",
            [skillbook, grouped_until - idle_s],
        ).fetchone()
        candidates = []
        if oldest is not None:
            candidates.append(oldest + settle_s + idle_s)
        if first_idle is not None:
            candidates.append(first_idle + idle_s)
        return Waiting(int(settling), int(idle), min(candidates) if candidates else None)

    def recent_reflections(self, skillbook: str, *, limit: int) -> list[RecentReflection]:
        """The newest `limit` reflections of the skillbook, oldest first, each with the last
        trace of its episode."""
        rows = self._db.execute(
            "SELECT r.seq, r.episode_id, r.run_seq, r.created_at, r.reflection_json, "
            "(SELECT t.id FROM traces t WHERE t.episode_id = r.episode_id "
            " ORDER BY t.created_at DESC, t.id DESC LIMIT 1) "
            "FROM reflections r JOIN episodes e ON e.id = r.episode_id "
            "WHERE e.skillbook = ? ORDER BY r.seq DESC LIMIT ?",
            [skillbook, limit],
        ).fetchall()
        return [
            RecentReflection(_reflection(row[:5]), row[5])
            for row in reversed(rows)
            if row[5] is not None
        ]

    def mark(self, skillbook: str, kind: str) -> int:
        """How far a periodic pass of `kind` has read (a reflection seq; 0 before the first)."""
        row = self._db.execute(
            "SELECT seq FROM learner_marks WHERE skillbook = ? AND kind = ?", [skillbook, kind]
        ).fetchone()
        return int(row[0]) if row else 0

    def commit_pass(
        self,
        skillbook: str,
        run: int,
        kind: str,
        upto: int,
        operations: list[SkillOperation],
        counts: RunCounts,
        *,
        actor: str,
    ) -> list[str]:
        """A periodic pass's proposals, its mark moved to `upto` and its spend, all or nothing;
        returns the ids of the skills it created."""
        created: list[str] = []
        at = time.time()
        with write_transaction(self._db):
            for op in operations:
                if isinstance(op, ProposeSkill):
                    created.append(
                        self._skills.create_in_tx(
                            skillbook, op.section, op.content, actor=actor, status=op.status,
                            evidence=[(op.trace_id, op.reason), *op.more_evidence],
                            contradicts=op.contradicts,
                        )
                    )  # fmt: skip
                elif isinstance(op, AddEvidence):
                    self._skills.snapshot(op.skill_id)
                    self._skills.add_evidence_in_tx(op.skill_id, op.trace_id, op.reason, actor, at)
            self._db.execute(
                "INSERT INTO learner_marks (skillbook, kind, seq) VALUES (?, ?, ?) "
                "ON CONFLICT (skillbook, kind) DO UPDATE SET seq = excluded.seq",
                [skillbook, kind, upto],
            )
            self._add_to_run(run, counts)
        return created

    def commit_reflection(self, outcome: ReflectedEpisode) -> list[str]:
        created: list[str] = []
        at = time.time()
        skills, actor = self._skills, outcome.actor
        with write_transaction(self._db):
            self._set_episode_status(outcome.episode_id, "reflected", None)  # NotFound first
            cursor = self._db.execute(
                "INSERT INTO reflections (episode_id, run_seq, created_at, reflection_json) "
                "VALUES (?, ?, ?, ?)",
                [outcome.episode_id, outcome.run, at, json.dumps(outcome.reflection)],
            )
            seq = int(cursor.lastrowid or 0)
            for op in outcome.operations:
                if isinstance(op, TagSkill):
                    skills.tag_in_tx(
                        op.skill_id, op.tag, actor=actor, trace_id=op.trace_id, reason=op.reason,
                        reflection=seq,
                    )  # fmt: skip
                elif isinstance(op, ProposeSkill):
                    created.append(
                        skills.create_in_tx(
                            outcome.skillbook,
                            op.section,
                            op.content,
                            actor=actor,
                            status=op.status,
                            evidence=[(op.trace_id, op.reason), *op.more_evidence],
                            supersedes=op.supersedes,
                            contradicts=op.contradicts,
                            reflection=seq,
                        )
                    )
                elif isinstance(op, AddEvidence):
                    skills.snapshot(op.skill_id)  # NotFound for an unknown skill
                    skills.add_evidence_in_tx(
                        op.skill_id, op.trace_id, op.reason, actor, at, reflection=seq
                    )
                elif isinstance(op, ProposeRetire):
                    skills.propose_retire_in_tx(op.skill_id, op.reason, actor=actor)
                    skills.add_evidence_in_tx(
                        op.skill_id, op.trace_id, op.reason, actor, at, reflection=seq
                    )
                elif isinstance(op, RefuseProposal):
                    self._db.execute(
                        f"INSERT INTO refused_proposals ({', '.join(_REFUSED_COLUMNS[1:])}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            outcome.skillbook, outcome.episode_id, seq, op.trace_id, op.section,
                            op.content, op.rule, at,
                        ],
                    )  # fmt: skip
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


_REFUSED_COLUMNS = (
    "seq", "skillbook", "episode_id", "reflection_seq", "trace_id", "section", "content", "rule",
    "created_at",
)  # fmt: skip
_REFLECTION = "SELECT seq, episode_id, run_seq, created_at, reflection_json FROM reflections"


def _reflection(row: Sequence[Any]) -> StoredReflection:
    seq, episode_id, run, created_at, text = row
    return StoredReflection(seq, episode_id, run, created_at, json.loads(text))


def _episode_filter(
    skillbook: str | None, status: str | None, before: float | None
) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for clause, value in (("e.skillbook = ?", skillbook), ("e.status = ?", status)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if before is not None:
        where.append("e.last_at < ?")
        params.append(before)
    return (f"WHERE {' AND '.join(where)}" if where else ""), params
