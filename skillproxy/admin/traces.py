"""Admin handlers for traces: newest first, paged by time, one with its bodies and feedback,
traffic over time, and what a skillbook's traffic cost."""

from __future__ import annotations

import time

from aiohttp import web

from skillproxy.admin.guard import AdminError
from skillproxy.admin.requests import query_of, skillbook_name, state_of
from skillproxy.admin.trace_queries import ActivityQuery, SpendQuery, TracesQuery
from store.interfaces import Store
from store.records import Feedback, Trace, as_json


async def list_traces(request: web.Request) -> web.Response:
    asked = query_of(request, TracesQuery)
    limit, before, skillbook = asked.limit, asked.before, asked.skillbook or None
    rows = await state_of(request).store.run(
        lambda store: store.traces.newest(
            skillbook=skillbook,
            limit=limit,
            before=before,
            after=asked.after,
            outcome=asked.outcome,
            model=asked.model,
            session_id=asked.session_id,
        )
    )
    next_before = rows[-1].created_at if len(rows) == limit else None
    return web.json_response({"data": as_json(rows), "next_before": next_before})


async def get_trace(request: web.Request) -> web.Response:
    """The trace with its bodies, and `feedback`: what clients said of it or of its session
    (within its skillbook), oldest first."""
    trace_id = request.match_info["trace_id"]

    def read(store: Store) -> tuple[Trace | None, list[Feedback]]:
        return store.traces.get(trace_id), store.feedback.for_trace(trace_id)

    row, feedback = await state_of(request).store.run(read)
    if row is None:
        raise AdminError(404, f"no trace with id {trace_id!r}", "not_found")
    return web.json_response({**as_json(row), "feedback": as_json(feedback)})


async def traffic_activity(request: web.Request) -> web.Response:
    """Requests, errors and cost over time, for the review page's chart."""
    asked = query_of(request, ActivityQuery)
    since = asked.since if asked.since is not None else time.time() - 86400
    rows = await state_of(request).store.run(
        lambda store: store.traces.activity(
            skillbook=asked.skillbook, since=since, bucket_s=asked.bucket_s
        )
    )
    return web.json_response({"data": as_json(rows)})


async def traffic_spend(request: web.Request) -> web.Response:
    """What the skillbook's proxied traffic cost per UTC day over the last `days`, and in all.
    The window starts at the first second of the oldest day, so each day listed is whole."""
    name = skillbook_name(request)
    days = query_of(request, SpendQuery).days
    since = (int(time.time()) // 86400 - days + 1) * 86400
    spend = await state_of(request).store.run(lambda s: s.traces.spend(name, since=since))
    return web.json_response(as_json(spend))
