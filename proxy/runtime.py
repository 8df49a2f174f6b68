"""Interpreter settings for a serving process: the garbage collector and the GIL switch interval.

Under 32 clients (`python bench/gc_cost.py`), CPython's default collector cost the proxy about
25 µs of CPU per request: a young-generation pass every 700 net allocations walks the live
objects of every request in flight (about 2,000), and each full pass walked the ~65,000 objects
left by start-up (modules, pydantic models, the skillbook cache), pausing the loop ~30 ms. Two
settings take that under 1 µs:

- `gc.freeze()` once start-up is done moves everything alive then out of the collector's sight.
  Those objects live as long as the process anyway; a full pass now walks only what came later.
- A young-generation threshold of 10,000: a request's objects are freed by reference counting
  long before that many allocations go by, so most passes that the default would run find
  nothing but requests still in flight. Cyclic garbage still goes, in bounded batches.

The GIL switch interval: the database thread shares the GIL with the event loop; Python's
default 5 ms lets it stall a request that long after each of its syscalls.

Only `skillproxy serve` applies these (they are process-wide): tests and embedders that call
`create_app` keep their interpreter as they set it.
"""

from __future__ import annotations

import gc
import sys

from aiohttp import web

GIL_SWITCH_INTERVAL_S = 0.001
YOUNG_GENERATION_THRESHOLD = 10_000


def tune_for_serving(app: web.Application) -> None:
    """Set the switch interval and the collector's threshold now, freeze the heap at start-up."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
    app.on_startup.append(_freeze_startup_heap)


async def _freeze_startup_heap(app: web.Application) -> None:
    """Runs after the app's own start-up (cleanup contexts run first): collect, then freeze."""
    gc.collect()
    gc.freeze()
