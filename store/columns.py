"""The trace row's columns in the order the trace sink builds them, for every engine.

The sink builds rows as tuples (no dict per trace on the hot path's side), so the order is
part of the store's interface. `TRACE_COLUMNS` is what `proxy.tracing.row_values` builds from
a record; `PRICED_COLUMNS` adds what the sink derives from that row afterwards (the cost, from
its model and token counts). The store takes rows of either: one without a cost stores NULL.
"""

from __future__ import annotations

TRACE_COLUMNS = (
    "id",
    "created_at",
    "skillbook",
    "format",
    "method",
    "path",
    "model",
    "stream",
    "status",
    "latency_ms",
    "ttfb_ms",
    "input_tokens",
    "output_tokens",
    "key_fingerprint",
    "error",
    "client_disconnected",
    "session_id",
    "episode_id",
    "skillbook_version",
    "injected_skill_ids",
    "skill_tokens",
    "request_json",
    "response_json",
)

DERIVED_COLUMNS = ("cost_usd",)
"""Filled by the sink from a built row: `cost_usd` from `model`, `input_tokens` and
`output_tokens` (`core.prices`), NULL when the price or a count is unknown."""
PRICED_COLUMNS = (*TRACE_COLUMNS, *DERIVED_COLUMNS)
