"""`skillproxy serve` tunes the interpreter once start-up is done (in a child: it is global)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import asyncio, gc, sys
from aiohttp import web
from proxy.runtime import YOUNG_GENERATION_THRESHOLD, tune_for_serving

async def main():
    app = web.Application()
    tune_for_serving(app)
    before = gc.get_freeze_count()
    runner = web.AppRunner(app)
    await runner.setup()  # runs the app's start-up signals
    print(before, gc.get_freeze_count() > 0, gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD,
          sys.getswitchinterval())
    await runner.cleanup()

asyncio.run(main())
"""


def test_serve_freezes_the_startup_heap_and_raises_the_young_threshold() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    before, frozen, threshold, interval = done.stdout.split()
    assert before == "0" and frozen == "True" and threshold == "True"
    assert float(interval) == 0.001
