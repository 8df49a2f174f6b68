"""The proxy's own small error vocabulary, rendered in the caller's wire format.

Provider errors never pass through here: they are relayed verbatim with their status. These are
the errors the proxy itself raises (bad JSON, a body over the limit or too slow to arrive, a
path or key it refuses, an unreachable provider),
and each renders the way the caller's SDK expects to parse it: OpenAI's
`{"error": {"message", "type", "param", "code"}}`, or Anthropic's
`{"type": "error", "error": {"type", "message"}}` on `/v1/messages`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import web

from core.formats import CHAT, MESSAGES


@dataclass(frozen=True, slots=True)
class ProxyError(Exception):
    status: int
    message: str
    type: str
    code: str
    anthropic_type: str
    close: bool = False
    """The request's body failed as it was read (too slow, broken): what is left of it is not
    worth waiting for (`proxy.body.answer_unread`)."""

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def invalid_request(message: str, code: str = "invalid_request") -> ProxyError:
    return ProxyError(400, message, "invalid_request_error", code, "invalid_request_error")


def invalid_json(detail: str) -> ProxyError:
    return invalid_request(f"The request body is not valid JSON: {detail}", "invalid_json")


def unknown_skillbook_version(skillbook: str, version: int | None) -> ProxyError:
    """409: the pinned version is gone, and another one would break the client's experiment."""
    return ProxyError(
        409,
        f"Skillbook {skillbook!r} version {version} is no longer known to this proxy; send "
        "the request without X-Skillbook-Version, or freeze the skillbook to keep a version.",
        "invalid_request_error",
        "skillbook_version_unknown",
        "invalid_request_error",
    )


def invalid_path(detail: str) -> ProxyError:
    return invalid_request(f"The request path is not forwarded: {detail}", "invalid_path")


def invalid_body_encoding(detail: str) -> ProxyError:
    message = f"The request body does not match its Content-Encoding: {detail}"
    return invalid_request(message, "invalid_body_encoding")


def malformed_body(detail: str) -> ProxyError:
    return invalid_request(f"The request body is malformed: {detail}"[:300], "invalid_body")


def unsupported_encoding(encoding: str) -> ProxyError:
    return ProxyError(
        415,
        f"The proxy cannot read a body in Content-Encoding {encoding[:40]!r}: send it"
        " uncompressed, or as gzip or deflate.",
        "invalid_request_error",
        "unsupported_content_encoding",
        "invalid_request_error",
    )


def invalid_api_key() -> ProxyError:
    return ProxyError(
        401,
        "Invalid API key: this proxy needs one of its client keys (server.client_keys), sent as"
        " `Authorization: Bearer <key>` or `x-api-key: <key>`.",
        "invalid_request_error",
        "invalid_api_key",
        "authentication_error",
    )


def body_timeout(seconds: float) -> ProxyError:
    return ProxyError(
        408,
        f"The request body did not arrive within {seconds:g} seconds (server.body_timeout_s).",
        "invalid_request_error",
        "request_timeout",
        "timeout_error",
    )


def internal_error(detail: str) -> ProxyError:
    return ProxyError(
        500,
        f"The proxy failed on this request: {detail}",
        "server_error",
        "internal_error",
        "api_error",
    )


def retry_after(seconds: float) -> str:
    """A `Retry-After` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def body_too_large(limit: int) -> ProxyError:
    return ProxyError(
        413,
        f"The request body exceeds the proxy's limit of {limit} bytes (server.max_body_bytes).",
        "invalid_request_error",
        "request_too_large",
        "request_too_large",
    )


def upstream_unreachable(detail: str) -> ProxyError:
    return ProxyError(
        502,
        f"The provider could not be reached: {detail}",
        "upstream_error",
        "upstream_unreachable",
        "api_error",
    )


def upstream_timeout(seconds: float) -> ProxyError:
    return ProxyError(
        504,
        f"The provider did not answer within {seconds:g} seconds.",
        "upstream_error",
        "upstream_timeout",
        "api_error",
    )


def upstream_connect_timeout(seconds: float) -> ProxyError:
    return ProxyError(
        504,
        f"Could not connect to the provider within {seconds:g} seconds"
        " (upstream.connect_timeout_s).",
        "upstream_error",
        "upstream_connect_timeout",
        "api_error",
    )


def error_response(
    error: ProxyError, *, anthropic: bool, trace_id: str | None = None
) -> web.Response:
    if anthropic:
        body = MESSAGES.error_body(error.status, error.message, error.anthropic_type, error.code)
    else:
        body = CHAT.error_body(error.status, error.message, error.type, error.code)
    headers = {"X-Trace-Id": trace_id} if trace_id else None
    return web.Response(
        status=error.status, body=body, content_type="application/json", headers=headers
    )
