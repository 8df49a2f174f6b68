"""Admin handlers for skillbooks: listing, settings and freezing, copy, soft delete, history,
the section exactly as injected, and the rules its canaries follow.

Every write runs on the database thread, then refreshes this process's skillbook cache at once
(other processes sharing the database see the new version on their next poll).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from core.tokens import encoding_name_for_model
from proxy.skillbook_cache import prepare
from proxy.state import ProxyState
from skillproxy.admin.guard import read_json
from skillproxy.admin.requests import (
    Body,
    Query,
    actor,
    changed,
    checked_name,
    query_of,
    skillbook_name,
    state_of,
)
from store.canary_rules import effective
from store.interfaces import Store
from store.records import CanaryRules, ImportSummary, Skillbook, as_json
from store.rules import SETTINGS


class Settings(Body):
    token_budget: int | None = Field(default=None, ge=0, le=10_000_000)
    ranking: Literal["usefulness", "relevance"] | None = None
    auto_approve: bool | None = None
    max_active: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="past this many active skills, retiring one is proposed",
    )
    frozen: bool | None = Field(
        default=None,
        description="true keeps the injected set and bytes as they are now until false; "
        "left out, it stays as it is",
    )


class SettingsView(BaseModel):
    skillbook: str
    version: int
    token_budget: int | None
    ranking: str | None
    auto_approve: bool | None
    max_active: int | None
    frozen: bool
    frozen_version: int | None
    effective: dict[str, Any]


class CopyTo(Body):
    to: str = Field(min_length=1, description="the new skillbook's name; it must not exist")


class Copied(BaseModel):
    skillbook: Skillbook
    summary: ImportSummary


class ListSkillbooks(Query):
    deleted: bool = Field(default=False, description="list the deleted skillbooks instead")


class DaysQuery(Query):
    days: int = Field(default=30, ge=1, le=3660)


class PromptQuery(Query):
    model: str | None = None
    query: str = Field(default="", description="the latest user text, for relevance ranking")


class Prompt(BaseModel):
    skillbook: str
    version: int
    frozen: bool
    encoding: str
    ranking: str
    token_budget: int
    tokens: int
    skill_ids: list[str]
    text: str


async def list_skillbooks(request: web.Request) -> web.Response:
    deleted = query_of(request, ListSkillbooks).deleted
    books = await state_of(request).store.run(lambda s: s.skillbooks.list_all(deleted=deleted))
    return web.json_response({"data": as_json(books)})


async def get_skillbook(request: web.Request) -> web.Response:
    name = skillbook_name(request)
    book = await state_of(request).store.run(lambda s: s.skillbooks.get(name))
    return web.json_response(as_json(book))


async def delete_skillbook(request: web.Request) -> web.Response:
    state, name, who = state_of(request), skillbook_name(request), actor(request)
    book = await state.store.run(lambda s: s.skillbooks.delete(name, actor=who))
    return await changed(state, book)


async def restore_skillbook(request: web.Request) -> web.Response:
    state, name, who = state_of(request), skillbook_name(request), actor(request)
    book = await state.store.run(lambda s: s.skillbooks.restore(name, actor=who))
    return await changed(state, book)


async def copy_skillbook(request: web.Request) -> web.Response:
    state, name, who = state_of(request), skillbook_name(request), actor(request)
    target = checked_name(CopyTo.model_validate(await read_json(request)).to, "to")

    def copy(store: Store) -> Copied:
        summary = store.transfer.copy(name, target, actor=who)
        return Copied(skillbook=store.skillbooks.get(target), summary=summary)

    copied = await state.store.run(copy)
    await state.skillbooks.refresh()
    return web.json_response(copied.model_dump(mode="json"), status=201)


async def skillbook_history(request: web.Request) -> web.Response:
    name = skillbook_name(request)
    events = await state_of(request).store.run(lambda s: s.skillbooks.history(name))
    return web.json_response({"data": as_json(events)})


async def skills_by_day(request: web.Request) -> web.Response:
    """Skills proposed, approved and retired per UTC day, for the review page's chart."""
    name = skillbook_name(request)
    since = time.time() - query_of(request, DaysQuery).days * 86400
    rows = await state_of(request).store.run(lambda s: s.skills.by_day(name, since=since))
    return web.json_response({"data": as_json(rows)})


async def get_settings(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    book = await state.store.run(lambda s: s.skillbooks.get(name))
    return web.json_response(_settings_view(state, book))


async def update_settings(request: web.Request) -> web.Response:
    state, name, who = state_of(request), skillbook_name(request), actor(request)
    body = Settings.model_validate(await read_json(request))
    changes = body.model_dump(exclude_unset=True)
    frozen = changes.pop("frozen", None)  # null or left out: as it is
    defaults = state.config.skillbook

    def update(store: Store) -> Skillbook:
        book = None
        if changes or frozen is None:  # creates the skillbook if it is new, as it always has
            book = store.skillbooks.update_settings(name, changes, actor=who)
        if frozen is True:
            book = store.skillbooks.freeze(
                name,
                actor=who,
                default_budget=defaults.token_budget,
                default_ranking=defaults.ranking,
                active=lambda: store.skills.active(name),
            )
        elif frozen is False:
            book = store.skillbooks.unfreeze(name, actor=who)
        assert book is not None  # one of the branches above ran
        return book

    book = await state.store.run(update)
    await state.skillbooks.refresh()
    return web.json_response(_settings_view(state, book))


def _settings_view(state: ProxyState, book: Skillbook) -> dict[str, Any]:
    own = as_json(book.settings)
    defaults = state.config.skillbook
    effective = {
        key: own[key] if own[key] is not None else getattr(defaults, key, None) for key in SETTINGS
    }
    view = SettingsView(
        skillbook=book.name,
        version=book.version,
        **own,
        frozen=book.frozen_version is not None,
        frozen_version=book.frozen_version,
        effective=effective,
    )
    return view.model_dump(mode="json")


async def compiled_prompt(request: web.Request) -> web.Response:
    """The section exactly as the proxy would inject it now, rendered from the store."""
    state, name = state_of(request), skillbook_name(request)
    asked = query_of(request, PromptQuery)
    encoding = encoding_name_for_model(asked.model)
    defaults = state.config.skillbook
    prepared = await state.store.run(lambda store: prepare(store, name, defaults, [encoding]))
    section = prepared.section(encoding, lambda: asked.query)
    prompt = Prompt(
        skillbook=name,
        version=prepared.version,
        frozen=prepared.frozen,
        encoding=encoding,
        ranking=prepared.ranking,
        token_budget=prepared.budget,
        tokens=section.tokens,
        skill_ids=list(section.skill_ids),
        text=section.text,
    )
    return web.json_response(prompt.model_dump(mode="json"))


class CanaryRulesPatch(Body):
    """A skillbook's canary rules; null returns one to its default."""

    share: float | None = Field(
        default=None,
        gt=0,
        lt=100,
        allow_inf_nan=False,
        description="set: every approval of a pending skill starts a canary at this percent",
    )
    assignment: Literal["disjoint", "independent"] | None = None
    min_sessions: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="rated sessions the canary arm needs before an automatic promotion",
    )
    on_win: Literal["promote", "notify"] | None = None
    on_loss: Literal["withdraw", "notify"] | None = None
    alpha: float | None = Field(default=None, gt=0, le=0.2, allow_inf_nan=False)


class CanaryRulesView(BaseModel):
    skillbook: str
    rules: CanaryRules
    effective: CanaryRules


async def get_canary_rules(request: web.Request) -> web.Response:
    name = skillbook_name(request)
    rules = await state_of(request).store.run(lambda s: s.canaries.rules(name))
    return web.json_response(_rules_view(name, rules))


async def update_canary_rules(request: web.Request) -> web.Response:
    state, name, who = state_of(request), skillbook_name(request), actor(request)
    changes = CanaryRulesPatch.model_validate(await read_json(request)).model_dump(
        exclude_unset=True
    )
    rules = await state.store.run(lambda s: s.canaries.update_rules(name, changes, actor=who))
    return web.json_response(_rules_view(name, rules))


def _rules_view(name: str, rules: CanaryRules) -> dict[str, Any]:
    view = CanaryRulesView(skillbook=name, rules=rules, effective=effective(rules))
    return view.model_dump(mode="json")
