"""Who may use the admin API, and how its failures are told.

With `admin.token` set, every admin route wants `Authorization: Bearer <token>` (401 without
one, 403 with a wrong one). Without a token the API answers only clients on loopback, so a
proxy bound to a public address never exposes skill editing by accident.

"On loopback" is decided from the connection's real peer, never from headers a client can
write, and a request that carries forwarding headers (`X-Forwarded-For`, `Forwarded`,
`X-Real-IP`) is not a local one: behind a reverse proxy on the same host every connection
comes from 127.0.0.1, whoever sent the request. Only when the peer is one of
`server.trusted_proxies` are those headers believed; the client is then the right-most
address in each that is not itself a trusted proxy, and it must be on loopback.

Errors are JSON in OpenAI's shape, `{"error": {"message", "type", "code"}}`, like the rest of
the proxy; a store that cannot serve (locked, damaged, gone) is a 503 `store_unavailable`
with `Retry-After`, and an unexpected failure a 500 in the same shape.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import lru_cache, partial

from aiohttp import web
from multidict import MultiMapping
from pydantic import ValidationError

from proxy.credentials import secret_digest
from proxy.errors import retry_after
from proxy.state import STATE
from store.errors import (
    BulkRefused,
    Conflict,
    InvalidContent,
    InvalidTransition,
    NotFound,
    StoreError,
    StoreUnavailable,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger("skillproxy.admin")

FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")

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


def admin_error(
    status: int,
    message: str,
    code: str,
    headers: Mapping[str, str] | None = None,
    *,
    refused: Mapping[str, str] | None = None,
) -> web.Response:
    """`refused` (a bulk change's id -> reason) rides inside the error object."""
    kind = {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        500: "server_error",
        503: "server_error",
    }.get(status, "invalid_request_error")
    error: dict[str, object] = {"message": message, "type": kind, "code": code}
    if refused is not None:
        error["refused"] = dict(refused)
    body = {"error": error}
    return web.json_response(body, status=status, headers=headers)


def store_unavailable(exc: StoreUnavailable) -> web.Response:
    """503 with `Retry-After` from the store's hint."""
    headers = {"Retry-After": retry_after(exc.retry_after_s)}
    return admin_error(503, str(exc), "store_unavailable", headers)


def parse_address(text: str) -> Address | None:
    """An address as peers and proxies write it (`203.0.113.9`, `203.0.113.9:443`, `::1`,
    `[::1]:443`, quoted, with a zone), IPv4-mapped IPv6 as IPv4; None for anything else
    (`unknown`, an obfuscated `_name`, garbage)."""
    value = text.strip().strip('"').strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def _is_trusted(address: Address | None, networks: Iterable[Network]) -> bool:
    return address is not None and any(address in net for net in networks)


def forwarded_chains(headers: MultiMapping[str]) -> dict[str, list[str]]:
    """The addresses each forwarding header names, in the order hops added them (client
    first); a header given several times counts as one list, as HTTP says."""

    def values(name: str) -> list[str]:
        return list(headers.getall(name, []))

    chains: dict[str, list[str]] = {}
    xff = [item.strip() for value in values("X-Forwarded-For") for item in value.split(",")]
    if xff:
        chains["X-Forwarded-For"] = xff
    forwarded = [
        pair.partition("=")[2].strip()
        for value in values("Forwarded")
        for element in value.split(",")
        for pair in element.split(";")
        if pair.partition("=")[0].strip().lower() == "for"
    ]
    if values("Forwarded"):
        chains["Forwarded"] = forwarded or [""]
    real = values("X-Real-IP")
    if real:
        chains["X-Real-IP"] = [real[-1].strip()]
    return chains


def _client(chain: list[str], networks: tuple[Network, ...]) -> str:
    """The right-most hop that is not a trusted proxy (the left-most if all are)."""
    for hop in reversed(chain):
        if not _is_trusted(parse_address(hop), networks):
            return hop.strip()
    return chain[0].strip()


def local_client_refusal(request: web.Request, trusted: tuple[str, ...]) -> str | None:
    """Why this request does not come from a client on loopback, or None when it does."""
    peer = parse_address(request.remote or "")
    chains = forwarded_chains(request.headers)
    if not chains:
        if peer is not None and peer.is_loopback:
            return None
        return f"the request comes from {request.remote or 'an unknown address'}"
    networks = _networks(trusted)
    named = ", ".join(chains)
    if not _is_trusted(peer, networks):
        return (
            f"the request was forwarded ({named}) by {request.remote or 'an unknown address'}, "
            "which is not in server.trusted_proxies"
        )
    for header, chain in chains.items():
        client = _client(chain, networks)
        address = parse_address(client)
        if address is None or not address.is_loopback:
            return f"{header} names the client {client or '(nothing)'!r}, which is not on loopback"
    return None


def guarded(handler: Handler) -> Handler:
    """`handler` behind the token check, with its failures answered as JSON.

    Applied to each admin route instead of as middleware: a middleware anywhere in the app
    makes aiohttp wrap every request in a chain of them, proxied calls included, which cost
    each of those about 11,000 instructions (callgrind, 1,000 requests) for nothing.
    """

    async def run(request: web.Request) -> web.StreamResponse:
        return await json_errors(request, partial(require_admin, handler=handler))

    return run


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
"""The bodies a page on another site can make a browser send without asking first."""


def cross_site_refusal(request: web.Request) -> str | None:
    """Why a state-changing request looks like another site's, or None. A page on any site
    can make a browser POST to 127.0.0.1; without a token (loopback mode) nothing else would
    stop it. Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`) and cannot
    send JSON cross-site without a preflight we never answer, so: no cross-site fetch, an
    `Origin` must be this host's, and no body of a type a form can send."""
    if request.method in SAFE_METHODS:
        return None
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return "the browser says this request comes from another site"
    origin = request.headers.get("Origin")
    if origin is not None:
        host = origin.split("://", 1)[-1].rstrip("/")
        if origin == "null" or host.lower() != request.host.lower():
            return f"the request's Origin {origin!r} is not this proxy ({request.host})"
    if "Content-Type" in request.headers and request.content_type in FORM_TYPES:
        return f"a body must be JSON (Content-Type: application/json), not {request.content_type}"
    return None


async def require_admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    refused = admin_refusal(request)
    if refused is not None:
        return admin_error(*refused)
    return await handler(request)


def admin_refusal(request: web.Request) -> tuple[int, str, str] | None:
    """Why `request` may not use the admin API, as (status, message, code); None if it may.
    The OTLP receiver, which also writes into the store, asks the same question."""
    if (refusal := cross_site_refusal(request)) is not None:
        return 403, f"Refused: {refusal}.", "cross_site_request"
    config = request.config_dict[STATE].config
    token = config.admin.token
    if not token:
        refusal = local_client_refusal(request, config.server.trusted_proxies)
        if refusal is None:
            return None
        return (
            403,
            "The admin API answers only clients on loopback while no admin.token is "
            f"configured: {refusal}.",
            "admin_loopback_only",
        )
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return 401, "Send the admin token as 'Authorization: Bearer <token>'.", "missing_token"
    if not hmac.compare_digest(secret_digest(given.strip()), secret_digest(token)):
        return 403, "The admin token is not valid.", "invalid_token"
    return None


async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AdminError as exc:
        return admin_error(exc.status, exc.message, exc.code)
    except StoreUnavailable as exc:
        log.warning("admin %s %s: %s", request.method, request.path, exc)
        return store_unavailable(exc)
    except BulkRefused as exc:
        return admin_error(409, str(exc), "bulk_refused", refused=exc.refused)
    except StoreError as exc:
        status, code = _STORE_ERRORS.get(type(exc), (400, "invalid_request"))
        return admin_error(status, str(exc), code)
    except ValidationError as exc:
        return admin_error(422, _describe(exc), "invalid_content")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "invalid_request")
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        message = f"{exc.reason}: {request.method} {request.path}"
        return admin_error(exc.status, message, code, allow)
    except Exception:  # a bug: logged with its traceback, answered in the API's shape
        log.exception("admin %s %s failed", request.method, request.path)
        return admin_error(500, "Internal error; the proxy's log has the details.", "internal")


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
