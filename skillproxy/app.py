"""The application factory: everything a running proxy owns is opened and closed here.

`create_app(config)` builds an `aiohttp.web.Application` with no module-level state: the
upstream session, the database workers and the trace writer live on the app (under `STATE`)
and are opened and closed by one cleanup context, so a test can run several proxies side by
side and shutdown always drains the trace queue before the database closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from core.config import Config
from learner.service import scheduled
from proxy import handlers
from proxy.dispatch import skip_router
from proxy.feedback import post_feedback
from proxy.forwarding import create_session
from proxy.skillbook_cache import SkillbookCache
from proxy.stalls import StallWatch
from proxy.state import STATE, ProxyState
from proxy.trace_sink import TraceSink
from proxy.trace_writer import TraceWriter
from skillproxy.admin.routes import admin_app
from store.migrations import migrate
from store.worker import DatabaseWorker

log = logging.getLogger("skillproxy")


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=config.server.max_body_bytes)
    app.cleanup_ctx.append(_lifecycle(config))
    add_routes(app)
    return app


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", handlers.healthz)
    app.add_subapp("/admin/", admin_app())
    app.router.add_post("/v1/feedback", post_feedback)
    app.router.add_post("/sb/{skillbook}/v1/feedback", post_feedback)
    plain = app.router.add_route("*", "/v1/{tail:.*}", handlers.proxy_v1)
    skillbook = app.router.add_route("*", "/sb/{skillbook}/v1/{tail:.*}", handlers.proxy_v1)
    skip_router(app, plain=plain, skillbook=skillbook, routed_tails=frozenset({"feedback"}))


def _lifecycle(config: Config) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        db = DatabaseWorker(config.store.path, name="db")
        applied = await db.run(migrate)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        session = create_session(config.upstream)
        sink = TraceSink(config.store.path)
        await sink.start()
        traces = TraceWriter(sink, config.traces)
        traces.start()
        cache = SkillbookCache(db, config.skillbook)
        await cache.refresh()
        cache.start()
        stalls = StallWatch(config.upstream.read_timeout_s)
        stalls.start()
        app[STATE] = ProxyState(
            config=config,
            session=session,
            traces=traces,
            db=db,
            skillbooks=cache,
            stalls=stalls,
        )
        try:
            async with scheduled(config):
                yield
        finally:
            await stalls.close()
            await cache.close()
            await traces.close()
            await sink.close()
            await session.close()
            db.close()

    return lifecycle
