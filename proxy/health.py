"""`GET /healthz`: can this proxy do all its work, or only forward?

    {"status": "ok", "traces": {...}, "feedback": {...}}
    {"status": "degraded", "reason": "store: the database ... is locked ...", "traces": ...}

Degraded while the store fails (a cheap probe through the store worker, at most one a second
however often this is polled: `StoreWorker.health`) or while the trace writer's last attempts
to hand traces to the sink failed (from the counters it keeps, `state.traces.stats`); "ok"
again once both work.

The status code stays 200 when degraded. A proxy whose store is down still forwards every
request (the skillbook is served from its cache, traces wait and are retried), so it is not
unhealthy in the sense a load balancer acts on: most take any non-2xx as "remove from the
pool", and every proxy sharing the broken database would be pulled at once, turning a storage
problem into an outage of the agents' traffic. Monitoring reads `status` and `reason`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from proxy.feedback_queue import FEEDBACK
from proxy.state import STATE
from proxy.trace_writer import TraceStats, TraceWriter


@dataclass(slots=True)
class _SinkSeen:
    """The writer's counters at the last look, and what they said then."""

    errors: int = 0
    batches: int = 0
    lost: int = 0
    failing: bool = False


_seen: weakref.WeakKeyDictionary[TraceWriter, _SinkSeen] = weakref.WeakKeyDictionary()


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    reasons = []
    problem = await state.store.health()
    if problem is not None:
        reasons.append(f"store: {problem}")
    stats = state.traces.stats
    if sink_failing(stats, _seen.setdefault(state.traces, _SinkSeen())):
        reasons.append(
            f"traces: writing to the store fails ({stats.store_errors} failed attempts, "
            f"{stats.lost} traces lost so far)"
        )
    body: dict[str, Any] = {"status": "degraded" if reasons else "ok"}
    if reasons:
        body["reason"] = "; ".join(reasons)
    body["traces"] = stats.as_dict()
    queue = request.app.get(FEEDBACK)
    if queue is not None:
        body["feedback"] = queue.stats.as_dict()
    return web.json_response(body)


def sink_failing(stats: TraceStats, seen: _SinkSeen) -> bool:
    """Whether the writer's latest attempt failed, judged from what moved since the last look:
    failures and no batch, failing; batches and no failure, working; both, a batch given up
    (`lost`) is failing, and otherwise the retries got through; nothing, as before."""
    errors, batches = stats.store_errors > seen.errors, stats.batches > seen.batches
    lost = stats.lost > seen.lost
    if errors and not batches:
        seen.failing = True
    elif batches and not errors:
        seen.failing = False
    elif errors and batches:
        seen.failing = lost
    seen.errors, seen.batches, seen.lost = stats.store_errors, stats.batches, stats.lost
    return seen.failing
