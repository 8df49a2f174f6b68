"""Proxied paths skip aiohttp's router (`proxy.dispatch`) and land where it would send them.

Reads the app's state as the handlers do (proxy/state.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from proxy import handlers
from proxy.dispatch import proxied_match
from proxy.state import STATE
from skillproxy.app import create_app
from store import open_store
from tests.harness import proxy_config

ROUTED_TAILS = frozenset({"feedback"})
PATHS = [
    "/v1/chat/completions",
    "/v1/",
    "/v1/models/gpt-4o",
    "/v1/files/file%2F1/content",
    "/v1/a%25b",
    "/v1/feedback",
    "/v1/feedback/",
    "/sb/support/v1/chat/completions",
    "/sb/support/v1/",
    "/sb/support/v1/feedback",
    "/sb/a%2Fb/v1/models",
    "/sb/x/v1/v1/y",
    "/sb//v1/models",
    "/sb/a/b/v1/models",
    "/sb/%7Bx%7D/v1/models",
    "/sb/support/v1",
    "/sb/support",
    "/v1",
    "/healthz",
    "/admin/skillbooks",
    "/v2/chat/completions",
]


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    return create_app(proxy_config(tmp_path, "http://127.0.0.1:9"))


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("path", PATHS)
async def test_a_skipped_path_gets_what_the_router_would_give(
    app: web.Application, path: str, method: str
) -> None:
    request = make_mocked_request(method, path, app=app)
    routed = await app.router.resolve(request)
    match = proxied_match(request.rel_url.path_safe, ROUTED_TAILS)
    if match is None:  # left to the router: nothing to compare
        return
    assert routed.handler is handlers.proxy_v1
    assert dict(routed) == match


def test_only_proxy_shaped_paths_are_skipped() -> None:
    skipped = {p for p in PATHS if proxied_match(p, ROUTED_TAILS) is not None}
    assert "/v1/feedback" not in skipped and "/sb/support/v1/feedback" not in skipped
    assert "/v1/feedback/" in skipped  # the router proxies it too: only exact POSTs are feedback
    assert {"/sb//v1/models", "/sb/a/b/v1/models", "/healthz", "/v1"}.isdisjoint(skipped)
    assert proxied_match("/sb/a%2Fb/v1/x%2Fy", ROUTED_TAILS) == {"skillbook": "a/b", "tail": "x/y"}


async def test_proxied_requests_do_not_consult_the_router(app: web.Application) -> None:
    """Pins the hook: if aiohttp stopped serving `Application._handle`, this would fail."""
    resolved: list[str] = []
    resolve = app.router.resolve

    async def counting(request: web.Request) -> Any:
        resolved.append(request.path)
        return await resolve(request)

    app.router.resolve = counting  # type: ignore[method-assign]
    async with TestServer(app) as server:
        base = str(server.make_url(""))
        async with httpx.AsyncClient(base_url=base) as client:
            proxied = await client.get("/sb/support/v1/models")
            health = await client.get("/healthz")
            expect = await client.post(
                "/v1/chat/completions", content=b"{}", headers={"Expect": "100-continue"}
            )
    assert proxied.status_code == 502  # nothing listens upstream: the proxy's own answer
    store = open_store(app[STATE].config.store.url)
    trace = store.traces.get(proxied.headers["X-Trace-Id"])
    store.close()
    assert trace is not None and trace.skillbook == "support" and trace.status == 502
    assert health.status_code == 200
    assert expect.status_code == 502  # `Expect` goes through the router, then the proxy
    assert resolved == ["/healthz", "/v1/chat/completions"]
