"""The proxy's own small error vocabulary, rendered in the caller's wire format.

Provider errors never pass through here: they are relayed verbatim with their status. These are
the errors the proxy itself raises (bad JSON, a body over the limit, an unreachable provider),
and each renders the way the caller's SDK expects to parse it: OpenAI's
`{"error": {"message", "type", "param", "code"}}`, or Anthropic's
`{"type": "error", "error": {"type", "message"}}` on `/v1/messages`.
"""

from __future__ import annotations

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

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def invalid_request(message: str, code: str = "invalid_request") -> ProxyError:
    return ProxyError(400, message, "invalid_request_error", code, "invalid_request_error")


def invalid_json(detail: str) -> ProxyError:
    return invalid_request(f"The request body is not valid JSON: {detail}", "invalid_json")


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
