"""Admin handlers for the learner's episodes: list them, show one whole (traces, feedback,
reflections with every field, refused lessons), and re-queue failed ones."""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from skillproxy.admin.guard import AdminError, read_json
from skillproxy.admin.requests import Body, Query, query_of, state_of
from store.records import as_json

EpisodeStatus = Literal["open", "reflected", "failed", "skipped"]


class EpisodesQuery(Query):
    skillbook: str | None = None
    status: EpisodeStatus | None = None
    limit: int = Field(default=50, ge=1, le=500)
    before: float | None = Field(
        default=None, description="the `next_before` of the previous page: older episodes only"
    )


class RetryQuery(Query):
    skillbook: str = Field(description="re-queue every failed episode of this skillbook")


class Retried(BaseModel):
    retried: list[str]


class RetryIds(Body):
    ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default=[], max_length=1000
    )


class RefusedQuery(Query):
    limit: int = Field(default=100, ge=1, le=500)


async def list_episodes(request: web.Request) -> web.Response:
    asked = query_of(request, EpisodesQuery)
    rows = await state_of(request).store.run(
        lambda store: store.learner.list_episodes(
            skillbook=asked.skillbook, status=asked.status, limit=asked.limit, before=asked.before
        )
    )
    next_before = rows[-1].last_at if len(rows) == asked.limit else None
    return web.json_response({"data": as_json(rows), "next_before": next_before})


async def get_episode(request: web.Request) -> web.Response:
    episode_id = request.match_info["episode_id"]
    found = await state_of(request).store.run(
        lambda store: store.learner.episode_detail(episode_id)
    )
    return web.json_response(as_json(found))


async def get_reflection(request: web.Request) -> web.Response:
    """The reflection a skill's evidence names (`evidence[].reflection`)."""
    try:
        seq = int(request.match_info["seq"])
    except ValueError:
        raise AdminError(400, "seq: a reflection number", "invalid_path") from None
    found = await state_of(request).store.run(lambda store: store.learner.reflection(seq))
    return web.json_response(as_json(found))


async def retry_episode(request: web.Request) -> web.Response:
    episode_id = request.match_info["episode_id"]
    done = await state_of(request).store.run(
        lambda store: store.learner.retry_episodes(episode_ids=[episode_id])
    )
    return web.json_response({"retried": done})


async def retry_failed(request: web.Request) -> web.Response:
    """Re-queue the ids given, or with none given, every failed episode of `?skillbook=`."""
    body = RetryIds.model_validate(await read_json(request) or {})
    state = state_of(request)
    if body.ids:
        ids = body.ids
        done = await state.store.run(lambda store: store.learner.retry_episodes(episode_ids=ids))
    else:
        skillbook = query_of(request, RetryQuery).skillbook
        done = await state.store.run(
            lambda store: store.learner.retry_episodes(skillbook=skillbook)
        )
    return web.json_response({"retried": done})


async def refused_lessons(request: web.Request) -> web.Response:
    """Lessons the skill rules refused, with the rule each broke, newest first."""
    name = request.match_info["skillbook"]
    limit = query_of(request, RefusedQuery).limit
    rows = await state_of(request).store.run(
        lambda store: store.learner.refused(skillbook=name, limit=limit)
    )
    return web.json_response({"data": as_json(rows)})
