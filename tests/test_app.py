"""skillproxy/app.py: each resource opens in its own cleanup context, so a failed start-up
closes exactly what was already open (no client session left unclosed, no trace sink child
left running), and a normal shutdown closes everything."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from skillproxy.app import CACHE, SESSION, SINK, STALLS, STORE, WRITER, create_app
from tests.harness import proxy_config


class StartFailed(Exception):
    pass


def sink_children(url: str) -> list[int]:
    """Live trace sink processes started for `url` (by their command line)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if b"proxy.trace_sink" in argv and url.encode() in argv and state != "Z":
            found.append(int(entry))
    return found


def wait_gone(url: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := sink_children(url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


async def fails(app: web.Application) -> AsyncIterator[None]:
    raise StartFailed("a later resource could not open")
    yield  # pragma: no cover - makes this an async generator


@pytest.mark.parametrize("position", [2, 3, 6])
async def test_a_failed_start_closes_what_was_already_open(tmp_path: Path, position: int) -> None:
    """Fail right after the session (2), after the trace sink (3), or after everything but the
    serving state (6): what opened before the failure is closed, nothing after it opened."""
    config = proxy_config(tmp_path, "http://127.0.0.1:9")
    app = create_app(config)
    app.cleanup_ctx.insert(position, fails)
    runner = web.AppRunner(app)
    with pytest.raises(StartFailed):
        await runner.setup()
    await runner.cleanup()  # what `web.run_app` does when setup raises
    assert app[SESSION].closed
    assert wait_gone(config.store.url) == []
    opened = {key for key in (STORE, SESSION, SINK, WRITER, CACHE, STALLS) if key in app}
    expected = {STORE, SESSION, SINK, WRITER, CACHE, STALLS}
    if position <= 3:
        expected -= {WRITER, CACHE, STALLS}
    if position == 2:
        expected -= {SINK}
    assert opened == expected


async def test_a_normal_start_and_stop_closes_everything(tmp_path: Path) -> None:
    config = proxy_config(tmp_path, "http://127.0.0.1:9")
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    assert sink_children(config.store.url), "the trace sink runs while the app is up"
    session = app[SESSION]
    await runner.cleanup()
    assert session.closed
    assert wait_gone(config.store.url) == []
