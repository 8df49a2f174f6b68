"""Adding the skillbook section to a request body, and saying what was added.

The section goes after the client's own system text (the format adapter knows where that is);
the body is re-serialised only when something was added, compactly and without escaping
non-ASCII, so the forwarded JSON equals the client's except for that one message. A body whose
system text sits in a value of the wrong JSON type cannot take the section: its bytes go out as
the client sent them, and the headers and the trace say no skill was injected, so the learner
never credits or blames a skill the model did not see.

The section is kilobytes long and the same for every request of a skillbook version, so it is
not serialised with each body: the body is serialised around a short placeholder, which is then
replaced by the section's JSON prepared once (`Section.json`). JSON escapes each character on
its own, so the bytes are exactly those of serialising the section in place. With the NaN
check taken from the parse (`jsonio.parse`), the injection step went from 34k to 27k
instructions (callgrind, the bench's chat body and a 3.8 KB section).

While a canary runs in the skillbook, the section depends on the request's session: the key is
`core.sessions.assignment_key` (the `X-Session-Id` header, a session the body's metadata names,
else the conversation's first user message with the client's key fingerprint; none: the
control arm), computed only then. The trace's injected ids say which arm's section went out.
"""

from __future__ import annotations

import os
from typing import Any

from multidict import CIMultiDictProxy

from core import jsonio
from core.formats import WireFormat
from core.sessions import assignment_key
from proxy.render import Section
from proxy.skillbook_cache import SkillbookCache
from proxy.tracing import TraceRecord

OPT_OUT_HEADER = "X-Skillproxy-Inject"
VERSION_HEADER = "X-Skillbook-Version"
"""Answered with the version injected; sent by a client, it pins that version."""
OFF_VALUES = frozenset({"off", "0", "false", "no"})
PLACEHOLDER = f"\x00skillproxy-section-{os.urandom(8).hex()}\x00"
"""Stands in for the section while a body is serialised. It never leaves the process, and JSON
writes NUL as an escape, so no client body can hold its serialised form."""
_PLACEHOLDER_JSON = jsonio.dumps(PLACEHOLDER)[1:-1]


def opted_out(headers: CIMultiDictProxy[str]) -> bool:
    value = headers.get(OPT_OUT_HEADER)
    return value is not None and value.strip().lower() in OFF_VALUES


def pinned_version(headers: CIMultiDictProxy[str]) -> int | None:
    """The version a request pins, None when it pins none; ValueError for a bad value."""
    value = headers.get(VERSION_HEADER)
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 12:
        raise ValueError(f"{VERSION_HEADER} must be a skillbook version number, got {value!r}")
    return int(text)


def inject(
    cache: SkillbookCache,
    fmt: WireFormat,
    payload: dict[str, Any],
    record: TraceRecord,
    response_headers: dict[str, str],
    *,
    stdlib: bool = False,
    pinned: int | None = None,
) -> bytes | None:
    """The new body to forward, or None to forward the client's bytes untouched; `stdlib` as
    `jsonio.parse` said of the body; `pinned` the skillbook version the client asked for
    (`UnknownVersion` when this process no longer holds it)."""
    section, version = cache.section_for(
        record.skillbook,
        record.model,
        lambda: fmt.latest_user_text(payload),
        pinned,
        lambda: assignment_key(record.session_id, payload, record.key_fingerprint),
    )
    record.skillbook_version = version
    response_headers[VERSION_HEADER] = str(version or 0)
    body = with_section(fmt, payload, section, stdlib=stdlib) if section.text else None
    if body is None:
        response_headers["X-Skills-Injected"] = "0"
        response_headers["X-Skill-Tokens"] = "0"
        return None
    response_headers["X-Skills-Injected"] = str(len(section.skill_ids))
    response_headers["X-Skill-Tokens"] = str(section.tokens)
    record.injected_skill_ids = section.skill_ids
    record.skill_tokens = section.tokens
    return body


def with_section(
    fmt: WireFormat, payload: dict[str, Any], section: Section, *, stdlib: bool = False
) -> bytes | None:
    """The body `payload` with `section` added, serialised; None if it cannot carry one."""
    injected = fmt.inject(payload, PLACEHOLDER)
    if injected is None:
        return None
    return jsonio.dumps(injected, stdlib=stdlib).replace(_PLACEHOLDER_JSON, section.json, 1)
