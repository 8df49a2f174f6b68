"""Pytest fixtures for the fake provider; conftest.py imports them so every test can ask."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.provider import FakeProvider
from tests.fakes.server_thread import ServerThread


@pytest.fixture
def fake_provider() -> Iterator[tuple[FakeProvider, ServerThread]]:
    """A fresh provider served on its own loopback port for one test."""
    provider = FakeProvider()
    with ServerThread(provider.app()) as server:
        yield provider, server
