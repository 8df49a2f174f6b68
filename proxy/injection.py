"""Adding the skillbook section to a request body, and saying what was added.

The section goes after the client's own system text (the format adapter knows where that is);
the body is re-serialised only when something was added, compactly and without escaping
non-ASCII, so the forwarded JSON equals the client's except for that one message.
"""

from __future__ import annotations

from typing import Any

from multidict import CIMultiDictProxy

from proxy import jsonio
from proxy.formats import WireFormat
from proxy.skillbook_cache import SkillbookCache
from proxy.tracing import TraceRecord

OPT_OUT_HEADER = "X-Skillproxy-Inject"
OFF_VALUES = frozenset({"off", "0", "false", "no"})


def opted_out(headers: CIMultiDictProxy[str]) -> bool:
    value = headers.get(OPT_OUT_HEADER)
    return value is not None and value.strip().lower() in OFF_VALUES


def inject(
    cache: SkillbookCache,
    fmt: WireFormat,
    payload: dict[str, Any],
    raw: bytes,
    record: TraceRecord,
    response_headers: dict[str, str],
) -> bytes | None:
    """The new body to forward, or None to forward the client's bytes untouched."""
    section, version = cache.section_for(
        record.skillbook, record.model, lambda: fmt.latest_user_text(payload)
    )
    record.skillbook_version = version
    response_headers["X-Skillbook-Version"] = str(version or 0)
    response_headers["X-Skills-Injected"] = str(len(section.skill_ids))
    response_headers["X-Skill-Tokens"] = str(section.tokens)
    if not section.text:
        return None
    record.injected_skill_ids = section.skill_ids
    record.skill_tokens = section.tokens
    return jsonio.dumps(fmt.inject(payload, section.text), like=raw)
