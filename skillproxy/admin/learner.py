"""Admin handlers for the learner: its runs with their spend, and a run started on demand."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from learner.service import learn_once
from skillproxy.admin.guard import AdminError
from skillproxy.admin.requests import NAME_PATTERN, Query, query_of, state_of
from store.records import as_json


class RunsQuery(Query):
    skillbook: str | None = None
    limit: int = Field(default=20, ge=1, le=500)


class SpendQuery(Query):
    skillbook: str | None = Field(default=None, pattern=NAME_PATTERN)
    days: int = Field(default=30, ge=1, le=3660)


class RunQuery(Query):
    skillbook: str | None = Field(default=None, description="only this one; all when absent")


class RunSummaries(BaseModel):
    data: list[dict[str, Any]]


async def list_runs(request: web.Request) -> web.Response:
    asked = query_of(request, RunsQuery)
    runs = await state_of(request).store.run(
        lambda store: store.learner.list_runs(skillbook=asked.skillbook or None, limit=asked.limit)
    )
    return web.json_response({"data": as_json(runs)})


async def spend_by_day(request: web.Request) -> web.Response:
    """The learner's spend per UTC day, for the review page's chart."""
    asked = query_of(request, SpendQuery)
    since = time.time() - asked.days * 86400
    rows = await state_of(request).store.run(
        lambda store: store.learner.spend_by_day(skillbook=asked.skillbook, since=since)
    )
    return web.json_response({"data": as_json(rows)})


async def run_now(request: web.Request) -> web.Response:
    """Run the learner once (all skillbooks, or `?skillbook=`) and answer with the summaries."""
    config = state_of(request).config
    skillbook = query_of(request, RunQuery).skillbook or None
    if not config.learner.model:
        raise AdminError(
            409, "no learner model configured (learner.model)", "learner_not_configured"
        )
    summaries = await asyncio.to_thread(learn_once, config, skillbook=skillbook)
    return web.json_response({"data": [s.as_dict() for s in summaries]})
