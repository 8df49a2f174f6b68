"""Canary rollouts: starting one, ending it, the rules per skillbook, and the sessions it is
judged on.

A canary row owns a range of session buckets from the moment it starts until it ends, so the
share of sessions that see the skill, and which ones, never move while it runs. Disjoint
canaries of one skillbook take the lowest free range on one shared hash of the session (so a
session is in at most one canary's treatment: k canaries make k + 1 distinct sections); an
independent one hashes the session with its own skill id (2**n sections for n of them, so
they are capped, `MAX_INDEPENDENT`).

Every start and end bumps the skillbook's version, so each proxy re-renders its sections once;
every start, end and recorded verdict appends a history event to the skill, the figures of the
moment in its `detail`. Ending: `promoted` approves a pending skill (an active one stays),
`withdrawn` archives it (a person restores it), `stopped` leaves it as it was before. A person
approving a skill under canary promotes it; rejecting, archiving, deleting or editing it stops
the canary (the figures would judge a text no longer served), and so does freezing or deleting
its skillbook (which then injects no canary). A decision applies to every session from then
on, those in progress included: the only moment a session's section changes.

The sessions a canary is judged on (`sessions`) are conversations whose first trace came after
it started and before it ended: one per `X-Session-Id` (`s:` keys), else per learner episode
(`e:` keys; a trace not grouped yet is not counted yet). Only traces the proxy tried to inject
into count (a skillbook version recorded: an opted-out request has none). A session is in the
treatment arm when one of its traces carried the skill, by the trace's injected ids, so what
the model did not see is never credited to the skill. For a disjoint canary, a session in the
treatment of another disjoint canary running beside it is in neither arm; sessions of an
independent canary's treatment stay in both arms of every other canary. The counts are kept
per canary and brought up to date from what is new since the last look
(`store.sqlite.canary_tally`), so the watch can look often.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import sqlite_utils

from store.canary_rules import (
    BUCKETS,
    MAX_INDEPENDENT,
    MAX_RUNNING,
    RULES,
    buckets_for,
    check_rules,
    check_share,
    effective,
)
from store.errors import Conflict, InvalidTransition, NotFound
from store.records import Canary, CanaryRules, CanarySession, Skill
from store.sqlite.canary_tally import Tally
from store.sqlite.skillbooks import SQLiteSkillbooks
from store.sqlite.transaction import write_transaction

if TYPE_CHECKING:
    from store.sqlite.skills import SQLiteSkills

_COLUMNS = (
    "seq, skill_id, skillbook, share, assignment, bucket_lo, bucket_hi, status, prior_status, "
    "started_at, started_by, ended_at, ended_by, end_reason, verdict, alpha, min_sessions"
)
_SELECT = f"SELECT {_COLUMNS} FROM canaries"
KEPT_TALLIES = 2 * MAX_RUNNING
"""Canaries whose session tallies are kept in memory (`store.sqlite.canary_tally`)."""


class SQLiteCanaries:
    def __init__(
        self, db: sqlite_utils.Database, skillbooks: SQLiteSkillbooks, skills: SQLiteSkills
    ) -> None:
        self._db = db
        self._skillbooks = skillbooks
        self._skills = skills
        self._tallies: dict[int, Tally] = {}

    # rules

    def rules(self, skillbook: str) -> CanaryRules:
        self._skillbooks.get(skillbook)  # NotFound for an unknown one
        row = self._db.execute(
            f"SELECT {', '.join(RULES)} FROM canary_rules WHERE skillbook = ?", [skillbook]
        ).fetchone()
        return CanaryRules() if row is None else CanaryRules(*row)

    def update_rules(
        self, skillbook: str, changes: dict[str, Any], *, actor: str = "admin"
    ) -> CanaryRules:
        check_rules(changes)
        if changes.get("share") is not None:
            changes = {**changes, "share": check_share(changes["share"])}
        with write_transaction(self._db):
            self._skillbooks.get(skillbook)  # NotFound: rules for no skillbook make none
            self._skillbooks.refuse_deleted(skillbook)
            current = self.rules(skillbook)
            changes = {k: v for k, v in changes.items() if getattr(current, k) != v}
            if changes:
                values = {key: changes.get(key, getattr(current, key)) for key in RULES}
                self._db.execute(
                    f"INSERT OR REPLACE INTO canary_rules (skillbook, {', '.join(RULES)}, "
                    f"updated_at) VALUES (?, {', '.join('?' for _ in RULES)}, ?)",
                    [skillbook, *values.values(), time.time()],
                )
                self._skillbooks.record_event(skillbook, "canary rules", actor, changes)
        return self.rules(skillbook)

    # reading

    def latest(self, skill_id: str) -> Canary | None:
        row = self._db.execute(
            f"{_SELECT} WHERE skill_id = ? ORDER BY seq DESC LIMIT 1", [skill_id]
        ).fetchone()
        return None if row is None else Canary(*row)

    def get(self, seq: int) -> Canary:
        row = self._db.execute(f"{_SELECT} WHERE seq = ?", [seq]).fetchone()
        if row is None:
            raise NotFound(f"no canary {seq}")
        return Canary(*row)

    def running(self, skillbook: str | None = None) -> list[Canary]:
        where, params = "status = 'running'", []
        if skillbook is not None:
            where, params = f"{where} AND skillbook = ?", [skillbook]
        rows = self._db.execute(f"{_SELECT} WHERE {where} ORDER BY seq", params).fetchall()
        return [Canary(*row) for row in rows]

    def running_skills(self, skillbook: str) -> list[tuple[Canary, Skill]]:
        """Running canaries with their skills, for the injection cache to render."""
        return [(c, self._skills.snapshot(c.skill_id)) for c in self.running(skillbook)]

    def beside(self, canary: Canary) -> list[Canary]:
        """The other canaries of its skillbook whose run overlapped its own, oldest first."""
        until = canary.ended_at if canary.ended_at is not None else float("inf")
        rows = self._db.execute(
            f"{_SELECT} WHERE skillbook = ? AND seq != ? AND started_at < ? "
            "AND (ended_at IS NULL OR ended_at > ?) ORDER BY seq",
            [canary.skillbook, canary.seq, until, canary.started_at],
        ).fetchall()
        return [Canary(*row) for row in rows]

    def feedback_mark(self) -> tuple[int, int, float]:
        """The newest feedback and canary seqs and the latest rules change: a watcher re-reads
        figures when one moves."""
        feedback = self._db.execute("SELECT coalesce(max(seq), 0) FROM feedback").fetchone()[0]
        canary = self._db.execute("SELECT coalesce(max(seq), 0) FROM canaries").fetchone()[0]
        rules = self._db.execute(
            "SELECT coalesce(max(updated_at), 0) + count(*) FROM canary_rules"
        ).fetchone()[0]
        return int(feedback), int(canary), float(rules)

    def books_with_feedback_after(self, seq: int) -> set[str]:
        rows = self._db.execute(
            "SELECT DISTINCT skillbook FROM feedback WHERE seq > ?", [seq]
        ).fetchall()  # a range of the table from `seq`: only the new rows are read
        return {str(row[0]) for row in rows}

    def sessions(self, seq: int) -> list[CanarySession]:
        """The conversations the canary `seq` is judged on, in the order first seen. A
        session in the treatment of another disjoint canary running beside it is in neither
        arm of this one (an independent canary's sessions stay in both: they are drawn
        independently of this one's)."""
        canary = self.get(seq)
        disjoint = (
            [o for o in self.beside(canary) if o.assignment == "disjoint"]
            if canary.assignment == "disjoint"
            else []
        )
        tally = self._tally(canary)
        tally.update(self._db, {o.skill_id for o in disjoint})
        return tally.sessions(disjoint)

    def _tally(self, canary: Canary) -> Tally:
        """This canary's tally, new or rebuilt when it ended since it was built."""
        tally = self._tallies.get(canary.seq)
        if tally is None or (canary.ended_at is not None and not tally.ended):
            until = canary.ended_at if canary.ended_at is not None else float("inf")
            tally = Tally(
                canary.skill_id, canary.skillbook, canary.started_at, until,
                ended=canary.ended_at is not None,
            )  # fmt: skip
            self._tallies[canary.seq] = tally
            while len(self._tallies) > KEPT_TALLIES:  # the oldest canaries' go first
                del self._tallies[min(self._tallies)]
        return tally

    # changes

    def start(self, skill_id: str, share: float, *, actor: str, note: str | None = None) -> Canary:
        with write_transaction(self._db):
            self.start_in_tx(self._skills.snapshot(skill_id), share, actor, note)
        found = self.latest(skill_id)
        assert found is not None
        return found

    def start_in_tx(self, skill: Skill, share: float, actor: str, note: str | None) -> None:
        share = check_share(share)
        if skill.deleted_at is not None:
            raise InvalidTransition(f"cannot canary skill {skill.id}: it is deleted")
        if skill.status not in ("pending", "active"):
            raise InvalidTransition(
                f"cannot canary skill {skill.id}: it is {skill.status} (only pending or active "
                "skills can be canaried)"
            )
        book = self._skillbooks.get(skill.skillbook)
        if book.frozen_version is not None:
            raise InvalidTransition(
                f"cannot canary skill {skill.id}: skillbook {skill.skillbook!r} is frozen"
            )
        running = self.running(skill.skillbook)
        if any(c.skill_id == skill.id for c in running):
            raise Conflict(f"skill {skill.id} is already a canary")
        if len(running) >= MAX_RUNNING:
            raise Conflict(
                f"skillbook {skill.skillbook!r} already runs {MAX_RUNNING} canaries: end one first"
            )
        rules = effective(self.rules(skill.skillbook))
        assignment = rules.assignment
        width = buckets_for(share)
        if assignment == "independent":
            if sum(c.assignment == "independent" for c in running) >= MAX_INDEPENDENT:
                raise Conflict(
                    f"skillbook {skill.skillbook!r} already runs {MAX_INDEPENDENT} independent "
                    "canaries: end one first"
                )
            low: int | None = 0
        else:
            disjoint = [c for c in running if c.assignment == "disjoint"]
            taken = sum(c.share for c in disjoint)
            if sum(c.bucket_hi - c.bucket_lo for c in disjoint) + width >= BUCKETS:
                raise Conflict(
                    f"no room for a {share:g}% disjoint canary: it would leave no control "
                    f"arm (running canaries take {taken:g}% of sessions, and together they "
                    "must stay under 100%); use a smaller share or end one"
                )
            low = _free_range(disjoint, width)
            if low is None:
                raise Conflict(
                    f"no room for a {share:g}% disjoint canary: running canaries take "
                    f"{taken:g}% of sessions, and each session may be in one only; use a "
                    "smaller share, end one, or set the assignment to independent"
                )
        assert low is not None
        now = time.time()
        self._db.execute(
            "INSERT INTO canaries (skill_id, skillbook, share, assignment, bucket_lo, bucket_hi, "
            "prior_status, started_at, started_by, alpha, min_sessions) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [skill.id, skill.skillbook, share, assignment, low, low + width, skill.status, now,
             actor, rules.alpha, rules.min_sessions],
        )  # fmt: skip
        detail = {
            "share": share, "assignment": assignment, "buckets": [low, low + width],
            "alpha": rules.alpha, "min_sessions": rules.min_sessions,
        }  # fmt: skip
        self._event(skill, f"canary start {share:g}%", actor, note, detail)
        self._skillbooks.bump_version(skill.skillbook)

    def stop(self, skill_id: str, *, actor: str, note: str | None = None) -> Canary:
        with write_transaction(self._db):
            self._skills.snapshot(skill_id)  # NotFound for an unknown skill
            canary = self._running_for(skill_id)
            if canary is None:
                raise InvalidTransition(f"skill {skill_id} is not a canary now")
            self.end_in_tx(canary, "stopped", actor, note or f"stopped by {actor}")
        return self.get(canary.seq)

    def decide(
        self,
        seq: int,
        action: str,
        verdict: str,
        *,
        actor: str,
        detail: dict[str, Any],
    ) -> bool:
        """Act on a verdict: `promote`, `withdraw`, or `notify` (record it, once per verdict);
        False when there was nothing to do (ended meanwhile, or this verdict already told)."""
        with write_transaction(self._db):
            canary = self.get(seq)
            if canary.status != "running":
                return False
            skill = self._skills.snapshot(canary.skill_id)
            note = f"canary verdict: {verdict}"
            if action == "notify":
                if canary.verdict == verdict:
                    return False
                self._db.execute("UPDATE canaries SET verdict = ? WHERE seq = ?", [verdict, seq])
                self._event(skill, f"canary verdict {verdict}", actor, note, detail)
                return True
            status = {"promote": "promoted", "withdraw": "withdrawn"}[action]
            self.end_in_tx(canary, status, actor, note, verdict=verdict)
            skill = self._skills.snapshot(canary.skill_id)
            if action == "promote" and skill.status == "pending":
                self._skills.transition_in_tx(
                    skill, "approve", actor, note, detail=detail, canary_rules=False
                )
            elif action == "withdraw" and skill.status in ("pending", "active"):
                self._skills.transition_in_tx(
                    skill, "archive", actor, note, detail=detail, canary_rules=False
                )
            else:
                self._event(skill, f"canary {status}", actor, note, detail)
            return True

    def on_transition(
        self, skill: Skill, action: str, actor: str, note: str | None
    ) -> tuple[bool, str | None]:
        """Inside a skill's transition: a person's approve promotes a running canary, and its
        other actions stop one; with a skillbook share set, approving a pending skill starts a
        canary instead. The answer: whether the transition is done (a canary started), and the
        note to keep with it. When no canary can start (the skillbook is frozen, or has no
        room for another) the approval goes on as a plain one, its note saying why."""
        canary = self._running_for(skill.id)
        if canary is not None:
            outcome = "promoted" if action == "approve" else "stopped"
            self.end_in_tx(canary, outcome, actor, f"{action} by {actor}")
            return False, note
        if action != "approve" or skill.status != "pending" or skill.deleted_at is not None:
            return False, note
        share = self.rules(skill.skillbook).share
        if share is None:
            return False, note
        try:
            self.start_in_tx(skill, share, actor, note)
        except (Conflict, InvalidTransition) as exc:  # refused before it wrote anything
            why = f"approved without a canary: {exc}"
            return False, why if note is None else f"{note} ({why})"
        return True, note

    def end_in_tx(
        self,
        canary: Canary,
        status: str,
        actor: str,
        reason: str,
        *,
        verdict: str | None = None,
    ) -> None:
        self._db.execute(
            "UPDATE canaries SET status = ?, ended_at = ?, ended_by = ?, end_reason = ?, "
            "verdict = coalesce(?, verdict) WHERE seq = ?",
            [status, time.time(), actor, reason[:500], verdict, canary.seq],
        )
        self._skillbooks.bump_version(canary.skillbook)

    def _running_for(self, skill_id: str) -> Canary | None:
        row = self._db.execute(
            f"{_SELECT} WHERE skill_id = ? AND status = 'running'", [skill_id]
        ).fetchone()
        return None if row is None else Canary(*row)

    def _event(
        self,
        skill: Skill,
        action: str,
        actor: str,
        note: str | None,
        detail: dict[str, Any] | None,
    ) -> None:
        """A history line that changes nothing of the skill but its revision."""
        now = time.time()
        self._db.execute(
            "UPDATE skills SET revision = revision + 1, updated_at = ? WHERE id = ?",
            [now, skill.id],
        )
        after = self._skills.snapshot(skill.id)
        self._skills.record_event(
            skill.id, after.revision, action, actor, skill, after, now, note, detail=detail
        )


def _free_range(taken: list[Canary], width: int) -> int | None:
    """The lowest bucket where `width` buckets are free of every range in `taken`."""
    low = 0
    for canary in sorted(taken, key=lambda c: c.bucket_lo):
        if canary.bucket_lo - low >= width:
            return low
        low = max(low, canary.bucket_hi)
    return low if BUCKETS - low >= width else None
