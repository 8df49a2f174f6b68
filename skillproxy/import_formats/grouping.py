"""Holding the conversations of a file whose lines each carry only part of one.

A Claude Code session, a Langfuse trace or an OTLP trace is spread over many lines, in any
order, so a conversation is complete only when the file is. `Groups` holds what the lines
gave, by conversation, until `drain()` at the end, and keeps memory bounded while it does: at
most `MAX_OPEN_GROUPS` conversations and `MAX_HELD_BYTES` held at once. A line that would go
past either is refused, by number and with the reason (split the file), and the lines before
and after it are read as usual. A format that fills `Groups` is a `GroupedFormat`: the admin
import feeds it every line, then stores what `finish()` yields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from skillproxy.import_formats.turns import LineError, unexpected
from store.records import ImportedConversation

MAX_OPEN_GROUPS = 10_000
"""Conversations held open at once; a file of more is imported in parts."""
MAX_HELD_BYTES = 256 * 1024 * 1024
"""What the held lines may take in all (measured as the bytes of the lines that gave them)."""

T = TypeVar("T")
Finished = tuple[int, ImportedConversation | LineError]
"""A conversation, or why it is refused, with the line it began at (where a report puts it)."""


class GroupedFormat(Protocol):
    """A format whose conversations span lines: `feed` each line (raising `LineError` to
    report it; what it kept of the line stays kept), then `finish` once for the
    conversations."""

    def feed(self, number: int, raw: bytes) -> None: ...

    def finish(self) -> Iterator[Finished]: ...

    def held(self) -> int:
        """Conversations read and not yet finished: the import's progress while it reads."""
        ...


@dataclass
class Group(Generic[T]):
    """One conversation's parts so far, and the line that opened it."""

    key: str
    first_line: int
    items: list[T] = field(default_factory=list)


class Groups(Generic[T]):
    """Parts by conversation key, within the caps; see the module docstring."""

    def __init__(self, max_groups: int | None = None, max_bytes: int | None = None) -> None:
        self._max_groups = MAX_OPEN_GROUPS if max_groups is None else max_groups
        self._max_bytes = MAX_HELD_BYTES if max_bytes is None else max_bytes
        self._groups: dict[str, Group[T]] = {}
        self._held = 0

    def check(self, keys: set[str], size: int) -> None:
        """Refuse a line that would open `keys` and hold `size` more bytes past a cap."""
        new = len(keys - self._groups.keys())
        if new and len(self._groups) + new > self._max_groups:
            raise LineError(
                f"it would open conversation {len(self._groups) + new} while at most "
                f"{self._max_groups} are held at once; split the file (by session or trace)"
            )
        if self._held + size > self._max_bytes:
            raise LineError(
                f"the conversations held would pass {self._max_bytes} bytes; split the file "
                "(by session or trace)"
            )

    def __len__(self) -> int:
        return len(self._groups)

    def add(self, number: int, key: str, item: T, size: int) -> None:
        """Hold `item` for `key`; call `check` first for the line's keys and size."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(key, number)
        group.items.append(item)
        self._held += size

    def drain(self) -> Iterator[Group[T]]:
        """Every group, in the order each was opened, each let go once yielded."""
        while self._groups:
            key = next(iter(self._groups))
            yield self._groups.pop(key)
        self._held = 0


def refused(first_line: int, what: str, error: LineError) -> Finished:
    """A conversation refused at the end, reported at the line it began at."""
    return first_line, LineError(f"{what}: {error}")


def finished(
    group: Group[T], what: str, build: Callable[[Group[T]], ImportedConversation]
) -> Finished:
    """The conversation `build` makes of `group`, or why not, reported at its first line;
    an unexpected error (a bug) fails that conversation alone (`turns.unexpected`)."""
    try:
        return group.first_line, build(group)
    except LineError as exc:
        return refused(group.first_line, what, exc)
    except Exception:
        return refused(group.first_line, what, unexpected(what))
