"""A running count of the sessions one canary is judged on, brought up to date by reading only
what is new since the last look.

The canary watch looks after every few feedback, and re-reading every trace since a canary
started each time kept the store's one thread busy for seconds at a few hundred thousand
traces (bench/canary_watch_cost.py). A `Tally` keeps, per session, its start, turns, tokens,
whether it carried the skill, which other disjoint canaries it carried, and its feedback by
seq; each look reads traces past a rowid cursor and feedback past a seq cursor (both only
grow: SQLite hands out rowids and AUTOINCREMENT seqs in commit order, one writer at a time)
with `+` on the other terms so SQLite walks the table from the cursor rather than a
skillbook's whole past through `traces_skillbook_created`.

What can become countable later is kept aside and read again at every look: a trace with
neither a session nor an episode yet (the learner groups it later), and a feedback that
matched no counted session yet (its trace was not grouped, or not written, yet). A tally
built while its canary ran is rebuilt once when the canary has ended, to leave out what came
after its end. The tally lives in the store's process memory: a restarted proxy pays one full
read on its first look.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from store.feedback_labels import label_score
from store.records import Canary, CanarySession

_PRIOR = """
  AND NOT (t.session_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM traces AS p WHERE p.session_id = t.session_id
        AND +p.skillbook = :book AND +p.created_at < :since))
  AND NOT (t.session_id IS NULL AND t.episode_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM traces AS p WHERE p.episode_id = t.episode_id
        AND +p.skillbook = :book AND +p.created_at < :since))
"""
# The unary `+` keeps SQLite from reading a skillbook's whole past for each trace through
# `traces_skillbook_created`: the session's (or episode's) own few traces are found through
# `traces_session` (`traces_episode`) instead.
_WINDOW = f"""
FROM traces AS t
WHERE {{where}} AND +t.skillbook = :book AND +t.created_at >= :since AND +t.created_at < :until
  AND t.skillbook_version IS NOT NULL {_PRIOR}
"""
_UNITS = f"""
SELECT coalesce('s:' || t.session_id, 'e:' || t.episode_id), min(t.created_at), count(*),
       sum(coalesce(t.input_tokens, 0) + coalesce(t.output_tokens, 0)),
       max(instr(coalesce(t.injected_skill_ids, ''), :carried) > 0){{others}}
{_WINDOW} AND (t.session_id IS NOT NULL OR t.episode_id IS NOT NULL)
GROUP BY 1
"""
# Per session in SQL: a skill is carried when its id, quoted as in the JSON array of
# `injected_skill_ids`, is in it (ids are plain words: nothing in them is escaped).
_UNGROUPED = f"SELECT t.rowid {_WINDOW} AND t.session_id IS NULL AND t.episode_id IS NULL"
_NEW = "t.rowid > :after AND t.rowid <= :top"
_PENDING = "t.rowid IN (SELECT value FROM json_each(:pending))"
_FEEDBACK = """
SELECT f.seq, f.score, f.label, coalesce('s:' || t.session_id, 'e:' || t.episode_id)
FROM feedback AS f JOIN traces AS t ON t.id = f.trace_id
WHERE {where} AND +f.skillbook = :book AND +f.created_at >= :since
UNION ALL
SELECT f.seq, f.score, f.label, 's:' || f.session_id FROM feedback AS f
WHERE {where} AND +f.skillbook = :book AND +f.created_at >= :since AND f.session_id IS NOT NULL
UNION ALL
SELECT f.seq, f.score, f.label, 'e:' || e.id FROM feedback AS f
JOIN episodes AS e ON e.skillbook = f.skillbook AND e.session_key = f.session_id
WHERE {where} AND +f.skillbook = :book AND +f.created_at >= :since
"""
_NEW_FEEDBACK = _FEEDBACK.format(where="f.seq > :after AND f.seq <= :top")
_PENDING_FEEDBACK = _FEEDBACK.format(where="f.seq IN (SELECT value FROM json_each(:pending))")


@dataclass(slots=True)
class Unit:
    """One session so far."""

    started: float
    turns: int = 0
    tokens: int = 0
    carried: bool = False
    others: frozenset[str] = frozenset()
    """Skill ids of other disjoint canaries its traces carried."""
    scores: dict[int, float] | None = None
    """Its feedback: seq -> score (None before any: most sessions get none, and a look keeps
    every session of a canary in memory)."""


@dataclass(slots=True)
class Tally:
    skill_id: str
    skillbook: str
    since: float
    until: float
    ended: bool
    """Built for an ended canary: complete, only feedback can still come."""
    trace_after: int = 0
    feedback_after: int = 0
    pending_traces: set[int] = field(default_factory=set)
    pending_feedback: set[int] = field(default_factory=set)
    units: dict[str, Unit] = field(default_factory=dict)
    views: dict[str, CanarySession | None] = field(default_factory=dict)
    """Each session as the comparison reads it (None: in neither arm), kept between looks."""
    dirty: set[str] = field(default_factory=set)
    """Sessions changed since their view was made."""

    def sessions(self, disjoint: list[Canary]) -> list[CanarySession]:
        """The sessions in either arm, in the order first seen; `disjoint` the other disjoint
        canaries that ran beside this one: a session in one's treatment is in neither arm.
        Only sessions changed since the last look are made again (whether one is in another's
        treatment depends on its start and that canary's start, neither of which moves)."""
        for key in self.dirty:
            unit = self.units[key]
            if any(
                o.skill_id in unit.others
                and o.started_at <= unit.started < (o.ended_at or float("inf"))
                for o in disjoint
            ):
                self.views[key] = None
                continue
            rated = sorted(unit.scores.items()) if unit.scores else []
            mean = sum(v for _, v in rated) / len(rated) if rated else None
            self.views[key] = CanarySession(
                key, "treatment" if unit.carried else "control", unit.started, unit.turns,
                unit.tokens, len(rated), mean, rated[0][0] if rated else None,
            )  # fmt: skip
        self.dirty.clear()
        return [view for view in self.views.values() if view is not None]

    def update(self, db: sqlite_utils.Database, others: set[str]) -> None:
        """Read what is new since the last look; `others` the skills of the disjoint canaries
        running beside this one (a session carrying one of them is noted)."""
        ordered = sorted(others)
        params: dict[str, Any] = {
            "book": self.skillbook, "since": self.since, "until": self.until,
            "carried": json.dumps(self.skill_id),
            **{f"o{i}": json.dumps(skill) for i, skill in enumerate(ordered)},
        }  # fmt: skip
        columns = "".join(
            f", max(instr(coalesce(t.injected_skill_ids, ''), :o{i}) > 0)"
            for i in range(len(ordered))
        )
        top = int(db.execute("SELECT coalesce(max(rowid), 0) FROM traces").fetchone()[0])
        if self.pending_traces:  # grouped since: counted now; the rest wait on
            pending = {**params, "pending": json.dumps(sorted(self.pending_traces))}
            self._units(db.execute(_UNITS.format(where=_PENDING, others=columns), pending), ordered)
            still = db.execute(_UNGROUPED.format(where=_PENDING), pending)
            self.pending_traces = {int(row[0]) for row in still}
        if top > self.trace_after:
            window = {**params, "after": self.trace_after, "top": top}
            self._units(db.execute(_UNITS.format(where=_NEW, others=columns), window), ordered)
            ungrouped = db.execute(_UNGROUPED.format(where=_NEW), window)
            self.pending_traces |= {int(row[0]) for row in ungrouped}
            self.trace_after = top
        top = int(db.execute("SELECT coalesce(max(seq), 0) FROM feedback").fetchone()[0])
        rows: list[Any] = []
        if self.pending_feedback:
            pending = {**params, "pending": json.dumps(sorted(self.pending_feedback))}
            rows += db.execute(_PENDING_FEEDBACK, pending).fetchall()
        if top > self.feedback_after:
            window = {**params, "after": self.feedback_after, "top": top}
            rows += db.execute(_NEW_FEEDBACK, window).fetchall()
            self.feedback_after = top
        self._feedback(rows)

    def _units(self, rows: Any, others: list[str]) -> None:
        for key, started, turns, tokens, carried, *carried_others in rows:
            unit = self.units.get(key)
            if unit is None:
                unit = self.units[key] = Unit(started)
                self.views[key] = None
            self.dirty.add(key)
            unit.started = min(unit.started, started)
            unit.turns += int(turns)
            unit.tokens += int(tokens or 0)
            unit.carried |= bool(carried)
            if any(carried_others):
                unit.others = unit.others.union(
                    skill for skill, on in zip(others, carried_others, strict=True) if on
                )

    def _feedback(self, rows: list[Any]) -> None:
        matched: set[int] = set()
        seen: set[int] = set()
        for fseq, score, label, key in rows:
            seen.add(int(fseq))
            value = score if score is not None else label_score(label) if label else None
            if value is None:
                matched.add(int(fseq))  # says nothing: never looked at again
                continue
            unit = self.units.get(key) if key is not None else None
            if unit is not None:
                if unit.scores is None:
                    unit.scores = {}
                unit.scores[int(fseq)] = float(value)
                self.dirty.add(key)
                matched.add(int(fseq))
        self.pending_feedback = (self.pending_feedback | seen) - matched
