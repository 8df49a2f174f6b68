"""One helper for the write transactions every repository needs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlite_utils


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """`BEGIN IMMEDIATE` takes the write lock up front, so read-then-write logic cannot race
    another process; everything inside commits together or not at all.

    Nested use joins the outer transaction: the learner applies a whole reflection (tags,
    proposals, the episode's new status, the run's usage) as one unit by wrapping the same
    repository functions a person's single edit uses.
    """
    conn = db.conn
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
