"""skillproxy under cProfile for the hardest cell (32 clients, non-streaming), top functions.

cProfile sees the event loop's thread only; the trace writer's database thread is not in it.
Profiling slows every Python call, so the req/s printed beside the profile is not comparable
with the unprofiled tables; the shares of time are what explain a miss.
"""

from __future__ import annotations

import pstats
from pathlib import Path

from admin_api import SKILLBOOK, seed_skills
from overhead import loadgen
from procs import ROOT, Fleet, Server
from report import table
from servers import start_skillproxy

CLIENTS = 32
TOP = 25
OURS = (ROOT / "proxy", ROOT / "store")
AREAS = (
    ("aiohttp, multidict, yarl", ("/aiohttp/", "/multidict/", "/yarl/")),
    ("asyncio", ("/asyncio/",)),
    ("json", ("/json/",)),
)


def _where(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if filename == "~":  # a built-in
        return f"`{func}`"
    path = Path(filename)
    shown = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else "/".join(path.parts[-2:])
    return f"`{func}` {shown}:{line}"


def _area(key: tuple[str, int, str]) -> str:
    filename, _, func = key
    if filename == "~":  # built-ins: name them by what they do
        for word, label in (("poll", "waiting in epoll (idle)"), ("socket", "socket send/recv")):
            if word in func:
                return label
        return "json" if "json" in func else "other built-ins"
    if any(Path(filename).is_relative_to(folder) for folder in OURS):
        return "skillproxy's own code (proxy/, store/)"
    for label, marks in AREAS:
        if any(mark in filename for mark in marks):
            return label
    return "other Python (stdlib, imports)"


def by_area(
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, object]],
) -> list[str]:
    totals: dict[str, float] = {}
    for key, (_, _, tt, _, _) in entries.items():
        totals[_area(key)] = totals.get(_area(key), 0.0) + tt
    whole = sum(totals.values()) or 1.0
    rows = [
        [area, f"{tt:.3f}", f"{100 * tt / whole:.1f}"]
        for area, tt in sorted(totals.items(), key=lambda item: item[1], reverse=True)
    ]
    return table(["where", "tottime s", "% of tottime"], rows)


def run(
    group: Fleet, upstream: Server, workdir: Path, *, duration: float, warmup: float, skills: int
) -> tuple[float, list[str]]:
    """Return the profiled run's req/s and the top functions by total (own) time."""
    output = workdir / "skillproxy.prof"
    proxy = start_skillproxy(
        group, upstream, workdir / "profile.db", name="skillproxy-profile", profile_to=output
    )
    seed_skills(proxy.port, skills)
    url = f"{proxy.base}/sb/{SKILLBOOK}/v1/chat/completions"
    result = loadgen(url, clients=CLIENTS, duration=duration, warmup=warmup)
    group.stop(proxy)
    if not output.exists():
        raise RuntimeError(f"cProfile wrote no {output.name}; see {proxy.log}")
    stats = pstats.Stats(str(output))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values()) or 1.0
    top = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:TOP]
    rows = [
        [
            _where(key),
            f"{nc:,}",
            f"{tt:.3f}",
            f"{100 * tt / total:.1f}",
            f"{ct:.3f}",
            f"{1e6 * tt / max(nc, 1):.1f}",
        ]
        for key, (_, nc, tt, ct, _) in top
    ]
    headers = ["function", "calls", "tottime s", "% of tottime", "cumtime s", "us per call"]
    return float(result["req_per_s"]), [*by_area(entries), "", *table(headers, rows)]
