"""Starting real proxies for tests, and reading what they stored."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlite_utils

from core.config import Config, load_config
from skillproxy.app import create_app
from store import TRACE_COLUMNS, open_store
from store.records import as_json
from store.sqlite.db import open_database
from tests.fakes.provider import FakeProvider
from tests.fakes.server_thread import ServerThread

ADMIN_TOKEN = "test-admin-token"


@dataclass
class RunningProxy:
    server: ServerThread
    config: Config
    provider: FakeProvider
    provider_url: str
    clients: list[Any] = field(default_factory=list)
    """SDK clients made through `openai()`/`anthropic()`, closed when the test ends."""

    def openai(self, skillbook: str | None = None, key: str = "k", **kw: Any) -> openai.OpenAI:
        base = self.sb(skillbook) if skillbook else self.v1
        client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, **kw)
        self.clients.append(client)
        return client

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A request to the admin API with the test token."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", **kw.pop("headers", {})}
        return httpx.request(method, f"{self.url}/admin{path}", headers=headers, **kw)

    def add_skill(self, skillbook: str, section: str, content: str, *, approve: bool = True) -> str:
        """Create a skill through the admin API (approved unless told not to); its id."""
        created = self.admin(
            "POST", f"/skillbooks/{skillbook}/skills", json={"section": section, "content": content}
        )
        assert created.status_code == 201, created.text
        skill_id: str = created.json()["id"]
        if approve:
            assert self.admin("POST", f"/skills/{skill_id}/approve").status_code == 200
        return skill_id

    def anthropic(
        self, skillbook: str | None = None, key: str = "k", **kw: Any
    ) -> anthropic.Anthropic:
        base = f"{self.url}/sb/{skillbook}" if skillbook else self.url
        client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0, **kw)
        self.clients.append(client)
        return client

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def v1(self) -> str:
        return self.server.url + "/v1"

    def sb(self, skillbook: str) -> str:
        return f"{self.server.url}/sb/{skillbook}/v1"

    def db(self) -> sqlite_utils.Database:
        """The SQLite file itself, for tests that inspect the tables or break them on purpose."""
        return open_database(self.config.store.location.path)

    def traces(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least `count` traces are stored; oldest first, bodies decoded."""
        db, store = self.db(), open_store(self.config.store.url)
        try:
            deadline = time.monotonic() + timeout
            while True:
                ids = [r[0] for r in db.execute("SELECT id FROM traces ORDER BY created_at, id")]
                if len(ids) >= count or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert len(ids) >= count, f"expected {count} traces, found {len(ids)}"
            return [as_json(t) for t in (store.traces.get(i) for i in ids) if t is not None]
        finally:
            db.conn.close()
            store.close()

    def trace(self, trace_id: str, timeout: float = 10.0) -> dict[str, Any]:
        store = open_store(self.config.store.url)
        try:
            deadline = time.monotonic() + timeout
            while (row := store.traces.get(trace_id)) is None:
                assert time.monotonic() < deadline, f"trace {trace_id} never stored"
                time.sleep(0.02)
            return dict(as_json(row))
        finally:
            store.close()


def proxy_config(tmp_path: Path, provider_url: str, **sections: dict[str, Any]) -> Config:
    overrides: dict[str, dict[str, Any]] = {
        "upstream": {
            "openai_base_url": provider_url + "/v1",
            "anthropic_base_url": provider_url,
        },
        "store": {"url": f"sqlite:///{tmp_path / 'skillproxy.db'}"},
        "traces": {"flush_interval_ms": 10},
        "admin": {"token": ADMIN_TOKEN},
        "skillbook": {"refresh_interval_ms": 50},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(environ={}, overrides=overrides)


@pytest.fixture
def make_proxy(
    tmp_path: Path, fake_provider: tuple[FakeProvider, ServerThread]
) -> Iterator[Callable[..., RunningProxy]]:
    """`make_proxy(traces={"queue_size": 1}, ...)` starts a proxy with those settings."""
    provider, provider_server = fake_provider
    started: list[RunningProxy] = []

    def start(**sections: dict[str, Any]) -> RunningProxy:
        config = proxy_config(tmp_path, provider_server.url, **sections)

        async def build() -> Any:
            return create_app(config)

        server = ServerThread(build, handler_cancellation=True).start()
        running = RunningProxy(server, config, provider, provider_server.url)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        for client in running.clients:
            client.close()
        running.server.stop()


@pytest.fixture
def proxy(make_proxy: Callable[..., RunningProxy]) -> RunningProxy:
    return make_proxy()


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(proxy: RunningProxy, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`cli("skills", "list")` runs the command against `proxy`: (exit code, stdout, stderr)."""
    from skillproxy.cli import main  # the command line, for the tests that drive it

    def run(*argv: str, token: str = ADMIN_TOKEN) -> tuple[int, str, str]:
        code = main([*argv, "--url", proxy.url, "--token", token])
        out, err = capsys.readouterr()
        return code, out, err

    return run


__all__ = [
    "ADMIN_TOKEN", "TRACE_COLUMNS", "Cli", "RunningProxy", "cli", "make_proxy", "proxy",
    "proxy_config",
    "sink_pid",
    "sink_pids",
    "wait_for",
]  # fmt: skip


def sink_pids(store_url: str) -> list[int]:
    """The pids of the trace sink processes writing to `store_url` (found in /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"proxy.trace_sink" in cmdline and store_url.encode() in cmdline:
                pids.append(int(entry))
    return pids


def sink_pid(proxy: RunningProxy) -> int:
    """The pid of the proxy's trace sink process."""
    pids = sink_pids(proxy.config.store.url)
    if not pids:
        raise AssertionError("no trace sink process")
    return pids[0]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Until `check()` holds, polling every 50 ms; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
