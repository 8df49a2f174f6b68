"""Admin handlers for traces: newest first, paged by time, one with its bodies."""

from __future__ import annotations

from aiohttp import web

from skillproxy.admin.guard import AdminError
from skillproxy.admin.skills import state_of
from store.records import as_json

MAX_PAGE = 500


async def list_traces(request: web.Request) -> web.Response:
    query = request.query
    try:
        limit = int(query.get("limit", "50"))
        before = float(query["before"]) if query.get("before") else None
    except ValueError:
        raise AdminError(
            400, "limit must be an integer and before a number", "invalid_query"
        ) from None
    if not 1 <= limit <= MAX_PAGE:
        raise AdminError(400, f"limit must be between 1 and {MAX_PAGE}", "invalid_query")
    skillbook = query.get("skillbook") or None
    rows = await state_of(request).store.run(
        lambda store: store.traces.newest(skillbook=skillbook, limit=limit, before=before)
    )
    next_before = rows[-1].created_at if len(rows) == limit else None
    return web.json_response({"data": as_json(rows), "next_before": next_before})


async def get_trace(request: web.Request) -> web.Response:
    trace_id = request.match_info["trace_id"]
    row = await state_of(request).store.run(lambda store: store.traces.get(trace_id))
    if row is None:
        raise AdminError(404, f"no trace with id {trace_id!r}", "not_found")
    return web.json_response(as_json(row))
