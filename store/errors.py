"""Errors the store raises for requests it refuses; the admin API maps each to a status.

StoreError
 ├── NotFound            404  no such skill, skillbook, trace or revision
 ├── InvalidTransition   409  e.g. approving an archived skill
 │    └── BulkRefused    409  a bulk change refused whole, with each refused id's reason
 ├── Conflict            409  e.g. importing a skill id that belongs to another skillbook
 ├── InvalidContent      422  skill text or settings that break the rules
 └── StoreUnavailable    503  the store cannot serve now (locked, gone, disk full): try later
      ├── StoreCorrupt    503  the database is damaged; a person must restore or move it
      └── StoreMoved      503  its file was deleted or replaced: only a restart opens it
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class: the request was understood and refused."""


class NotFound(StoreError):
    pass


class InvalidTransition(StoreError):
    pass


class BulkRefused(InvalidTransition):
    """Nothing of a bulk change was applied because these ids could not be: id -> reason."""

    def __init__(self, message: str, refused: dict[str, str]) -> None:
        super().__init__(message)
        self.refused = refused


class Conflict(StoreError):
    pass


class InvalidContent(StoreError):
    pass


class StoreUnavailable(StoreError):
    """The request was fine; the store is not. `retry_after_s` is a hint for the client."""

    def __init__(self, message: str, *, retry_after_s: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreCorrupt(StoreUnavailable):
    """The database itself is damaged (or is not a database): retrying will not help until a
    person restores it or moves it aside. The message names the file and says so, in one line,
    so `skillproxy serve` and `skillproxy learn` can print it as it is."""

    def __init__(self, message: str, *, retry_after_s: float = 60.0) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class StoreMoved(StoreUnavailable):
    """The store's file was deleted or replaced while open; retrying cannot help until the
    process opens whatever is at the path now."""
