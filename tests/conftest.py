"""Shared fixtures: a loopback-only network, the fake provider, and proxies started for real.

A proxy under test is the real application (`create_app`) on a real socket in its own thread,
pointed at the fake provider; clients are the real SDKs. Nothing is patched.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Iterator

import pytest

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
# The CLI fits its tables to $COLUMNS; pytest-xdist's workers set it to 80, and the tests read
# the CLI's output as a pipe gets it, whole (the one test of truncation sets its own width).
os.environ.pop("COLUMNS", None)

from tests.fakes.fixtures import fake_provider
from tests.fakes.network_guard import install_loopback_guard
from tests.harness import cli, make_proxy, proxy

install_loopback_guard()

__all__ = ["cli", "fake_provider", "make_proxy", "proxy"]


@pytest.fixture(autouse=True)
def _close_a_loop_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """litellm's sync completion, called on the main thread, leaves an event loop set there.
    Left open, it is collected during some later test, whose "unclosed event loop" warning
    then fails that unrelated test (which one depends on the order: under xdist, a fuzz test).
    After a sync test, such a loop is closed here; async tests' loops are pytest-asyncio's."""
    yield
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        return
    if threading.current_thread() is not threading.main_thread():
        return
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)  # no public peek
    loop = getattr(local, "_loop", None)
    if isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_running():
        if not loop.is_closed():
            loop.close()
        asyncio.set_event_loop(None)
