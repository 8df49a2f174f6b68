"""What one running proxy holds: built once at start, shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from core.config import Config
from proxy.metrics import ProxyMetrics
from proxy.skillbook_cache import SkillbookCache
from proxy.stalls import StallWatch
from proxy.trace_writer import TraceWriter
from store.worker import StoreWorker


@dataclass(slots=True)
class ProxyState:
    config: Config
    session: aiohttp.ClientSession
    traces: TraceWriter
    store: StoreWorker
    """Reads and admin writes; trace rows are written by the trace sink process."""
    skillbooks: SkillbookCache
    stalls: StallWatch
    """Enforces `upstream.read_timeout_s` on every request waiting on the provider."""
    metrics: ProxyMetrics | None = None
    """Counts each finished request for /metrics; None with `metrics.enabled = false`."""


STATE = web.AppKey("skillproxy_state", ProxyState)
