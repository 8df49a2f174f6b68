"""Numbered schema migrations, applied in order at start and recorded in `_migrations`.

Append-only: a released migration is never edited; a schema change is a new function at the
end of `MIGRATIONS`. Each runs in its own transaction, so a crash leaves the database either
before or after it, never half-way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlite_utils

from store.sqlite.transaction import write_transaction

Migration = Callable[[sqlite_utils.Database], None]


def m001_traces(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE traces (
            id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            skillbook TEXT NOT NULL,
            format TEXT,
            method TEXT NOT NULL,
            path TEXT NOT NULL,
            model TEXT,
            stream INTEGER NOT NULL DEFAULT 0,
            status INTEGER,
            latency_ms REAL,
            ttfb_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            key_fingerprint TEXT,
            error TEXT,
            client_disconnected INTEGER NOT NULL DEFAULT 0,
            session_id TEXT,
            episode_id TEXT,
            skillbook_version INTEGER,
            injected_skill_ids TEXT,
            skill_tokens INTEGER,
            request_json TEXT,
            response_json TEXT
        )
        """
    )
    db.execute("CREATE INDEX traces_skillbook_created ON traces (skillbook, created_at)")
    db.execute("CREATE INDEX traces_created ON traces (created_at)")


def m002_skillbooks(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE skillbooks (
            name TEXT PRIMARY KEY,
            version INTEGER NOT NULL DEFAULT 1,
            token_budget INTEGER,
            ranking TEXT,
            auto_approve INTEGER,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE skills (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            skillbook TEXT NOT NULL REFERENCES skillbooks (name),
            section TEXT NOT NULL,
            content TEXT NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('pending', 'active', 'rejected', 'archived')),
            helpful INTEGER NOT NULL DEFAULT 0,
            harmful INTEGER NOT NULL DEFAULT 0,
            neutral INTEGER NOT NULL DEFAULT 0,
            revision INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX skills_skillbook_status ON skills (skillbook, status)")
    db.execute(
        """
        CREATE TABLE evidence (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            skill_id TEXT NOT NULL REFERENCES skills (id),
            trace_id TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT 'person',
            created_at REAL NOT NULL,
            UNIQUE (skill_id, trace_id, reason)
        )
        """
    )
    db.execute("CREATE INDEX evidence_trace ON evidence (trace_id)")
    db.execute(
        """
        CREATE TABLE skill_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            skill_id TEXT NOT NULL REFERENCES skills (id),
            revision INTEGER NOT NULL,
            action TEXT NOT NULL,
            actor TEXT NOT NULL,
            at REAL NOT NULL,
            before_json TEXT,
            after_json TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE UNIQUE INDEX skill_events_revision ON skill_events (skill_id, revision)")


def m003_learner(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE episodes (
            id TEXT PRIMARY KEY,
            skillbook TEXT NOT NULL,
            session_key TEXT,
            first_at REAL NOT NULL,
            last_at REAL NOT NULL,
            trace_count INTEGER NOT NULL DEFAULT 0,
            signal INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'reflected', 'failed', 'skipped')),
            reflected_at REAL,
            error TEXT
        )
        """
    )
    db.execute("CREATE INDEX episodes_ready ON episodes (skillbook, status, last_at)")
    db.execute("CREATE UNIQUE INDEX episodes_session ON episodes (skillbook, session_key)")
    # partial: most traces have no session, and none has an episode when written, so the
    # trace writer's inserts do not pay for these two indexes
    db.execute("CREATE INDEX traces_episode ON traces (episode_id) WHERE episode_id IS NOT NULL")
    db.execute("CREATE INDEX traces_session ON traces (session_id) WHERE session_id IS NOT NULL")
    db.execute(
        """
        CREATE TABLE conversation_heads (
            skillbook TEXT NOT NULL,
            hash TEXT NOT NULL,
            episode_id TEXT NOT NULL REFERENCES episodes (id),
            PRIMARY KEY (skillbook, hash)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE grouping_cursor (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            created_at REAL NOT NULL,
            trace_id TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE feedback (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            trace_id TEXT,
            session_id TEXT,
            skillbook TEXT NOT NULL,
            score REAL,
            label TEXT,
            comment TEXT,
            created_at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX feedback_trace ON feedback (trace_id)")
    db.execute("CREATE INDEX feedback_session ON feedback (session_id)")
    db.execute(
        """
        CREATE TABLE learner_runs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            skillbook TEXT NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            status TEXT NOT NULL DEFAULT 'running',
            episodes INTEGER NOT NULL DEFAULT 0,
            reflections INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            proposals INTEGER NOT NULL DEFAULT 0,
            merged INTEGER NOT NULL DEFAULT 0,
            tags INTEGER NOT NULL DEFAULT 0,
            llm_calls INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            error TEXT
        )
        """
    )
    db.execute("CREATE INDEX learner_runs_time ON learner_runs (skillbook, started_at)")
    db.execute(
        """
        CREATE TABLE reflections (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            episode_id TEXT NOT NULL REFERENCES episodes (id),
            run_seq INTEGER NOT NULL REFERENCES learner_runs (seq),
            created_at REAL NOT NULL,
            reflection_json TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE learner_leases (
            skillbook TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at REAL NOT NULL
        )
        """
    )


def m004_trust(db: sqlite_utils.Database) -> None:
    """Restore, supersede, soft delete, import remapping, freezing, and skillbook history."""
    for column in (
        "prior_status TEXT",  # what archive or delete left, for restore to return to
        "supersedes TEXT",  # the skill this one rewords
        "superseded_by TEXT",  # set when an approved rewording archived this one
        "origin TEXT",  # the id in the document an import took it from, when remapped
        "deleted_at REAL",
    ):
        db.execute(f"ALTER TABLE skills ADD COLUMN {column}")
    db.execute("CREATE INDEX skills_origin ON skills (skillbook, origin) WHERE origin IS NOT NULL")
    for column in (
        "created_by TEXT NOT NULL DEFAULT 'traffic'",
        "deleted_at REAL",
        "frozen_version INTEGER",
        "frozen_json TEXT",  # the injected set at freezing: settings and skills, as served
    ):
        db.execute(f"ALTER TABLE skillbooks ADD COLUMN {column}")
    db.execute("UPDATE skillbooks SET created_by = 'unknown'")  # made before this was recorded
    db.execute(
        """
        CREATE TABLE skillbook_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            skillbook TEXT NOT NULL,
            action TEXT NOT NULL,
            actor TEXT NOT NULL,
            at REAL NOT NULL,
            detail_json TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    db.execute("CREATE INDEX skillbook_events_name ON skillbook_events (skillbook, seq)")
    # An archived skill restores to what it was before; earlier releases did not keep that,
    # so read it from the history event that archived it.
    archived = db.execute("SELECT id FROM skills WHERE status = 'archived'").fetchall()
    for (skill_id,) in archived:
        row = db.execute(
            "SELECT json_extract(before_json, '$.status') FROM skill_events "
            "WHERE skill_id = ? AND json_extract(after_json, '$.status') = 'archived' "
            "AND json_extract(before_json, '$.status') != 'archived' ORDER BY seq DESC LIMIT 1",
            [skill_id],
        ).fetchone()
        prior = row[0] if row and row[0] in ("pending", "active", "rejected") else "pending"
        db.execute("UPDATE skills SET prior_status = ? WHERE id = ?", [prior, skill_id])


def m005_learner_care(db: sqlite_utils.Database) -> None:
    """Episodes that wait after a failure, evidence that names its reflection, refused
    proposals kept for the reviewer, retire proposals and contradiction flags, a cap."""
    db.execute("ALTER TABLE episodes ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE evidence ADD COLUMN reflection_seq INTEGER")
    db.execute("ALTER TABLE skill_events ADD COLUMN note TEXT")  # a reviewer's why
    for column in ("retire_reason TEXT", "retire_proposed_at REAL", "contradicts TEXT"):
        db.execute(f"ALTER TABLE skills ADD COLUMN {column}")
    db.execute("ALTER TABLE skillbooks ADD COLUMN max_active INTEGER")
    db.execute(
        """
        CREATE TABLE refused_proposals (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            skillbook TEXT NOT NULL,
            episode_id TEXT NOT NULL,
            reflection_seq INTEGER,
            trace_id TEXT NOT NULL,
            section TEXT NOT NULL,
            content TEXT NOT NULL,
            rule TEXT NOT NULL,
            created_at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX refused_proposals_book ON refused_proposals (skillbook, seq)")
    db.execute(
        """
        CREATE TABLE learner_marks (
            skillbook TEXT NOT NULL,
            kind TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (skillbook, kind)
        ) WITHOUT ROWID
        """
    )  # how far a periodic pass (the cross-episode one) has read
    db.execute("CREATE INDEX reflections_episode ON reflections (episode_id)")


def m006_trace_cost(db: sqlite_utils.Database) -> None:
    """What each exchange cost in USD, filled by the trace sink from the model's published
    prices. Rows written before stay NULL (unknown): pricing them needs the price table, which
    lives above the store (`core.prices`), and the store must not reach up for it."""
    db.execute("ALTER TABLE traces ADD COLUMN cost_usd REAL")


def m007_trace_imports(db: sqlite_utils.Database) -> None:
    """Conversations imported from files (`skillproxy traces import`): each trace says where
    it came from (`source`, `source_id`: NULL for proxied traffic), and `trace_imports` holds
    one row per imported line, keyed by skillbook and the line's source id, so importing it
    again adds nothing. A table rather than a unique index on `traces.source_id`: one line
    makes several traces that share its source id, so the key belongs to the line, and the
    same file may be imported into two skillbooks (an evaluation's arms)."""
    db.execute("ALTER TABLE traces ADD COLUMN source TEXT")
    db.execute("ALTER TABLE traces ADD COLUMN source_id TEXT")
    db.execute(
        """
        CREATE TABLE trace_imports (
            skillbook TEXT NOT NULL,
            source_id TEXT NOT NULL,
            source TEXT NOT NULL,
            session_id TEXT NOT NULL,
            trace_count INTEGER NOT NULL,
            imported_at REAL NOT NULL,
            PRIMARY KEY (skillbook, source_id)
        ) WITHOUT ROWID
        """
    )


def m008_canaries(db: sqlite_utils.Database) -> None:
    """Canary rollouts (issue 21): a skill injected into a share of sessions, its outcome
    compared against the rest. `canaries` holds one row per rollout, with the bucket range it
    owns ([bucket_lo, bucket_hi) of `proxy.assignment.BUCKETS`) fixed at start, so a session
    never changes arm while it runs; at most one running per skill. `canary_rules` holds a
    skillbook's rules (NULL: the default). `skill_events.detail_json` keeps the figures a
    canary decision was taken on; a report reads a skillbook's feedback since its canary
    started, by `feedback_book_created`."""
    db.execute(
        """
        CREATE TABLE canaries (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            skill_id TEXT NOT NULL REFERENCES skills (id),
            skillbook TEXT NOT NULL,
            share REAL NOT NULL,
            assignment TEXT NOT NULL CHECK (assignment IN ('disjoint', 'independent')),
            bucket_lo INTEGER NOT NULL,
            bucket_hi INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'promoted', 'withdrawn', 'stopped')),
            prior_status TEXT NOT NULL,
            started_at REAL NOT NULL,
            started_by TEXT NOT NULL,
            ended_at REAL,
            ended_by TEXT,
            end_reason TEXT,
            verdict TEXT
        )
        """
    )
    db.execute("CREATE INDEX canaries_skill ON canaries (skill_id, seq)")
    db.execute(
        "CREATE UNIQUE INDEX canaries_running ON canaries (skill_id) WHERE status = 'running'"
    )
    db.execute("CREATE INDEX canaries_book ON canaries (skillbook, status)")
    db.execute(
        """
        CREATE TABLE canary_rules (
            skillbook TEXT PRIMARY KEY,
            share REAL,
            assignment TEXT,
            min_sessions INTEGER,
            on_win TEXT,
            on_loss TEXT,
            alpha REAL,
            updated_at REAL NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute("ALTER TABLE skill_events ADD COLUMN detail_json TEXT")
    db.execute("CREATE INDEX feedback_book_created ON feedback (skillbook, created_at)")


def m009_review_indexes(db: sqlite_utils.Database) -> None:
    """Indexes for the review page's listings at a million traces (bench/data_scale.py).

    Episodes newest first, of one skillbook or of all: without an index in that order SQLite
    read and sorted every episode, working out each one's signal, to return fifty (1.7 s at
    100,000 episodes); each index ends in `id`, the order's tie-break, so none needs a sort.
    Errors only: a partial index holds just the failed traces, which are few, so the trace
    writer's inserts pay almost nothing for it; the listing's `(status >= 400 OR error IS NOT
    NULL)` term is the index's condition word for word, which is what lets SQLite use it."""
    db.execute("CREATE INDEX episodes_book_last ON episodes (skillbook, last_at, id)")
    db.execute("CREATE INDEX episodes_last ON episodes (last_at, id)")
    db.execute("CREATE INDEX episodes_status_last ON episodes (status, last_at, id)")
    db.execute("DROP INDEX episodes_ready")  # the same, ending in the order's tie-break too
    db.execute("CREATE INDEX episodes_ready ON episodes (skillbook, status, last_at, id)")
    failed = "WHERE (status >= 400 OR error IS NOT NULL)"
    db.execute(f"CREATE INDEX traces_book_errors ON traces (skillbook, created_at) {failed}")
    db.execute(f"CREATE INDEX traces_errors ON traces (created_at) {failed}")


def m010_canary_test_fixed(db: sqlite_utils.Database) -> None:
    """A canary keeps the sequential test it started with: `alpha` and `min_sessions` (which
    tunes the boundary's mixing parameter) are copied from the skillbook's rules when it
    starts, so changing the rules mid-run cannot move a running canary's boundary (its
    guarantee holds only for a boundary fixed in advance). NULL on canaries started before
    this migration: those read the live rules, as they did."""
    db.execute("ALTER TABLE canaries ADD COLUMN alpha REAL")
    db.execute("ALTER TABLE canaries ADD COLUMN min_sessions INTEGER")


MIGRATIONS: list[Migration] = [
    m001_traces, m002_skillbooks, m003_learner, m004_trust, m005_learner_care, m006_trace_cost,
    m007_trace_imports, m008_canaries, m009_review_indexes, m010_canary_test_fixed,
]  # fmt: skip


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    applied: list[str] = []
    for migration in MIGRATIONS:
        name = migration.__name__
        with write_transaction(db):
            done = db.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone()
            if done is None:
                migration(db)
                db.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", [name, time.time()]
                )
                applied.append(name)
    return applied
