"""The admin API's one route table: it builds the router and the OpenAPI document alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from core.canary_report import CanaryReport
from skillproxy.admin import episodes, imports, learner, skillbooks, skills, traces, transfer
from skillproxy.admin.guard import AdminError, Handler, guarded
from skillproxy.admin.openapi import openapi_document
from skillproxy.admin.trace_queries import ActivityQuery, SpendQuery, TracesQuery
from store.records import (
    ActivityBucket,
    BulkResult,
    Canary,
    DailySkills,
    DailySpend,
    EpisodeDetail,
    EpisodePage,
    ImportSummary,
    LearnerRun,
    RefusedProposal,
    Skill,
    Skillbook,
    SkillbookEvent,
    SkillDetail,
    SkillOutcome,
    StoredReflection,
    TraceDetail,
    TracePage,
    TrafficSpend,
)
from store.rules import ACTIONS as RULE_ACTIONS

ACTIONS = "|".join(RULE_ACTIONS)


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
    text: str | None = None
    """A text media type the route may answer with instead of JSON (export's Markdown)."""
    body_text: str | None = None
    """A text media type the route's body may be instead of one JSON value (the JSONL a trace
    import streams; one JSON object is a one-line file)."""


ROUTES = (
    AdminRoute(
        "GET", "/skillbooks", skillbooks.list_skillbooks,
        "List skillbooks with skill counts, who created each and when (first seen, for one "
        "a request named)", response=Skillbook, listed=True, query=skillbooks.ListSkillbooks,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}", skillbooks.get_skillbook, "Show one skillbook",
        response=Skillbook,
    ),
    AdminRoute(
        "DELETE", "/skillbooks/{skillbook}", skillbooks.delete_skillbook,
        "Delete a skillbook (soft: it injects nothing until restored)", response=Skillbook,
    ),
    AdminRoute(
        "POST", "/skillbooks/{skillbook}/restore", skillbooks.restore_skillbook,
        "Restore a deleted skillbook", response=Skillbook,
    ),
    AdminRoute(
        "POST", "/skillbooks/{skillbook}/copy", skillbooks.copy_skillbook,
        "Copy into a new skillbook, every skill under a new id", skillbooks.CopyTo,
        response=skillbooks.Copied, status=201,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}/history", skillbooks.skillbook_history,
        "The skillbook's history: created, settings, frozen, imported, deleted",
        response=SkillbookEvent, listed=True,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}/skills-by-day", skillbooks.skills_by_day,
        "Skills proposed, approved and retired per UTC day", response=DailySkills, listed=True,
        query=skillbooks.DaysQuery,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}/spend", traces.traffic_spend,
        "What the skillbook's proxied traffic cost in USD (the model's published prices) per "
        "UTC day, and in all; traces of unknown price are counted, not summed",
        response=TrafficSpend, query=SpendQuery,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}/settings", skillbooks.get_settings, "Read settings",
        response=skillbooks.SettingsView,
    ),
    AdminRoute(
        "PATCH", "/skillbooks/{skillbook}/settings", skillbooks.update_settings,
        "Change settings (null returns one to the configured default; frozen: true keeps "
        "the injected set as it is now)", skillbooks.Settings, response=skillbooks.SettingsView,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}/skills", skills.list_skills, "List skills",
        response=Skill, listed=True, query=skills.ListSkills,
    ),
    AdminRoute(
        "POST", "/skillbooks/{skillbook}/skills", skills.create_skill,
        "Propose a skill (it arrives pending)", skills.NewSkill, response=SkillDetail, status=201,
    ),
    AdminRoute(
        "POST", f"/skillbooks/{{skillbook}}/skills/{{action:{ACTIONS}}}",
        skills.bulk_change_status,
        "Approve, reject, archive or restore several skills: all of them or none",
        skills.SkillIds, response=BulkResult,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}/prompt", skillbooks.compiled_prompt,
        "The section exactly as injected now", response=skillbooks.Prompt,
        query=skillbooks.PromptQuery,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}/export", transfer.export_skillbook,
        "Export: the JSON document, Markdown for reading, or for other tools (AGENTS.md, "
        "CLAUDE.md, Agent Skills, Langfuse)", response=dict[str, Any],
        query=transfer.ExportQuery, text="text/markdown",
    ),
    AdminRoute(
        "POST", "/skillbooks/{skillbook}/import", transfer.import_skillbook,
        "Import a JSON export, of this or another skillbook (ids another uses are remapped)",
        transfer.SkillbookDocument, response=ImportSummary, query=transfer.ImportQuery,
    ),
    AdminRoute(
        "POST", "/skillbooks/{skillbook}/traces/import", imports.import_traces,
        "Import conversations from a JSONL file (the body, streamed) as traces and episodes of "
        "the skillbook; answers NDJSON: progress per batch, then a summary with failed lines",
        response=imports.ImportProgress | imports.ImportDone, query=imports.TraceImportQuery,
        text=imports.NDJSON, body_text=imports.NDJSON,
    ),
    AdminRoute(
        "GET", "/skills/{skill_id}", skills.get_skill, "Show a skill, evidence, history",
        response=SkillDetail,
    ),
    AdminRoute(
        "PATCH", "/skills/{skill_id}", skills.edit_skill, "Edit content or section",
        skills.SkillEdit, response=SkillDetail,
    ),
    AdminRoute(
        "DELETE", "/skills/{skill_id}", skills.delete_skill,
        "Delete a skill (soft: hidden and never injected until restored)",
        response=SkillDetail,
    ),
    AdminRoute(
        "POST", f"/skills/{{skill_id}}/{{action:{ACTIONS}}}", skills.change_status,
        "Approve, reject, archive or restore a skill (optionally with a note)",
        skills.ActionNote, response=SkillDetail,
    ),
    AdminRoute(
        "POST", "/skills/{skill_id}/rollback", skills.rollback_skill,
        "Roll back to an earlier revision", skills.Rollback, response=SkillDetail,
    ),
    AdminRoute(
        "GET", "/skills/{skill_id}/outcomes", skills.skill_outcomes,
        "Episodes it was injected into and their feedback, beside comparable ones without it",
        response=SkillOutcome,
    ),
    AdminRoute(
        "POST", "/skills/{skill_id}/canary", skills.start_canary,
        "Approve as a canary: inject a pending or active skill into a share of sessions only, "
        "chosen by a stable hash of the session", skills.CanaryStart, response=Canary,
        status=201,
    ),
    AdminRoute(
        "GET", "/skills/{skill_id}/canary", skills.canary_report,
        "The skill's latest canary per arm (sessions, feedback, mean score, tokens and turns "
        "per conversation), the difference with its always-valid 95% interval, the verdict",
        response=CanaryReport, query=skills.CanaryQuery,
    ),
    AdminRoute(
        "POST", "/skills/{skill_id}/canary/stop", skills.stop_canary,
        "End the skill's canary, leaving the skill as it was before it", skills.ActionNote,
        response=Canary,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}/canaries", skills.skillbook_canaries,
        "The skillbook's running canaries, each with its report", response=CanaryReport,
        listed=True, query=skills.CanaryQuery,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}/canary-rules", skillbooks.get_canary_rules,
        "The skillbook's canary rules: share for every approval, assignment, when to promote "
        "or withdraw", response=skillbooks.CanaryRulesView,
    ),
    AdminRoute(
        "PATCH", "/skillbooks/{skillbook}/canary-rules", skillbooks.update_canary_rules,
        "Change canary rules (null returns one to its default)", skillbooks.CanaryRulesPatch,
        response=skillbooks.CanaryRulesView,
    ),
    AdminRoute(
        "GET", "/traces", traces.list_traces, "List traces, newest first",
        response=TracePage, query=TracesQuery,
    ),
    AdminRoute(
        "GET", "/traces/activity", traces.traffic_activity,
        "Requests, errors and cost in USD per time bucket", response=ActivityBucket, listed=True,
        query=ActivityQuery,
    ),
    AdminRoute(
        "GET", "/traces/{trace_id}", traces.get_trace,
        "Show one trace with its bodies and feedback", response=TraceDetail,
    ),
    AdminRoute(
        "GET", "/episodes", episodes.list_episodes,
        "Episodes (conversations the learner reads), newest activity first",
        response=EpisodePage, query=episodes.EpisodesQuery,
    ),
    AdminRoute(
        "GET", "/episodes/{episode_id}", episodes.get_episode,
        "One episode: traces, feedback, status, attempts, error, reflections, refused lessons",
        response=EpisodeDetail,
    ),
    AdminRoute(
        "POST", "/episodes/{episode_id}/retry", episodes.retry_episode,
        "Re-queue a failed episode", response=episodes.Retried,
    ),
    AdminRoute(
        "POST", "/episodes/retry", episodes.retry_failed,
        "Re-queue failed episodes: the ids given, or every failed one of ?skillbook=",
        episodes.RetryIds, response=episodes.Retried, query=episodes.RetryQuery,
    ),
    AdminRoute(
        "GET", "/reflections/{seq}", episodes.get_reflection,
        "One reflection, every field (a skill's evidence names it)", response=StoredReflection,
    ),
    AdminRoute(
        "GET", "/skillbooks/{skillbook}/refused", episodes.refused_lessons,
        "Lessons the skill rules refused, with the rule each broke", response=RefusedProposal,
        listed=True, query=episodes.RefusedQuery,
    ),
    AdminRoute(
        "GET", "/learner/runs", learner.list_runs, "Learner runs with tokens and cost",
        response=LearnerRun, listed=True, query=learner.RunsQuery,
    ),
    AdminRoute(
        "GET", "/learner/spend", learner.spend_by_day,
        "The learner's calls, tokens and cost per UTC day", response=DailySpend, listed=True,
        query=learner.SpendQuery,
    ),
    AdminRoute(
        "POST", "/learner/run", learner.run_now, "Run the learner now",
        response=learner.RunSummaries, query=learner.RunQuery,
    ),
)  # fmt: skip


def admin_app() -> web.Application:
    admin = web.Application()
    for route in ROUTES:
        handler = route.handler if route.query is not None else _no_query(route.handler)
        admin.router.add_route(route.method, route.path, guarded(handler))
    admin.router.add_get("/openapi.json", guarded(openapi_handler))
    # last, so it gets only what nothing took; `[\s\S]`, as `.` would stop at a newline
    admin.router.add_route("*", r"/{tail:[\s\S]*}", guarded(unmatched))
    return admin


def _no_query(handler: Handler) -> Handler:
    """A route that takes no query parameters refuses any, as one with a query model refuses
    those it does not know: a misspelt filter is an error, never silently ignored."""

    async def run(request: web.Request) -> web.StreamResponse:
        if request.query:
            names = ", ".join(sorted(set(request.query)))
            raise AdminError(400, f"{names}: this route takes no query parameters", "invalid_query")
        return await handler(request)

    return run


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
