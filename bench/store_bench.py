"""The store under volume: trace writer throughput, and admin reads at a million traces.

The writer figure is the store's trace insert alone, fed prebuilt rows in batches of the
configured `traces.batch_size`, on a fresh file: what the trace thread can commit per second.
The million-row file is generated with the same function in large batches, then a real
skillproxy is started on it and the admin API is timed over a keep-alive connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from admin_api import SKILLBOOK, Admin, seed_skills
from procs import Fleet, Server
from servers import start_skillproxy
from synthetic import batches, created_at, values

from core.config import TracesConfig
from store import open_store

GENERATION_BATCH = 50_000
BATCH_SIZE = TracesConfig().batch_size


def _fresh(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def timed_inserts(
    path: Path, total: int, batch_size: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds, by `clock`, that the store takes to write `total` synthetic rows into the
    database at `path` in batches of `batch_size` (the rows are built before the clock starts;
    turning each into a tuple is timed, as the store's dict-taking insert used to do)."""
    store = open_store(str(path))
    try:
        store.migrate()
        prepared = list(batches(total, batch_size))
        started = clock()
        for batch in prepared:
            store.traces.insert_values(values(batch))
        return clock() - started
    finally:
        store.close()


def writer_rows_per_s(path: Path, total: int, batch_size: int = BATCH_SIZE) -> float:
    _fresh(path)
    elapsed = timed_inserts(path, total, batch_size)
    _fresh(path)
    return total / elapsed


def generate(path: Path, total: int) -> float:
    """Write `total` synthetic traces into a new database; return the seconds it took."""
    _fresh(path)
    started = time.perf_counter()
    store = open_store(str(path))
    try:
        store.migrate()
        for batch in batches(total, GENERATION_BATCH):
            store.traces.insert_values(values(batch))
        if store.traces.count() != total:
            raise RuntimeError(f"generated {store.traces.count()} traces, wanted {total}")
    finally:
        store.close()
    return time.perf_counter() - started


def admin_paths(total: int) -> dict[str, str]:
    deep = created_at(total // 10)  # `before` 90% of the way back in time
    return {
        "traces, first page": "/traces?limit=50",
        "traces, deep page (before = 90% back)": f"/traces?limit=50&before={deep}",
        "traces of one skillbook, first page": "/traces?limit=50&skillbook=sales",
        f"skills of skillbook {SKILLBOOK!r}": f"/skillbooks/{SKILLBOOK}/skills",
    }


def admin_latency(
    group: Fleet,
    upstream: Server,
    db: Path,
    total: int,
    *,
    repeat: int,
    samples: int,
    skills: int,
    progress: Callable[[str], None],
) -> dict[str, list[float]]:
    """p50 ms of each admin read, one value per repeat, against skillproxy on `db`."""
    proxy = start_skillproxy(group, upstream, db, name="skillproxy-store")
    seed_skills(proxy.port, skills)
    admin = Admin(proxy.port)
    results: dict[str, list[float]] = {label: [] for label in admin_paths(total)}
    try:
        for _ in range(repeat):
            for label, path in admin_paths(total).items():
                results[label].append(admin.p50_ms(path, samples))
        progress("admin reads: " + ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in results.items()))
    finally:
        admin.close()
        group.stop(proxy)
    return results
