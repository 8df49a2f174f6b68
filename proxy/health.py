"""`GET /healthz`: can this proxy do all its work, or only forward?

    {"status": "ok", "traces": {...}, "feedback": {...}}
    {"status": "degraded", "reason": "store: the database ... is locked ...", "traces": ...}

Degraded while the store fails (a cheap probe through the store worker, at most one a second
however often this is polled: `StoreWorker.health`) or while the trace writer's last attempts
to hand traces to the sink failed (`TraceWriter.failing`); "ok" again once both work.

The status code stays 200 when degraded. A proxy whose store is down still forwards every
request (the skillbook is served from its cache, traces wait and are retried), so it is not
unhealthy in the sense a load balancer acts on: most take any non-2xx as "remove from the
pool", and every proxy sharing the broken database would be pulled at once, turning a storage
problem into an outage of the agents' traffic. Monitoring reads `status` and `reason`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.feedback_queue import FEEDBACK
from proxy.state import STATE


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    reasons = []
    problem = await state.store.health()
    if problem is not None:
        reasons.append(f"store: {problem}")
    stats = state.traces.stats
    if state.traces.failing:
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
