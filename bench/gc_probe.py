"""`skillproxy serve` with the garbage collector watched: run by `gc_cost.py`, never by hand.

Every collection's generation and CPU time (of the thread that ran it) is added up and written
as JSON to `$GC_PROBE_OUT` twice a second. With `GC_PROBE_DEFAULT=1` the collector is left at
CPython's defaults (`proxy.runtime` sets only the switch interval), so the two runs differ in
nothing else.

    python bench/gc_probe.py serve --port ... (the usual `skillproxy serve` arguments)
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy import runtime
from skillproxy import cli

totals = {generation: {"collections": 0, "cpu_s": 0.0} for generation in range(3)}
_started = threading.local()


def _watch(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.at = time.thread_time()
        return
    entry = totals[info["generation"]]
    entry["collections"] += 1
    entry["cpu_s"] += time.thread_time() - _started.at


def _report(path: Path) -> None:
    while True:
        path.write_text(json.dumps(totals))
        time.sleep(0.5)


def _switch_interval_only(app: web.Application) -> None:
    sys.setswitchinterval(runtime.GIL_SWITCH_INTERVAL_S)


def main() -> None:
    if os.environ.get("GC_PROBE_DEFAULT") == "1":
        cli.tune_for_serving = _switch_interval_only  # type: ignore[attr-defined]
    gc.callbacks.append(_watch)
    out = Path(os.environ["GC_PROBE_OUT"])
    threading.Thread(target=_report, args=(out,), daemon=True).start()
    sys.exit(cli.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
