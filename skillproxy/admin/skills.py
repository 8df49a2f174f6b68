"""Admin handlers for skills: propose, read, edit, approve and the other transitions (one at
a time or in bulk), soft delete, roll back, and the outcome figures a reviewer needs; and
canaries: approve a skill into a share of sessions, read its per-arm report, stop it.

Every write runs on the database thread, then refreshes this process's skillbook cache at once
(other processes sharing the database see the new version on their next poll).
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field

from core.canary_report import DEFAULT_EFFECT, CanaryReport, build_report
from skillproxy.admin.guard import read_json
from skillproxy.admin.requests import (
    ACTOR_HEADER,
    Body,
    Query,
    actor,
    changed,
    query_of,
    skillbook_name,
    state_of,
)
from store.errors import NotFound
from store.interfaces import Store
from store.records import as_json

__all__ = ["ACTOR_HEADER", "state_of"]  # older imports of these from here keep working

StatusName = Literal["pending", "active", "rejected", "archived"]
MAX_INT = 2**31 - 1
"""Past this a number is a mistake, and past 2**63 the store could not even hold it."""


class EvidenceIn(Body):
    trace_id: str = Field(min_length=1, max_length=200)
    reason: str = ""


class NewSkill(Body):
    section: str
    content: str
    evidence: list[EvidenceIn] = Field(default_factory=list)
    supersedes: str | None = Field(
        default=None, description="the id of a skill this one rewords: approving it archives that"
    )


class SkillEdit(Body):
    content: str | None = None
    section: str | None = None


class Rollback(Body):
    revision: int = Field(ge=1, le=MAX_INT)


class SkillIds(Body):
    ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=1000
    )
    note: str | None = Field(default=None, max_length=500, description="kept in each history")


class ActionNote(Body):
    note: str | None = Field(
        default=None, max_length=500, description="why, kept in the skill's history"
    )


class ListSkills(Query):
    status: StatusName | None = None
    section: str | None = None
    q: str | None = Field(default=None, description="text the skill's content contains")
    deleted: bool = Field(default=False, description="list the deleted skills instead")
    order: Literal["oldest", "newest"] = "oldest"
    limit: int | None = Field(default=None, ge=1, le=1000, description="a page; all if absent")
    offset: int = Field(default=0, ge=0, le=MAX_INT)


async def list_skills(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    asked = query_of(request, ListSkills)
    found = await state.store.run(
        lambda store: store.skills.find(
            name,
            status=asked.status,
            section=asked.section or None,
            text=asked.q or None,
            deleted=asked.deleted,
            newest_first=asked.order == "newest",
            limit=asked.limit,
            offset=asked.offset,
        )
    )
    return web.json_response({"data": as_json(found)})


async def create_skill(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    body = NewSkill.model_validate(await read_json(request))
    who, evidence = actor(request), [(e.trace_id, e.reason) for e in body.evidence]
    created = await state.store.run(
        lambda store: store.skills.create(
            name,
            body.section,
            body.content,
            actor=who,
            evidence=evidence,
            supersedes=body.supersedes,
        )
    )
    return await changed(state, created, status=201)


async def get_skill(request: web.Request) -> web.Response:
    skill_id = request.match_info["skill_id"]
    found = await state_of(request).store.run(lambda store: store.skills.get(skill_id))
    return web.json_response(as_json(found))


async def skill_outcomes(request: web.Request) -> web.Response:
    skill_id = request.match_info["skill_id"]
    figures = await state_of(request).store.run(lambda store: store.skills.outcomes(skill_id))
    return web.json_response(as_json(figures))


async def edit_skill(request: web.Request) -> web.Response:
    state = state_of(request)
    body = SkillEdit.model_validate(await read_json(request))
    skill_id, who = request.match_info["skill_id"], actor(request)
    edited = await state.store.run(
        lambda store: store.skills.edit(
            skill_id, actor=who, content=body.content, section=body.section
        )
    )
    return await changed(state, edited)


async def delete_skill(request: web.Request) -> web.Response:
    state, skill_id, who = state_of(request), request.match_info["skill_id"], actor(request)
    deleted = await state.store.run(lambda store: store.skills.delete(skill_id, actor=who))
    return await changed(state, deleted)


async def change_status(request: web.Request) -> web.Response:
    state = state_of(request)
    skill_id, action, who = (
        request.match_info["skill_id"],
        request.match_info["action"],
        actor(request),
    )
    note = ActionNote.model_validate(await read_json(request) or {}).note
    result = await state.store.run(
        lambda store: store.skills.transition(skill_id, action, actor=who, note=note)
    )
    return await changed(state, result)


async def bulk_change_status(request: web.Request) -> web.Response:
    """All the ids change, or none do and the 409 says why for each refused one."""
    state, name, who = state_of(request), skillbook_name(request), actor(request)
    action = request.match_info["action"]
    body = SkillIds.model_validate(await read_json(request))
    result = await state.store.run(
        lambda store: store.skills.bulk(name, body.ids, action, actor=who, note=body.note)
    )
    return await changed(state, result)


async def rollback_skill(request: web.Request) -> web.Response:
    state = state_of(request)
    body = Rollback.model_validate(await read_json(request))
    skill_id, who = request.match_info["skill_id"], actor(request)
    rolled = await state.store.run(
        lambda store: store.skills.rollback(skill_id, body.revision, actor=who)
    )
    return await changed(state, rolled)


class CanaryStart(Body):
    share: float = Field(
        gt=0, lt=100, allow_inf_nan=False, description="percent of sessions that get the skill"
    )
    note: str | None = Field(
        default=None, max_length=500, description="why, kept in the skill's history"
    )


class CanaryQuery(Query):
    effect: float = Field(
        default=DEFAULT_EFFECT,
        gt=0,
        le=1,
        description="the difference in mean score the sessions-needed estimate is for",
    )


async def start_canary(request: web.Request) -> web.Response:
    """Inject the skill into `share` percent of sessions only, chosen by session hash."""
    state, skill_id, who = state_of(request), request.match_info["skill_id"], actor(request)
    body = CanaryStart.model_validate(await read_json(request))
    started = await state.store.run(
        lambda store: store.canaries.start(skill_id, body.share, actor=who, note=body.note)
    )
    return await changed(state, started, status=201)


async def stop_canary(request: web.Request) -> web.Response:
    state, skill_id, who = state_of(request), request.match_info["skill_id"], actor(request)
    body = await read_json(request)  # none, or an object: `[]` or `0` is no note
    note = ActionNote.model_validate({} if body is None else body).note
    stopped = await state.store.run(
        lambda store: store.canaries.stop(skill_id, actor=who, note=note)
    )
    return await changed(state, stopped)


async def canary_report(request: web.Request) -> web.Response:
    """The skill's latest canary, per arm, with the sequential test's interval and verdict."""
    skill_id = request.match_info["skill_id"]
    effect = query_of(request, CanaryQuery).effect
    report = await state_of(request).store.run(lambda store: report_of(store, skill_id, effect))
    return web.json_response(as_json(report))


async def skillbook_canaries(request: web.Request) -> web.Response:
    """Every running canary of the skillbook, with its report."""
    name = skillbook_name(request)
    effect = query_of(request, CanaryQuery).effect

    def reports(store: Store) -> list[CanaryReport]:
        store.skillbooks.get(name)  # NotFound for an unknown skillbook
        return [report_of(store, c.skill_id, effect) for c in store.canaries.running(name)]

    found = await state_of(request).store.run(reports)
    return web.json_response({"data": as_json(found)})


def report_of(store: Store, skill_id: str, effect: float = DEFAULT_EFFECT) -> CanaryReport:
    store.skills.get(skill_id)  # NotFound for an unknown skill
    canary = store.canaries.latest(skill_id)
    if canary is None:
        raise NotFound(f"skill {skill_id} has never been a canary")
    canaries = store.canaries
    return build_report(
        canary,
        canaries.sessions(canary.seq),
        canaries.rules(canary.skillbook),
        canaries.beside(canary),
        effect=effect,
    )
