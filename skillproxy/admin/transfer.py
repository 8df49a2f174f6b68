"""Admin handlers to export a skillbook (JSON, lossless; Markdown, for reading) and import one."""

from __future__ import annotations

from aiohttp import web

from skillproxy.admin.guard import AdminError, read_json
from skillproxy.admin.skills import actor, skillbook_name, state_of
from store.records import as_json

IMPORT_MODES = ("merge", "replace")


async def export_skillbook(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    kind = request.query.get("format", "json")
    if kind == "json":
        return web.json_response(await state.store.run(lambda s: s.transfer.export_json(name)))
    if kind == "markdown":
        text = await state.store.run(lambda s: s.transfer.export_markdown(name))
        return web.Response(text=text, content_type="text/markdown")
    raise AdminError(400, "format must be json or markdown", "invalid_query")


async def import_skillbook(request: web.Request) -> web.Response:
    state, name = state_of(request), skillbook_name(request)
    mode = request.query.get("mode", "merge")
    if mode not in IMPORT_MODES:
        raise AdminError(400, "mode must be merge or replace", "invalid_query")
    document = await read_json(request)
    if not isinstance(document, dict):
        raise AdminError(422, "the import document must be a JSON object", "invalid_content")
    who = actor(request)
    summary = await state.store.run(
        lambda s: s.transfer.import_json(name, document, actor=who, mode=mode)
    )
    await state.skillbooks.refresh()
    return web.json_response(as_json(summary))
