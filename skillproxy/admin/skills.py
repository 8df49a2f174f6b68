"""Admin handlers for skillbooks and skills: thin wrappers over `store.skills`/`skillbooks`.

Every write runs on the database thread, then refreshes this process's skillbook cache at once
(other processes sharing the database see the new version on their next poll).
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.tokens import encoding_name_for_model
from proxy.routing import SKILLBOOK_NAME
from proxy.skillbook_cache import prepare
from proxy.state import STATE, ProxyState
from skillproxy.admin.guard import AdminError, read_json
from store import skillbooks, skills

ACTOR_HEADER = "X-Admin-Actor"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvidenceIn(_Body):
    trace_id: str = Field(min_length=1)
    reason: str = ""


class NewSkill(_Body):
    section: str
    content: str
    evidence: list[EvidenceIn] = []


class SkillEdit(_Body):
    content: str | None = None
    section: str | None = None


class Rollback(_Body):
    revision: int = Field(ge=1)


class Settings(_Body):
    token_budget: int | None = Field(default=None, ge=0)
    ranking: Literal["usefulness", "relevance"] | None = None
    auto_approve: bool | None = None


def state_of(request: web.Request) -> ProxyState:
    return request.config_dict[STATE]


def actor(request: web.Request) -> str:
    return request.headers.get(ACTOR_HEADER, "admin")[:100] or "admin"


def skillbook_name(request: web.Request) -> str:
    name = request.match_info["skillbook"]
    if not SKILLBOOK_NAME.match(name):
        raise AdminError(400, f"invalid skillbook name {name!r}", "invalid_skillbook")
    return name


async def _changed(state: ProxyState, result: dict[str, Any], status: int = 200) -> web.Response:
    await state.skillbooks.refresh()
    return web.json_response(result, status=status)


async def list_skillbooks(request: web.Request) -> web.Response:
    return web.json_response({"data": await state_of(request).db.run(skillbooks.list_all)})


async def get_skillbook(request: web.Request) -> web.Response:
    name = skillbook_name(request)
    return web.json_response(await state_of(request).db.run(skillbooks.get, name))


async def get_settings(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    book = await state.db.run(skillbooks.get, name)
    return web.json_response(_settings_view(state, book))


async def update_settings(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    body = Settings.model_validate(await read_json(request))
    book = await state.db.run(skillbooks.update_settings, name, body.model_dump(exclude_unset=True))
    await state.skillbooks.refresh()
    return web.json_response(_settings_view(state, book))


def _settings_view(state: ProxyState, book: dict[str, Any]) -> dict[str, Any]:
    own = book["settings"]
    defaults = state.config.skillbook
    effective = {
        key: own[key] if own[key] is not None else getattr(defaults, key)
        for key in skillbooks.SETTINGS
    }
    return {"skillbook": book["name"], "version": book["version"], **own, "effective": effective}


async def list_skills(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    query = request.query
    found = await state.db.run(
        skills.list_skills,
        name,
        status=query.get("status") or None,
        section=query.get("section") or None,
        text=query.get("q") or None,
    )
    return web.json_response({"data": found})


async def create_skill(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    body = NewSkill.model_validate(await read_json(request))
    created = await state.db.run(
        skills.create,
        name,
        body.section,
        body.content,
        actor=actor(request),
        evidence=[e.model_dump() for e in body.evidence],
    )
    return await _changed(state, created, status=201)


async def get_skill(request: web.Request) -> web.Response:
    found = await state_of(request).db.run(skills.get, request.match_info["skill_id"])
    return web.json_response(found)


async def edit_skill(request: web.Request) -> web.Response:
    state = state_of(request)
    body = SkillEdit.model_validate(await read_json(request))
    edited = await state.db.run(
        skills.edit,
        request.match_info["skill_id"],
        actor=actor(request),
        content=body.content,
        section=body.section,
    )
    return await _changed(state, edited)


async def change_status(request: web.Request) -> web.Response:
    state = state_of(request)
    changed = await state.db.run(
        skills.transition,
        request.match_info["skill_id"],
        request.match_info["action"],
        actor=actor(request),
    )
    return await _changed(state, changed)


async def rollback_skill(request: web.Request) -> web.Response:
    state = state_of(request)
    body = Rollback.model_validate(await read_json(request))
    rolled = await state.db.run(
        skills.rollback, request.match_info["skill_id"], body.revision, actor=actor(request)
    )
    return await _changed(state, rolled)


async def compiled_prompt(request: web.Request) -> web.Response:
    """The section exactly as the proxy would inject it now, rendered from the store."""
    state, name = state_of(request), skillbook_name(request)
    encoding = encoding_name_for_model(request.query.get("model"))
    prepared = await state.db.run(prepare, name, state.config.skillbook, [encoding])
    query = request.query.get("query", "")
    section = prepared.section(encoding, lambda: query)
    return web.json_response(
        {
            "skillbook": name,
            "version": prepared.version,
            "encoding": encoding,
            "ranking": prepared.ranking,
            "token_budget": prepared.budget,
            "tokens": section.tokens,
            "skill_ids": list(section.skill_ids),
            "text": section.text,
        }
    )
