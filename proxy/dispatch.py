"""Proxied requests reach their handler without a walk through aiohttp's URL router.

To resolve a path the router looks its prefixes up from the longest down and runs a regular
expression for each candidate; `/sb/{skillbook}/v1/...` has two candidates (feedback and the
proxy). That, with the match object and the checks around it, cost a proxied request about
25,000 instructions (3% of all the proxy's work for one exchange, callgrind on a running
proxy). Proxied paths have one of two shapes, told apart here with string operations; every
other request (the admin API, feedback, health, a client waiting on `Expect: 100-continue`)
still goes through the router, so their behaviour cannot change.

aiohttp offers no public hook before routing other than middlewares, which cost more than
routing, so this wraps the application's request handler: `Application._handle`, which aiohttp
hands to its server when the app starts (`tests/test_dispatch.py` notices if that stops).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import AbstractRoute, UrlMappingMatchInfo

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def proxied_match(path: str, routed_tails: frozenset[str]) -> dict[str, str] | None:
    """What the router would match for `path` on `/v1/{tail}` or `/sb/{skillbook}/v1/{tail}`;
    None for any other path, or a tail in `routed_tails` (routes of their own, like feedback).

    `path` is the request's `rel_url.path_safe`, as the router reads it; `%2F` and `%25` in
    the values are decoded the way the router decodes them.
    """
    if path.startswith("/v1/"):
        tail = path[4:]
        if tail in routed_tails:
            return None
        return {"tail": _unquote(tail) if "%" in tail else tail}
    if not path.startswith("/sb/"):
        return None
    name, found, tail = path[4:].partition("/v1/")
    # the router's `{skillbook}` is one segment of at least one character, without braces
    if not found or not name or "/" in name or "{" in name or "}" in name or tail in routed_tails:
        return None
    if "%" in path:
        name, tail = _unquote(name), _unquote(tail)
    return {"skillbook": name, "tail": tail}


def _unquote(value: str) -> str:
    return value.replace("%2F", "/").replace("%25", "%")


def skip_router(
    app: web.Application,
    *,
    plain: AbstractRoute,
    skillbook: AbstractRoute,
    routed_tails: frozenset[str],
) -> None:
    """Send `app`'s proxied paths straight to the handler of `plain` / `skillbook` (both the
    same handler, registered on the router too, which still answers everything else).

    Call before the app starts. The app must have no middlewares: this path would skip them.
    """
    if app.middlewares:
        raise ValueError("skip_router would bypass the app's middlewares")
    handler = plain.handler
    routed: Handler = app._handle

    async def handle(request: web.Request) -> web.StreamResponse:
        match = proxied_match(request.rel_url.path_safe, routed_tails)
        if match is None or hdrs.EXPECT in request.headers:
            return await routed(request)
        info = UrlMappingMatchInfo(match, skillbook if "skillbook" in match else plain)
        info.add_app(app)
        info.freeze()
        request._match_info = info
        return await handler(request)

    object.__setattr__(app, "_handle", handle)  # instance attribute; no aiohttp warning
