"""Admin handlers for skillbooks and skills: thin wrappers over the store's repositories.

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
from store.records import Skillbook, as_json
from store.rules import SETTINGS

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


async def _changed(state: ProxyState, result: object, status: int = 200) -> web.Response:
    await state.skillbooks.refresh()
    return web.json_response(as_json(result), status=status)


async def list_skillbooks(request: web.Request) -> web.Response:
    books = await state_of(request).store.run(lambda store: store.skillbooks.list_all())
    return web.json_response({"data": as_json(books)})


async def get_skillbook(request: web.Request) -> web.Response:
    name = skillbook_name(request)
    book = await state_of(request).store.run(lambda store: store.skillbooks.get(name))
    return web.json_response(as_json(book))


async def get_settings(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    book = await state.store.run(lambda store: store.skillbooks.get(name))
    return web.json_response(_settings_view(state, book))


async def update_settings(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    body = Settings.model_validate(await read_json(request))
    changes = body.model_dump(exclude_unset=True)
    book = await state.store.run(lambda store: store.skillbooks.update_settings(name, changes))
    await state.skillbooks.refresh()
    return web.json_response(_settings_view(state, book))


def _settings_view(state: ProxyState, book: Skillbook) -> dict[str, Any]:
    own = as_json(book.settings)
    defaults = state.config.skillbook
    effective = {
        key: own[key] if own[key] is not None else getattr(defaults, key) for key in SETTINGS
    }
    return {"skillbook": book.name, "version": book.version, **own, "effective": effective}


async def list_skills(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    query = request.query
    status, section, text = query.get("status"), query.get("section"), query.get("q")
    found = await state.store.run(
        lambda store: store.skills.find(
            name, status=status or None, section=section or None, text=text or None
        )
    )
    return web.json_response({"data": as_json(found)})


async def create_skill(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    body = NewSkill.model_validate(await read_json(request))
    who, evidence = actor(request), [(e.trace_id, e.reason) for e in body.evidence]
    created = await state.store.run(
        lambda store: store.skills.create(
            name, body.section, body.content, actor=who, evidence=evidence
        )
    )
    return await _changed(state, created, status=201)


async def get_skill(request: web.Request) -> web.Response:
    skill_id = request.match_info["skill_id"]
    found = await state_of(request).store.run(lambda store: store.skills.get(skill_id))
    return web.json_response(as_json(found))


async def edit_skill(request: web.Request) -> web.Response:
    state = state_of(request)
    body = SkillEdit.model_validate(await read_json(request))
    skill_id, who = request.match_info["skill_id"], actor(request)
    edited = await state.store.run(
        lambda store: store.skills.edit(
            skill_id, actor=who, content=body.content, section=body.section
        )
    )
    return await _changed(state, edited)


async def change_status(request: web.Request) -> web.Response:
    state = state_of(request)
    skill_id, action, who = (
        request.match_info["skill_id"],
        request.match_info["action"],
        actor(request),
    )
    changed = await state.store.run(
        lambda store: store.skills.transition(skill_id, action, actor=who)
    )
    return await _changed(state, changed)


async def rollback_skill(request: web.Request) -> web.Response:
    state = state_of(request)
    body = Rollback.model_validate(await read_json(request))
    skill_id, who = request.match_info["skill_id"], actor(request)
    rolled = await state.store.run(
        lambda store: store.skills.rollback(skill_id, body.revision, actor=who)
    )
    return await _changed(state, rolled)


async def compiled_prompt(request: web.Request) -> web.Response:
    """The section exactly as the proxy would inject it now, rendered from the store."""
    state, name = state_of(request), skillbook_name(request)
    encoding = encoding_name_for_model(request.query.get("model"))
    defaults = state.config.skillbook
    prepared = await state.store.run(lambda store: prepare(store, name, defaults, [encoding]))
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
