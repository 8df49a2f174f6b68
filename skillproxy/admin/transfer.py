"""Admin handlers to export a skillbook (JSON, lossless; Markdown, for reading; the formats
of `skillproxy.exports` for other tools) and import one.

An export of one skillbook imports into another on the same proxy: skill ids another
skillbook already uses are given new ones (the answer's `remapped` lists them), and a second
import of the same document finds them again (see `store.sqlite.transfer`).
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from skillproxy import exports
from skillproxy.admin.guard import AdminError, read_json
from skillproxy.admin.requests import (
    Body,
    Query,
    actor,
    changed,
    query_of,
    skillbook_name,
    state_of,
)


class SkillbookDocument(Body):
    """The `skillproxy.skillbook/1` document an export writes (checked whole by the store)."""

    format: Literal["skillproxy.skillbook/1"]
    skillbook: str
    version: int = Field(ge=1)
    settings: dict[str, Any]
    skills: list[dict[str, Any]]


ExportFormat = Literal["json", "markdown", "agents-md", "claude-md", "skill-md", "langfuse"]


class ExportQuery(Query):
    format: ExportFormat = Field(
        default="json",
        description=(
            "json: the lossless document import reads; markdown: every active and pending "
            "skill, for reading; agents-md, claude-md: the active skills as a marked section "
            'of an AGENTS.md or CLAUDE.md (text); skill-md: `{"folders": {name: SKILL.md}}`, '
            "an Agent Skills folder per section; langfuse: a Langfuse text prompt"
        ),
    )


class ImportQuery(Query):
    mode: Literal["merge", "replace"] = "merge"


async def export_skillbook(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    kind = query_of(request, ExportQuery).format
    if kind == "markdown":
        text = await state.store.run(lambda s: s.transfer.export_markdown(name))
        return web.Response(text=text, content_type="text/markdown")
    document = await state.store.run(lambda s: s.transfer.export_json(name))
    if kind in ("agents-md", "claude-md"):
        section = exports.agents_md_section(document, file_kind=_FILE_KINDS[kind])
        return web.Response(text=section, content_type="text/markdown")
    if kind == "skill-md":
        return web.json_response({"folders": exports.skill_folders(document)})
    if kind == "langfuse":
        return web.json_response(exports.langfuse_prompt(document))
    return web.json_response(document)


_FILE_KINDS: dict[str, exports.FileKind] = {"agents-md": "agents", "claude-md": "claude"}


async def import_skillbook(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    mode = query_of(request, ImportQuery).mode
    document = await read_json(request)
    if not isinstance(document, dict):
        raise AdminError(422, "the import document must be a JSON object", "invalid_content")
    who = actor(request)
    summary = await state.store.run(
        lambda s: s.transfer.import_json(name, document, actor=who, mode=mode)
    )
    return await changed(state, summary)
