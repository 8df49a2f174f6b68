"""Shared fixtures: a loopback-only network, the fake provider, and proxies started for real.

A proxy under test is the real application (`create_app`) on a real socket in its own thread,
pointed at the fake provider; clients are the real SDKs. Nothing is patched.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
# The CLI fits its tables to $COLUMNS; pytest-xdist's workers set it to 80, and the tests read
# the CLI's output as a pipe gets it, whole (the one test of truncation sets its own width).
os.environ.pop("COLUMNS", None)

from tests.fakes.fixtures import fake_provider
from tests.fakes.network_guard import install_loopback_guard
from tests.harness import cli, make_proxy, proxy

install_loopback_guard()

__all__ = ["cli", "fake_provider", "make_proxy", "proxy"]
