"""The only code that knows SQL: repositories per area, typed records, one URL to open them.

    open_store(url)        a `Store` (interfaces.py) for `sqlite:///path` or a bare path
    StoreWorker(url)       the same, on a thread of its own, for code on an event loop
    records                what goes in and comes out (frozen dataclasses)
    errors                 what a refused request raises (the admin API maps each to a status)
    rules                  the checks every engine applies alike

An engine lives in a package of its own (`store/sqlite/`); nothing above `store/` imports it.
"""

from __future__ import annotations

from store.columns import TRACE_COLUMNS
from store.interfaces import Store, WatchedStore
from store.url import StoreURL, StoreURLError, parse_store_url

__all__ = [
    "TRACE_COLUMNS", "Store", "StoreURL", "StoreURLError", "WatchedStore", "open_store",
    "open_watched", "parse_store_url",
]  # fmt: skip


def open_store(url: str | StoreURL) -> Store:
    """Open the store `url` names (creating a SQLite file and its folder if needed)."""
    location = url if isinstance(url, StoreURL) else parse_store_url(url)
    from store.sqlite import SQLiteStore  # the engine, loaded only when asked for

    return SQLiteStore(location.path)


def open_watched(url: str) -> WatchedStore:
    """`open_store`, for a process that writes on its own: a file deleted or replaced under it
    is noticed and a fresh one opened at the same path (see `store/sqlite/watched.py`)."""
    parse_store_url(url)  # refuse what open_store would
    from store.sqlite.watched import StoreFile

    return StoreFile(url)
