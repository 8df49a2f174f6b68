"""`[privacy]` for imported traces: what an import or the OTLP receiver stores is redacted as
a proxied trace is.

The rule is the trace pipeline's own (`proxy.tracing.StoragePolicy`): with the skillbook in
`privacy.stored_skillbooks` (or `"*"` there), every string in a trace's request and response
JSON has the personal data `privacy.detect` and `privacy.patterns` find replaced
(`core.redaction.redact_json`, object keys untouched), before the store sees it. Session ids
and source ids are left as they are, as a proxied trace's session id is.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

from core.config import Config
from core.redaction import Counts, Redactor, redact_json
from proxy.tracing import StoragePolicy
from skillproxy.import_formats.turns import dumps
from store.records import ImportedConversation, ImportedTurn


def import_redactor(config: Config, skillbook: str) -> Redactor | None:
    """The redactor for what is stored into `skillbook`; None when its traces are kept as is."""
    return StoragePolicy.of(config.traces, config.privacy).redacts(skillbook)


def redacted(
    conversations: Iterable[ImportedConversation], redactor: Redactor | None
) -> list[ImportedConversation]:
    """The conversations with their bodies redacted (each unchanged where nothing matched)."""
    if redactor is None:
        return list(conversations)
    return [
        dataclasses.replace(c, turns=tuple(_turn(t, redactor) for t in c.turns))
        for c in conversations
    ]


def _turn(turn: ImportedTurn, redactor: Redactor) -> ImportedTurn:
    return dataclasses.replace(
        turn,
        request_json=_body(turn.request_json, redactor),
        response_json=_body(turn.response_json, redactor),
    )


def _body(text: str, redactor: Redactor) -> str:
    counts: Counts = {}
    value = redact_json(json.loads(text), redactor, counts)
    return dumps(value) if any(counts.values()) else text
