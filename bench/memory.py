"""skillproxy's memory over a long run, and what each exchange costs on disk.

A fresh skillproxy (logging on, 50 active skills injected) takes `checkpoints[-1]` requests from
the load generator in count mode, 32 clients, non-streaming; its VmRSS is read after start and
at each checkpoint. Then it is stopped gracefully (the trace queue drained, the WAL checkpointed)
and the database file plus any WAL left, divided by the traces stored, gives bytes per exchange.
`tiktoken_mb` measures, in a process of its own, what loading each token encoding costs: the
first request for a model family loads that family's encoding.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from admin_api import SKILLBOOK, seed_skills
from overhead import loadgen
from procs import ROOT, Fleet, Server, rss_bytes
from servers import start_skillproxy

from core.tokens import ENCODINGS

CLIENTS = 32
MB = 1024 * 1024
TIKTOKEN_PROBE = """
import sys
from pathlib import Path
def rss():
    line = [x for x in Path("/proc/self/status").read_text().splitlines() if x[:6] == "VmRSS:"]
    return int(line[0].split()[1]) * 1024
from core.tokens import get_encoding
before = rss()
get_encoding(sys.argv[1]).encode("warm")
print((rss() - before) / 1048576)
"""


@dataclass
class MemoryRun:
    rss_start_mb: float = 0.0
    rss_seeded_mb: float = 0.0
    rss_mb: dict[int, float] = field(default_factory=dict)  # requests so far -> RSS
    req_per_s: list[float] = field(default_factory=list)
    traces: int = 0
    requests: int = 0
    db_bytes: int = 0
    exit_code: int | None = None

    @property
    def bytes_per_exchange(self) -> float:
        return self.db_bytes / max(self.traces, 1)


def _db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def _count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM traces").fetchone()[0])


def run(
    group: Fleet,
    upstream: Server,
    db: Path,
    checkpoints: list[int],
    *,
    skills: int,
    progress: Callable[[str], None],
) -> MemoryRun:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    proxy = start_skillproxy(group, upstream, db, name="skillproxy-memory")
    result = MemoryRun(rss_start_mb=rss_bytes(proxy.proc.pid) / MB)
    seed_skills(proxy.port, skills)
    result.rss_seeded_mb = rss_bytes(proxy.proc.pid) / MB
    url = f"{proxy.base}/sb/{SKILLBOOK}/v1/chat/completions"
    done = 0
    for checkpoint in checkpoints:
        report = loadgen(url, clients=CLIENTS, requests=checkpoint - done, timeout=900)
        done = checkpoint
        result.req_per_s.append(float(report["req_per_s"]))
        result.rss_mb[checkpoint] = rss_bytes(proxy.proc.pid) / MB
        progress(f"memory: {checkpoint:,} requests, RSS {result.rss_mb[checkpoint]:.1f} MB")
    result.requests = done
    result.exit_code = group.stop(proxy)
    result.db_bytes = _db_bytes(db)  # before anything else opens the file
    result.traces = _count(db)
    return result


def tiktoken_mb() -> dict[str, float]:
    """RSS that loading each token encoding the proxy may use adds to a fresh Python."""
    found: dict[str, float] = {}
    for name in ENCODINGS:
        argv = [sys.executable, "-c", TIKTOKEN_PROBE, name]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"tiktoken probe failed: {done.stderr[-500:]}")
        found[name] = float(done.stdout.strip().splitlines()[-1])
    return found
