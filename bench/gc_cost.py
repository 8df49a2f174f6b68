"""What the garbage collector costs skillproxy per request, with CPython's defaults and as
`proxy.runtime` sets it (start-up heap frozen, young-generation threshold raised).

For each setting a fresh skillproxy (tracing on, 50 active skills) runs under `gc_probe.py`
and takes the load generator's 32 clients, non-streaming, for a fixed time; the probe adds up
every collection's CPU time. Printed: req/s, collections per generation, GC CPU µs per request.

    python bench/gc_cost.py [--duration 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from admin_api import seed_skills
from overhead import loadgen
from procs import fleet
from servers import SKILLPROXY_CMD, start_skillproxy, start_upstream

PROBE_CMD = SKILLPROXY_CMD.replace("-m skillproxy", "bench/gc_probe.py")
CLIENTS = 32
SETTINGS = {"CPython defaults": "1", "skillproxy serve": "0"}


def _totals(path: Path) -> dict[str, Any]:
    time.sleep(0.6)  # the probe writes twice a second
    totals: dict[str, Any] = json.loads(path.read_text())
    return totals


def measure(folder: Path, default: str, duration: float) -> str:
    out = folder / f"gc-{default}.json"
    with fleet(folder) as group:
        upstream = start_upstream(group)
        env = {"GC_PROBE_OUT": str(out), "GC_PROBE_DEFAULT": default}
        proxy = start_skillproxy(
            group, upstream, folder / f"gc-{default}.db", template=PROBE_CMD, env=env
        )
        seed_skills(proxy.port, 50)
        url = f"{proxy.base}/sb/bench/v1/chat/completions"
        loadgen(url, clients=CLIENTS, duration=1.0, warmup=0.5)
        before = _totals(out)
        result = loadgen(url, clients=CLIENTS, duration=duration, warmup=0.0)
        after = _totals(out)
    requests = result["all_requests"]
    counts = [after[g]["collections"] - before[g]["collections"] for g in ("0", "1", "2")]
    cpu_s = sum(after[g]["cpu_s"] - before[g]["cpu_s"] for g in ("0", "1", "2"))
    return (
        f"{result['req_per_s']:,.0f} req/s, collections (gen 0/1/2) "
        f"{counts[0]}/{counts[1]}/{counts[2]}, GC CPU {cpu_s * 1e6 / requests:.1f} us per request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for label, default in SETTINGS.items():
            line = measure(Path(folder), default, args.duration)
            print(f"{label:17s} {line}", flush=True)


if __name__ == "__main__":
    main()
