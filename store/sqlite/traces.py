"""The `traces` table: one row per exchange that went through the proxy.

The proxy hands over finished rows; this module only inserts and reads them, so the schema and
its SQL live in one place. Bodies are stored as JSON text exactly as received.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from store.columns import PRICED_COLUMNS, TRACE_COLUMNS
from store.errors import StoreUnavailable
from store.records import (
    ActivityBucket,
    DailyTraffic,
    ImportedConversation,
    ImportedTrace,
    Trace,
    TraceSummary,
    TrafficSpend,
)
from store.sqlite.skillbooks import ENSURE_SKILLBOOK
from store.sqlite.transaction import write_transaction

_SKILLBOOK = TRACE_COLUMNS.index("skillbook")
_STATUS, _ERROR, _TTFB = (TRACE_COLUMNS.index(c) for c in ("status", "error", "ttfb_ms"))
SUMMARY_COLUMNS = tuple(c for c in PRICED_COLUMNS if c not in ("request_json", "response_json"))
COST_DECIMALS = 10
"""Sums are rounded here, below a millionth of a cent, so float noise never shows."""


def _insert(columns: Sequence[str]) -> str:
    # OR IGNORE: a batch is retried whole when the sink fails part-way (or dies after committing
    # but before saying so), and the rows already stored must not fail the retry. Ids are unique
    # by construction (time, a per-process random tag, a counter), so nothing else is ignored.
    names, marks = ", ".join(columns), ", ".join("?" for _ in columns)
    return f"INSERT OR IGNORE INTO traces ({names}) VALUES ({marks})"


_INSERTS = {len(columns): _insert(columns) for columns in (TRACE_COLUMNS, PRICED_COLUMNS)}
"""By row length: the sink's rows carry their cost (`PRICED_COLUMNS`); a row as
`proxy.tracing.row_values` builds it (`TRACE_COLUMNS`) stores it as NULL."""


_DETAIL_COLUMNS = (*PRICED_COLUMNS, "source")

IMPORT_TURN_SPACING_S = 1e-4
"""Between the turns of one imported conversation: (created_at, id) order is turn order."""
_IMPORT_COLUMNS = (
    "id", "created_at", "skillbook", "format", "method", "path", "model", "status",
    "input_tokens", "output_tokens", "session_id", "request_json", "response_json", "source",
    "source_id", "cost_usd",
)  # fmt: skip
_INSERT_IMPORTED = (
    f"INSERT INTO traces ({', '.join(_IMPORT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _IMPORT_COLUMNS)})"
)
_INSERT_IMPORT = (
    "INSERT INTO trace_imports (skillbook, source_id, source, session_id, trace_count, "
    "imported_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_FEEDBACK = (
    "INSERT INTO feedback (trace_id, session_id, skillbook, score, label, comment, created_at) "
    "VALUES (NULL, ?, ?, ?, ?, NULL, ?)"
)


_ROW_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError)
"""SQLite's refusals of a row's values (a constraint, a value too big or of no SQL type); a
value Python cannot bind raises its own error (UnicodeEncodeError, OverflowError). Every other
`sqlite3.Error` is the store's (locked, full, damaged, its schema missing)."""


class SQLiteTraces:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def insert_values(self, values: Sequence[tuple[Any, ...]]) -> None:
        """All or none. A failure of the store itself is a `StoreUnavailable`; any other
        exception is a row it cannot take, which the caller may store without that value."""
        try:
            with write_transaction(self._db):
                if values:
                    self._db.conn.executemany(_statement(values[0]), values)
                now = time.time()
                names = {row[_SKILLBOOK] for row in values if not _refused_here(row)}
                self._db.conn.executemany(ENSURE_SKILLBOOK, [(name, now) for name in names])
        except _ROW_ERRORS:
            raise
        except sqlite3.ProgrammingError as exc:
            if "closed" in str(exc):  # a connection closed under us is the store's trouble
                raise StoreUnavailable(f"the trace store cannot be written: {exc}") from exc
            raise  # a value of no supported type
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the trace store cannot be written: {exc}") from exc

    def import_conversations(
        self,
        skillbook: str,
        conversations: Sequence[ImportedConversation],
        *,
        settle_s: float,
    ) -> list[bool]:
        """Store each conversation not imported into `skillbook` before, with its feedback;
        True for each stored, False for each already there. One transaction for the batch.

        Times: grouping reads traces in (created_at, id) order, up to the clock less
        `settle_s`, and never goes back past its cursor. An imported conversation is old,
        but a trace written behind the cursor, or behind where a grouping pass already in
        flight reads to, would never join an episode: so its turns start at this commit's
        time less `settle_s` (grouped on the next pass; ready once `episode_idle_s` has
        passed, like any conversation), or just past the cursor if that is later, and follow
        each other `IMPORT_TURN_SPACING_S` apart. Trace ids are derived from the skillbook,
        the source id and the turn, so a retried batch cannot write one twice."""
        stored: list[bool] = []
        with write_transaction(self._db):
            conn = self._db.conn
            cursor = conn.execute("SELECT created_at FROM grouping_cursor WHERE id = 1").fetchone()
            now = time.time()
            start = now - settle_s
            if cursor is not None:
                start = max(start, cursor[0] + IMPORT_TURN_SPACING_S)
            conn.execute(ENSURE_SKILLBOOK, (skillbook, now))
            for conversation in conversations:
                stored.append(self._import_one(skillbook, conversation, start, now))
        return stored

    def _import_one(
        self, skillbook: str, conversation: ImportedConversation, start: float, now: float
    ) -> bool:
        conn, c = self._db.conn, conversation
        seen = conn.execute(
            "SELECT 1 FROM trace_imports WHERE skillbook = ? AND source_id = ?",
            (skillbook, c.source_id),
        )
        if seen.fetchone() is not None:
            return False
        rows = [
            (
                imported_trace_id(skillbook, c.source_id, n), start + n * IMPORT_TURN_SPACING_S,
                skillbook, t.format, "POST", t.path, t.model, 200, t.input_tokens,
                t.output_tokens, c.session_id, t.request_json, t.response_json, c.source,
                c.source_id, t.cost_usd,
            )
            for n, t in enumerate(c.turns)
        ]  # fmt: skip
        conn.executemany(_INSERT_IMPORTED, rows)
        conn.execute(
            _INSERT_IMPORT, (skillbook, c.source_id, c.source, c.session_id, len(rows), now)
        )
        if c.score is not None or c.label is not None:
            conn.execute(_INSERT_FEEDBACK, (c.session_id, skillbook, c.score, c.label, now))
        return True

    def imported(self, skillbook: str, *, limit: int = 1000) -> list[ImportedTrace]:
        """The skillbook's imported traces, oldest first."""
        rows = self._db.conn.execute(
            "SELECT id, source, source_id, session_id, created_at FROM traces "
            "WHERE skillbook = ? AND source IS NOT NULL ORDER BY created_at, id LIMIT ?",
            (skillbook, limit),
        )
        return [ImportedTrace(*row) for row in rows]

    def get(self, trace_id: str) -> Trace | None:
        cursor = self._db.conn.execute(
            f"SELECT {', '.join(_DETAIL_COLUMNS)} FROM traces WHERE id = ?", (trace_id,)
        )
        row = cursor.fetchone()
        return decode_trace(_DETAIL_COLUMNS, row) if row else None

    def newest(
        self,
        *,
        skillbook: str | None = None,
        limit: int = 50,
        before: float | None = None,
        after: float | None = None,
        outcome: str | None = None,
        model: str | None = None,
        session_id: str | None = None,
    ) -> list[TraceSummary]:
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("skillbook = ?", skillbook), ("created_at < ?", before), ("created_at >= ?", after),
            ("model = ?", model), ("session_id = ?", session_id),
        ):  # fmt: skip
            if value is not None:
                where.append(clause)
                params.append(value)
        if outcome == "error":
            where.append("(status >= 400 OR error IS NOT NULL)")
        elif outcome == "ok":
            where.append("status < 400 AND error IS NULL")
        sql = f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM traces"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        rows = self._db.conn.execute(sql, (*params, limit)).fetchall()
        return [decode_summary(row) for row in rows]

    def count(self) -> int:
        return int(self._db.conn.execute("SELECT count(*) FROM traces").fetchone()[0])

    def activity(
        self, *, skillbook: str | None, since: float, bucket_s: int
    ) -> list[ActivityBucket]:
        """Requests, errors and known cost per `bucket_s` seconds since `since`, oldest first;
        buckets with no traffic are left out."""
        clause, params = ("AND skillbook = ?", [skillbook]) if skillbook else ("", [])
        rows = self._db.conn.execute(
            "SELECT CAST(created_at / ? AS INTEGER) * ? AS start, count(*), "
            "sum(status >= 400 OR error IS NOT NULL), total(cost_usd) FROM traces "
            f"WHERE created_at >= ? {clause} GROUP BY start ORDER BY start",
            [bucket_s, bucket_s, since, *params],
        ).fetchall()
        return [
            ActivityBucket(float(start), int(n), int(errors or 0), _usd(cost))
            for start, n, errors, cost in rows
        ]

    def spend(self, skillbook: str, *, since: float) -> TrafficSpend:
        """The skillbook's traffic per UTC day since `since` (days without any left out), with
        what its priced traces cost, and the totals of those days."""
        rows = self._db.conn.execute(
            "SELECT date(created_at, 'unixepoch') AS day, count(*), count(cost_usd), "
            "total(input_tokens), total(output_tokens), total(cost_usd) FROM traces "
            "WHERE skillbook = ? AND created_at >= ? GROUP BY day ORDER BY day",
            [skillbook, since],
        ).fetchall()
        days = [
            DailyTraffic(str(day), int(n), int(priced), int(tin), int(tout), _usd(cost))
            for day, n, priced, tin, tout, cost in rows
        ]
        return TrafficSpend(
            skillbook=skillbook,
            since=since,
            requests=sum(d.requests for d in days),
            priced=sum(d.priced for d in days),
            cost_usd=_usd(sum(d.cost_usd for d in days)),
            days=days,
        )

    def exists(self, trace_id: str) -> bool:
        found = self._db.conn.execute("SELECT 1 FROM traces WHERE id = ?", (trace_id,))
        return found.fetchone() is not None

    def session_exists(self, session_id: str) -> bool:
        conn = self._db.conn
        found = conn.execute("SELECT 1 FROM traces WHERE session_id = ? LIMIT 1", (session_id,))
        if found.fetchone() is not None:
            return True
        found = conn.execute("SELECT 1 FROM episodes WHERE session_key = ? LIMIT 1", (session_id,))
        return found.fetchone() is not None

    def skillbook_of(self, trace_id: str) -> str | None:
        found = self._db.conn.execute("SELECT skillbook FROM traces WHERE id = ?", (trace_id,))
        row = found.fetchone()
        return str(row[0]) if row else None

    def session_skillbooks(self, session_id: str) -> list[str]:
        rows = self._db.conn.execute(
            "SELECT skillbook FROM traces WHERE session_id = ?1 "
            "UNION SELECT skillbook FROM episodes WHERE session_key = ?1 ORDER BY 1",
            (session_id,),
        )
        return [str(row[0]) for row in rows]


def imported_trace_id(skillbook: str, source_id: str, turn: int) -> str:
    """`tr_imp_` (never a proxied id: those are hex after `tr_`), a hash of the line's
    skillbook and source id, and the turn."""
    digest = hashlib.sha256(f"{skillbook}\0{source_id}".encode()).hexdigest()[:20]
    return f"tr_imp_{digest}_{turn:04d}"


def _statement(row: Sequence[Any]) -> str:
    """The insert for rows as long as `row`; one of another length is a row the store cannot
    take (a `sqlite3.ProgrammingError`, like any value of no supported type)."""
    statement = _INSERTS.get(len(row))
    if statement is None:
        raise sqlite3.ProgrammingError(f"a trace row of {len(row)} values, not one of {_LENGTHS}")
    return statement


_LENGTHS = sorted(_INSERTS)


def _usd(value: Any) -> float:
    return round(float(value or 0.0), COST_DECIMALS)


def _refused_here(row: Sequence[Any]) -> bool:
    """The proxy itself answered 4xx before any provider byte (a bad body, path, header or
    key): the trace is kept, but the skillbook it names is not created by it."""
    status = row[_STATUS]
    return (
        row[_ERROR] is not None and row[_TTFB] is None and isinstance(status, int)
        and 400 <= status < 500
    )  # fmt: skip


def decode_summary(row: Sequence[Any]) -> TraceSummary:
    """A row read in `SUMMARY_COLUMNS` order, as a record."""
    return TraceSummary(**_decode(dict(zip(SUMMARY_COLUMNS, row, strict=True))))


def decode_trace(columns: Sequence[str], row: Sequence[Any]) -> Trace:
    """A full `traces` row, read in `columns` order, as a record."""
    return Trace(**_decode(dict(zip(columns, row, strict=True))))


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("request_json", "response_json", "injected_skill_ids"):
        text = row.get(key)
        if isinstance(text, str):
            # a non-JSON body stays text: still worth showing as it was
            with contextlib.suppress(ValueError):
                row[key] = json.loads(text)
    row["stream"] = bool(row["stream"])
    row["client_disconnected"] = bool(row["client_disconnected"])
    return row
