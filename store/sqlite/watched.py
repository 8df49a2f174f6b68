"""A SQLite store whose file is watched, for a process that must not write into a lost file.

SQLite keeps writing to a database file deleted or replaced under an open connection, where
nobody can read it again. The trace sink asks `trouble()` before and after each frame and, on a
change, `ready()` sets the old file's journal aside (a new file must not read it), opens a fresh
database at the same path and migrates it; `reopened` counts these.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

from store.interfaces import Store
from store.sqlite import FileIdentity, SQLiteStore, file_identity
from store.url import parse_store_url

log = logging.getLogger("skillproxy.traces")

_JOURNAL = ("-wal", "-shm")


class StoreFile:
    """The sink's store and the file it has open, reopened when the path names another file.

    A connection keeps its file (and journal) open, so while it is open no other file can take
    its inode number: the path's (device, inode) differing from the one recorded at opening
    means the file was deleted or replaced."""

    def __init__(self, url: str) -> None:
        self.url = url
        path = parse_store_url(url).path
        self.path = None if path == ":memory:" else path
        self.reopened = 0
        self.noticed = False
        self.store: SQLiteStore | None = None
        self._journal: dict[str, FileIdentity | None] = {}
        self._open()

    def _open(self) -> None:
        self.store = SQLiteStore(parse_store_url(self.url).path)
        if self.path is not None:
            self._journal = {s: file_identity(self.path + s) for s in _JOURNAL}

    def trouble(self) -> str | None:
        """Why the open file is no longer the store's, or None while it is."""
        how = None if self.store is None else self.store.moved()
        if how is None:
            return None
        return "was deleted" if how == "deleted" else "was replaced by another file"

    def ready(self) -> Store:
        """The store to write to: the open one, or a fresh one if its file went away."""
        if self.store is None:
            self._reopen()
        elif (why := self.trouble()) is not None:
            log.error(
                "the trace store %s %s while the proxy was running; traces written to it "
                "since are kept by writing them again to a fresh database at that path",
                self.path,
                why,
            )
            self._reopen()
        assert self.store is not None
        return self.store

    def _reopen(self) -> None:
        old, self.store = self.store, None
        if old is not None:
            with contextlib.suppress(Exception):  # closing a connection to a deleted file
                old.close()
            self._set_aside_journal()
        self._open()
        assert self.store is not None
        applied = self.store.migrate()
        self.reopened += 1
        self.noticed = False
        log.error(
            "opened a fresh trace store at %s (migrations: %s)",
            self.path,
            ", ".join(applied) or "none needed",
        )

    def _set_aside_journal(self) -> None:
        """The old file's WAL and shared-memory index, still at the path while another
        connection (the proxy's own) holds them, would be read as the new file's: rename them."""
        assert self.path is not None
        for suffix in _JOURNAL:
            name = self.path + suffix
            recorded = self._journal.get(suffix)
            if recorded is not None and file_identity(name) == recorded:
                aside = f"{name}.orphaned-{time.time_ns()}"
                try:
                    os.rename(name, aside)
                except OSError as exc:
                    log.error("could not move %s aside: %s", name, exc)
                else:
                    log.error("moved the old store's %s aside to %s", name, aside)

    def take_reopened(self) -> int:
        count, self.reopened = self.reopened, 0
        return count

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
