"""The trace row's columns in the order the trace sink builds them, for every engine.

The sink builds rows as tuples (no dict per trace on the hot path's side), so the order is
part of the store's interface.
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
