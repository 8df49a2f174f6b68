"""Who may use the admin API, and how its failures are told.

With `admin.token` set, every admin route wants `Authorization: Bearer <token>` (401 without
one, 403 with a wrong one). Without a token the API answers only clients on loopback, so a
proxy bound to a public address never exposes skill editing by accident. Errors are JSON in
OpenAI's shape, `{"error": {"message", "type", "code"}}`, like the rest of the proxy.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import web
from pydantic import ValidationError

from proxy.state import STATE
from store.errors import Conflict, InvalidContent, InvalidTransition, NotFound, StoreError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STORE_ERRORS: dict[type[StoreError], tuple[int, str]] = {
    NotFound: (404, "not_found"),
    InvalidTransition: (409, "invalid_transition"),
    Conflict: (409, "conflict"),
    InvalidContent: (422, "invalid_content"),
}


class AdminError(Exception):
    """Raised by a handler to answer with an error of its choosing."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def admin_error(status: int, message: str, code: str) -> web.Response:
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
        status, "invalid_request_error"
    )
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status)


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def guarded(handler: Handler) -> Handler:
    """`handler` behind the token check, with its failures answered as JSON.

    Applied to each admin route instead of as middleware: a middleware anywhere in the app
    makes aiohttp wrap every request in a chain of them, proxied calls included, which cost
    each of those about 11,000 instructions (callgrind, 1,000 requests) for nothing.
    """

    async def run(request: web.Request) -> web.StreamResponse:
        return await json_errors(request, partial(require_admin, handler=handler))

    return run


async def require_admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.config_dict[STATE].config.admin.token
    if not token:
        if is_loopback(request.remote):
            return await handler(request)
        return admin_error(
            403,
            "The admin API answers only on loopback while no admin.token is configured.",
            "admin_loopback_only",
        )
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return admin_error(
            401, "Send the admin token as 'Authorization: Bearer <token>'.", "missing_token"
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return admin_error(403, "The admin token is not valid.", "invalid_token")
    return await handler(request)


async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AdminError as exc:
        return admin_error(exc.status, exc.message, exc.code)
    except StoreError as exc:
        status, code = _STORE_ERRORS.get(type(exc), (400, "invalid_request"))
        return admin_error(status, str(exc), code)
    except ValidationError as exc:
        return admin_error(422, _describe(exc), "invalid_content")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "invalid_request")
        return admin_error(exc.status, f"{exc.reason}: {request.method} {request.path}", code)


async def read_json(request: web.Request) -> object:
    """The request body as JSON, or a 400 that says why not."""
    try:
        return json.loads(await request.read() or b"null")
    except ValueError as exc:
        raise AdminError(
            400, f"The request body is not valid JSON: {exc}", "invalid_json"
        ) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
