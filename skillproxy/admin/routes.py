"""The admin API's one route table: it builds the router and the OpenAPI document alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from skillproxy.admin import learner, skills, traces, transfer
from skillproxy.admin.guard import Handler, guarded
from skillproxy.admin.openapi import openapi_document

ACTIONS = "approve|reject|archive|restore"


@dataclass(frozen=True)
class AdminRoute:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    """The JSON request body's model (validated by the handler, declared in the OpenAPI)."""
    response: Any = None
    """What a success answers with: a record type, a pydantic model, or `list[...]` of one
    wrapped as `{"data": [...]}` when `listed`; None for no declared body."""
    query: type[BaseModel] | None = None
    """The query parameters' model: the handler parses `request.query` with it."""
    status: int = 200
    listed: bool = False


ROUTES = (
    AdminRoute("GET", "/skillbooks", skills.list_skillbooks, "List skillbooks with skill counts"),
    AdminRoute("GET", "/skillbooks/{skillbook}", skills.get_skillbook, "Show one skillbook"),
    AdminRoute("GET", "/skillbooks/{skillbook}/settings", skills.get_settings, "Read settings"),
    AdminRoute(
        "PATCH",
        "/skillbooks/{skillbook}/settings",
        skills.update_settings,
        "Change settings (null returns one to the configured default)",
        skills.Settings,
    ),
    AdminRoute(
        "GET",
        "/skillbooks/{skillbook}/skills",
        skills.list_skills,
        "List skills (query: status, section, q)",
    ),
    AdminRoute(
        "POST",
        "/skillbooks/{skillbook}/skills",
        skills.create_skill,
        "Propose a skill (it arrives pending)",
        skills.NewSkill,
    ),
    AdminRoute(
        "GET",
        "/skillbooks/{skillbook}/prompt",
        skills.compiled_prompt,
        "The section exactly as injected now (query: model, query)",
    ),
    AdminRoute(
        "GET",
        "/skillbooks/{skillbook}/export",
        transfer.export_skillbook,
        "Export (query: format=json|markdown)",
    ),
    AdminRoute(
        "POST",
        "/skillbooks/{skillbook}/import",
        transfer.import_skillbook,
        "Import a JSON export (query: mode=merge|replace)",
    ),
    AdminRoute("GET", "/skills/{skill_id}", skills.get_skill, "Show a skill, evidence, history"),
    AdminRoute(
        "PATCH",
        "/skills/{skill_id}",
        skills.edit_skill,
        "Edit content or section",
        skills.SkillEdit,
    ),
    AdminRoute(
        "POST",
        f"/skills/{{skill_id}}/{{action:{ACTIONS}}}",
        skills.change_status,
        "Approve, reject, archive or restore a skill",
    ),
    AdminRoute(
        "POST",
        "/skills/{skill_id}/rollback",
        skills.rollback_skill,
        "Roll back to an earlier revision",
        skills.Rollback,
    ),
    AdminRoute(
        "GET", "/traces", traces.list_traces, "List traces (query: skillbook, limit, before)"
    ),
    AdminRoute("GET", "/traces/{trace_id}", traces.get_trace, "Show one trace with its bodies"),
    AdminRoute(
        "GET",
        "/learner/runs",
        learner.list_runs,
        "Learner runs with tokens and cost (query: skillbook, limit)",
    ),
    AdminRoute("POST", "/learner/run", learner.run_now, "Run the learner now (query: skillbook)"),
)


def admin_app() -> web.Application:
    admin = web.Application()
    for route in ROUTES:
        admin.router.add_route(route.method, route.path, guarded(route.handler))
    admin.router.add_get("/openapi.json", guarded(openapi_handler))
    admin.router.add_route("*", "/{tail:.*}", guarded(unmatched))  # last: only what nothing took
    return admin


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(ROUTES))


async def unmatched(request: web.Request) -> web.StreamResponse:
    """No admin route has this path (404) or takes this method on it (405)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
