"""The `traces` table: one row per exchange that went through the proxy.

The proxy hands over finished rows; this module only inserts and reads them, so the schema and
its SQL live in one place. Bodies are stored as JSON text exactly as received.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from store.skillbooks import ENSURE_SKILLBOOK as _ENSURE_SKILLBOOK
from store.transaction import write_transaction

TRACE_COLUMNS = (
    "id",
    "created_at",
    "skillbook",
    "format",
    "method",
    "path",
    "model",
    "stream",
    "status",
    "latency_ms",
    "ttfb_ms",
    "input_tokens",
    "output_tokens",
    "key_fingerprint",
    "error",
    "client_disconnected",
    "session_id",
    "episode_id",
    "skillbook_version",
    "injected_skill_ids",
    "skill_tokens",
    "request_json",
    "response_json",
)
_SKILLBOOK = TRACE_COLUMNS.index("skillbook")
SUMMARY_COLUMNS = tuple(c for c in TRACE_COLUMNS if c not in ("request_json", "response_json"))

# OR IGNORE: a batch is retried whole when the sink fails part-way (or dies after committing but
# before saying so), and the rows already stored must not fail the retry. Ids are unique by
# construction (time, a per-process random tag, a counter), so nothing else is ever ignored.
_INSERT = (
    f"INSERT OR IGNORE INTO traces ({', '.join(TRACE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in TRACE_COLUMNS)})"
)


def insert_traces(db: sqlite_utils.Database, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` in one transaction (registering new skillbook names); all or none."""
    insert_trace_values(db, [tuple(map(row.get, TRACE_COLUMNS)) for row in rows])


def insert_trace_values(db: sqlite_utils.Database, values: Sequence[tuple[Any, ...]]) -> None:
    """`insert_traces` for rows already in `TRACE_COLUMNS` order (the trace sink's)."""
    with write_transaction(db):
        db.conn.executemany(_INSERT, values)
        now = time.time()
        names = {row[_SKILLBOOK] for row in values}
        db.conn.executemany(_ENSURE_SKILLBOOK, [(name, now) for name in names])


def get_trace(db: sqlite_utils.Database, trace_id: str) -> dict[str, Any] | None:
    cursor = db.conn.execute(
        f"SELECT {', '.join(TRACE_COLUMNS)} FROM traces WHERE id = ?", (trace_id,)
    )
    row = cursor.fetchone()
    return _decode(dict(zip(TRACE_COLUMNS, row, strict=True))) if row else None


def list_traces(
    db: sqlite_utils.Database,
    *,
    skillbook: str | None = None,
    limit: int = 50,
    before: float | None = None,
) -> list[dict[str, Any]]:
    """Newest first, without bodies; page with `before` = the last row's `created_at`."""
    where: list[str] = []
    params: list[Any] = []
    if skillbook is not None:
        where.append("skillbook = ?")
        params.append(skillbook)
    if before is not None:
        where.append("created_at < ?")
        params.append(before)
    sql = f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM traces"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC LIMIT ?"
    rows = db.conn.execute(sql, (*params, limit)).fetchall()
    return [_decode(dict(zip(SUMMARY_COLUMNS, row, strict=True))) for row in rows]


def count_traces(db: sqlite_utils.Database) -> int:
    return int(db.conn.execute("SELECT count(*) FROM traces").fetchone()[0])


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
