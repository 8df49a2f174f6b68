"""The review page: static files shipped in the package, served at `/ui/` with no build step
and nothing fetched from elsewhere (it works offline). The page is a client of the admin API
and nothing more: every action is the same call the CLI makes, under the same token."""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

STATIC = resources.files("skillproxy.ui") / "static"
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
HEADERS = {
    # the page runs only its own files: no inline script, nothing from another origin
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_ui_routes(app: web.Application) -> None:
    app.router.add_get("/ui", _to_ui)
    app.router.add_get("/", _to_ui)
    app.router.add_get("/ui/", _index)
    app.router.add_get("/ui/{name:[A-Za-z0-9_-]+\\.[a-z]+}", _file)


async def _to_ui(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/")


async def _index(request: web.Request) -> web.Response:
    return _serve("index.html")


async def _file(request: web.Request) -> web.Response:
    return _serve(request.match_info["name"])


def _serve(name: str) -> web.Response:
    suffix = name[name.rfind(".") :]
    kind = TYPES.get(suffix)
    body = _read(name) if kind is not None else None
    if kind is None or body is None:
        raise web.HTTPNotFound(text=f"no file {name!r} in the review page")
    return web.Response(body=body, content_type=kind, headers=HEADERS)


@functools.cache
def _read(name: str) -> bytes | None:
    """Read once: the files ship with the package and do not change while it runs."""
    target = STATIC / name
    return target.read_bytes() if target.is_file() else None
