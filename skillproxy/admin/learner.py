"""Admin handlers for the learner: its runs with their spend, and a run started on demand."""

from __future__ import annotations

import asyncio

from aiohttp import web

from learner.service import learn_once
from skillproxy.admin.guard import AdminError
from skillproxy.admin.skills import state_of
from store.records import as_json


async def list_runs(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        raise AdminError(400, "limit must be an integer", "invalid_query") from None
    skillbook = request.query.get("skillbook") or None
    runs = await state_of(request).store.run(
        lambda store: store.learner.list_runs(skillbook=skillbook, limit=limit)
    )
    return web.json_response({"data": as_json(runs)})


async def run_now(request: web.Request) -> web.Response:
    """Run the learner once (all skillbooks, or `?skillbook=`) and answer with the summaries."""
    config = state_of(request).config
    if not config.learner.model:
        raise AdminError(
            409, "no learner model configured (learner.model)", "learner_not_configured"
        )
    summaries = await asyncio.to_thread(
        learn_once, config, skillbook=request.query.get("skillbook") or None
    )
    return web.json_response({"data": [s.as_dict() for s in summaries]})
