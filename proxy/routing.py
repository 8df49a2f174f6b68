"""Which provider, wire format and skillbook a request belongs to, from its path and headers.

Pure functions over strings, so the rules can be tested without a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from yarl import URL

from core.formats import CHAT, MESSAGES, RESPONSES, WireFormat

SKILLBOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
"""Ends in an end-of-text anchor, not `$`, which also matches before a final newline: a name
is put in headers, and a newline there would break them."""
SKILLBOOK_HEADER = "X-Skillbook"


@dataclass(frozen=True, slots=True)
class Route:
    format: WireFormat | None
    """The adapter whose body the proxy reads and may inject into; None = pass through."""
    anthropic: bool
    """Forward to the Anthropic upstream and speak Anthropic's error shape."""
    turn: bool = True
    """A conversation turn the learner reads; False for token counting, which is injected (so
    the count matches the real request) but traced as a plain pass-through."""


_PASS_OPENAI = Route(None, anthropic=False)
_PASS_ANTHROPIC = Route(None, anthropic=True)
_EXACT: dict[str, Route] = {
    "chat/completions": Route(CHAT, anthropic=False),
    "responses": Route(RESPONSES, anthropic=False),
    "messages": Route(MESSAGES, anthropic=True),
    "messages/count_tokens": Route(MESSAGES, anthropic=True, turn=False),
}


def classify(method: str, tail: str) -> Route:
    """`tail` is the path after `/v1/`. Only a POST creating a model response has a format."""
    tail = tail.rstrip("/")
    route = _EXACT.get(tail) if method == "POST" else None
    if route is not None:
        return route
    if tail == "messages" or tail.startswith("messages/") or tail == "complete":
        return _PASS_ANTHROPIC
    return _PASS_OPENAI


def choose_skillbook(path_name: str | None, header: str | None, default: str) -> str:
    """Path prefix wins over header, header over the default. Raises ValueError if invalid."""
    name = path_name or header or default
    if not _valid_name(name):
        raise ValueError(
            f"invalid skillbook name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@lru_cache(maxsize=1024)
def _valid_name(name: str) -> bool:
    return SKILLBOOK_NAME.match(name) is not None


def upstream_url(base: str, raw_tail: str) -> URL:
    """Join the configured base (with or without `/v1`) and the client's raw path (still
    percent-encoded, with its query) after `/v1/`; nothing is re-encoded or re-parsed."""
    base = base.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return URL(f"{base}/{raw_tail}", encoded=True)


def raw_tail(raw_path: str) -> str:
    """The part of a request's raw path after its `/v1/` (query string included), for
    `/v1/...` and `/sb/{skillbook}/v1/...`; ValueError for any other raw path."""
    if raw_path.startswith("/v1/"):
        return raw_path[4:]
    if raw_path.startswith("/sb/"):
        end = raw_path.find("/", 4)  # a skillbook name has no `/`: its end is the next one
        if end > 4 and raw_path.startswith("/v1/", end):
            return raw_path[end + 4 :]
    elif not raw_path.startswith("/") and (scheme := raw_path.find("://")) > 0:
        start = raw_path.find("/", scheme + 3)  # absolute-form: `POST http://host/v1/...`
        if start > 0:
            return raw_tail(raw_path[start:])
    raise ValueError(f"not a proxied path: {without_query(raw_path)[:200]!r}")


def forwarded_tail(raw_path: str) -> str:
    """`raw_tail`, refused (ValueError) when it holds a dot segment: `.` or `..`, written as
    is or percent-encoded, with `/`, `%2F`, `\\` or `%5C` around it. The provider (or a
    server in front of it) would resolve it, and the proxy would have forwarded the request
    somewhere else than the path it read. Only the path is checked, not the query."""
    tail = raw_tail(raw_path)
    if "." not in tail and "%" not in tail:  # nearly every request: no dot can hide in it
        return tail
    path = tail.partition("?")[0]
    if "%" in path:
        path = path.lower().replace("%2e", ".").replace("%2f", "/").replace("%5c", "/")
    for segment in path.replace("\\", "/").split("/"):
        if segment == "." or segment == "..":
            shown = without_query(tail)[:200]
            raise ValueError(f"the path may not contain '.' or '..' segments: {shown!r}")
    return tail


def without_query(path: str) -> str:
    """A path to quote in an error: its query may hold a key, and errors are stored and shown."""
    return path.partition("?")[0]
