"""The application factory: everything a running proxy owns is opened and closed here.

`create_app(config)` builds an `aiohttp.web.Application` with no module-level state. Each
resource (the store worker, the upstream session, the trace sink and its writer, the skillbook
cache, the stall watch, the feedback retry queue, the canary watch, the metrics registry, the
learner's schedule) opens in a cleanup context of its own, in that order, and is put on the app
under its own key as soon as it is open. aiohttp unwinds only the contexts that finished
starting, in reverse, so a failure at start-up closes exactly what was already open; and
shutdown drains the trace queue and the queued feedback before the store closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from core.config import Config
from learner.service import scheduled
from proxy import handlers
from proxy.canary_watch import CanaryWatch
from proxy.dispatch import skip_router
from proxy.feedback import feedback_method_not_allowed, post_feedback
from proxy.feedback_queue import FEEDBACK, FeedbackQueue
from proxy.forwarding import create_session
from proxy.health import healthz
from proxy.skillbook_cache import SkillbookCache
from proxy.stalls import StallWatch
from proxy.state import STATE, ProxyState
from proxy.trace_sink import TraceSink
from proxy.trace_writer import TraceWriter
from skillproxy.admin.routes import admin_app
from skillproxy.otlp_receiver import add_otlp_routes
from skillproxy.scrape import EXPOSITION, get_metrics, open_exposition
from skillproxy.ui import add_ui_routes
from store.worker import StoreWorker

log = logging.getLogger("skillproxy")

STORE = web.AppKey("skillproxy_store", StoreWorker)
SESSION = web.AppKey("skillproxy_session", aiohttp.ClientSession)
SINK = web.AppKey("skillproxy_sink", TraceSink)
WRITER = web.AppKey("skillproxy_writer", TraceWriter)
CACHE = web.AppKey("skillproxy_cache", SkillbookCache)
STALLS = web.AppKey("skillproxy_stalls", StallWatch)

Context = Callable[[web.Application], AsyncIterator[None]]


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=config.server.max_body_bytes)
    app.cleanup_ctx.extend(_contexts(config))
    add_routes(app)
    return app


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", get_metrics)
    add_ui_routes(app)
    app.add_subapp("/admin/", admin_app())
    add_otlp_routes(app)  # POST /otlp/v1/traces: a collector exports GenAI spans as traces
    for path in ("/v1/feedback", "/sb/{skillbook:[^/]+}/v1/feedback"):
        app.router.add_post(path, post_feedback)
        app.router.add_route("*", path, feedback_method_not_allowed)  # never forwarded
    plain = app.router.add_route("*", "/v1/{tail:.*}", handlers.proxy_v1)
    skillbook = app.router.add_route("*", "/sb/{skillbook}/v1/{tail:.*}", handlers.proxy_v1)
    skip_router(app, plain=plain, skillbook=skillbook, routed_tails=frozenset({"feedback"}))


def _contexts(config: Config) -> list[Context]:
    async def store(app: web.Application) -> AsyncIterator[None]:
        worker = StoreWorker(config.store.url, name="db")
        try:
            applied = await worker.run(lambda s: s.migrate())
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            app[STORE] = worker
            yield
        finally:
            worker.close()

    async def session(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = create_session(config.upstream)
        try:
            yield
        finally:
            await app[SESSION].close()

    async def sink(app: web.Application) -> AsyncIterator[None]:
        app[SINK] = TraceSink(config.store.url, config=config)
        try:
            await app[SINK].start()
            yield
        finally:
            await app[SINK].close()

    async def writer(app: web.Application) -> AsyncIterator[None]:
        app[WRITER] = TraceWriter(app[SINK], config.traces)
        app[WRITER].start()
        try:
            yield
        finally:
            await app[WRITER].close()

    async def cache(app: web.Application) -> AsyncIterator[None]:
        app[CACHE] = SkillbookCache(app[STORE], config.skillbook)
        try:
            await app[CACHE].refresh()
            app[CACHE].start()
            yield
        finally:
            await app[CACHE].close()

    async def stalls(app: web.Application) -> AsyncIterator[None]:
        app[STALLS] = StallWatch(config.upstream.read_timeout_s)
        app[STALLS].start()
        try:
            yield
        finally:
            await app[STALLS].close()

    async def feedback(app: web.Application) -> AsyncIterator[None]:
        async with FeedbackQueue(app[STORE]) as app[FEEDBACK]:  # drained before the store closes
            yield

    async def canaries(app: web.Application) -> AsyncIterator[None]:
        interval = config.skillbook.refresh_interval_ms / 1000  # as often as the cache looks
        async with CanaryWatch(app[STORE], app[CACHE], interval_s=interval):
            yield

    async def metrics(app: web.Application) -> AsyncIterator[None]:
        if config.metrics.enabled:  # a registry of the app's own: nothing to close
            app[EXPOSITION] = open_exposition(config, app[WRITER], app[STORE], app.get(FEEDBACK))
        yield

    async def serving(app: web.Application) -> AsyncIterator[None]:
        exposition = app.get(EXPOSITION)
        app[STATE] = ProxyState(
            config=config,
            session=app[SESSION],
            traces=app[WRITER],
            store=app[STORE],
            skillbooks=app[CACHE],
            stalls=app[STALLS],
            metrics=exposition.metrics if exposition is not None else None,
        )
        async with scheduled(config):
            yield

    return [store, session, sink, writer, cache, stalls, feedback, canaries, metrics, serving]
