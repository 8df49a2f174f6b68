"""Where the store lives, as a URL: `sqlite:///relative.db`, `sqlite:////abs/path.db`, or a path.

A bare path (no `scheme://`) is still accepted and means SQLite, as it always has. Anything
else is refused with a message naming the setting, because a value such as
`postgresql://host/db` used to be taken for a file path and silently created a directory
called `postgresql:`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENGINES = ("sqlite",)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class StoreURLError(ValueError):
    """The value names no store this build can open."""


@dataclass(frozen=True, slots=True)
class StoreURL:
    engine: str
    path: str
    """For SQLite: the database file, or `:memory:`."""

    def __str__(self) -> str:
        return f"{self.engine}:///{self.path}"


def parse_store_url(value: str, *, setting: str = "store.url") -> StoreURL:
    """`setting` names the value in messages; "" leaves it to the caller (the config does)."""
    where = f"{setting}: " if setting else ""
    text = value.strip()
    if not text:
        raise StoreURLError(f"{where}empty: give a file path or sqlite:///path")
    scheme = _SCHEME.match(text)
    if scheme is None or _is_windows_drive(text):
        return StoreURL("sqlite", text)
    name, shown = scheme.group(1).lower(), hide_password(text)
    if name != "sqlite":
        raise StoreURLError(
            f"{where}{name!r} stores are not supported by this build "
            f"(got {shown!r}); use a file path or sqlite:///path"
        )
    rest = text[scheme.end() :]
    if not rest.startswith("//"):
        raise StoreURLError(f"{where}write SQLite URLs as sqlite:///path, got {shown!r}")
    host, _, path = rest[2:].partition("/")
    if host:
        raise StoreURLError(
            f"{where}a SQLite URL has no host (sqlite:///relative.db or "
            f"sqlite:////absolute/path.db), got {shown!r}"
        )
    if not path or "?" in path:
        raise StoreURLError(f"{where}no database file in {shown!r}")
    return StoreURL("sqlite", path)


def _is_windows_drive(text: str) -> bool:
    return len(text) > 2 and text[1] == ":" and text[2] in "\\/"


_SECRET_PARAM = re.compile(r"([?&](?:password|passwd|pwd|pass|secret|token|key)=)[^&#]*", re.I)


def hide_password(text: str) -> str:
    """`user:secret@host` -> `user:***@host` (a raw `@` or `/` in the password included), and
    `?password=...` likewise, so an error message never repeats a password."""
    scheme, sep, rest = text.partition("//")
    if sep and "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:***@{host}" if colon else rest
    return _SECRET_PARAM.sub(r"\1***", scheme + sep + rest)
