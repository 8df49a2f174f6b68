"""`GET /metrics`: the Prometheus exposition, and who may read it.

Who: the figures name skillbooks, models, traffic and the learner's spend, so /metrics is
not open by default. With `metrics.token` or `admin.token` set it wants
`Authorization: Bearer <either>` (Prometheus sends one from `authorization.credentials_file`);
`metrics.token` exists so a scraper need not hold the token that edits skills. With neither set
it answers only clients on loopback, by the admin API's own rule (`local_client_refusal`).

How: the registry belongs to the app (`open_exposition`, called from the app factory). Before
rendering, the store's health is probed (as /healthz does, at most once a second) and the
learner's figures are re-read on the store worker's thread; the exposition itself is written
on a thread of the loop's default executor, so a scrape never holds the event loop for the
time it takes to format a few hundred series. `metrics.enabled = false` makes this a 404.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from core.config import Config
from proxy.credentials import secret_digest
from proxy.feedback_queue import FeedbackQueue
from proxy.metrics import ProxyMetrics
from proxy.pipeline_metrics import LearnerFigures, PipelineCollector
from proxy.state import STATE
from proxy.trace_writer import TraceWriter
from skillproxy.admin.guard import admin_error, local_client_refusal
from store.worker import StoreWorker


@dataclass(frozen=True, slots=True)
class Exposition:
    """What /metrics reads: the registry (inside `metrics`) and what refreshes before a scrape."""

    metrics: ProxyMetrics
    learner: LearnerFigures
    store: StoreWorker


EXPOSITION = web.AppKey("skillproxy_exposition", Exposition)


def open_exposition(
    config: Config, writer: TraceWriter, store: StoreWorker, feedback: FeedbackQueue | None
) -> Exposition:
    metrics = ProxyMetrics(config.metrics, config.server.default_skillbook)
    learner = LearnerFigures(metrics.skillbooks)
    registry = metrics.registry
    registry.register(learner)
    registry.register(PipelineCollector(writer, store, feedback, learner, metrics))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return Exposition(metrics, learner, store)


async def get_metrics(request: web.Request) -> web.Response:
    exposition = request.app.get(EXPOSITION)
    if exposition is None:
        return admin_error(404, "Metrics are off (metrics.enabled = false).", "not_found")
    refused = scrape_refusal(request, request.app[STATE].config)
    if refused is not None:
        return refused
    await exposition.store.health()
    await exposition.learner.refresh(exposition.store)
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(None, encode, exposition.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


def scrape_refusal(request: web.Request, config: Config) -> web.Response | None:
    """The answer refusing this scrape, or None when it may read the metrics."""
    tokens = [token for token in (config.metrics.token, config.admin.token) if token]
    if not tokens:
        refusal = local_client_refusal(request, config.server.trusted_proxies)
        if refusal is None:
            return None
        return admin_error(
            403,
            "/metrics answers only clients on loopback while neither metrics.token nor "
            f"admin.token is set: {refusal}.",
            "metrics_loopback_only",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return admin_error(
            401, "Send the metrics token as 'Authorization: Bearer <token>'.", "missing_token"
        )
    digest = secret_digest(given.strip())
    if not any(hmac.compare_digest(digest, secret_digest(token)) for token in tokens):
        return admin_error(403, "The metrics token is not valid.", "invalid_token")
    return None
