"""Run an aiohttp app on 127.0.0.1 in a background thread with its own event loop.

Tests of both kinds need real sockets: sync tests cannot await a server, and async tests
must not share their loop with the server they talk to (a blocked test would block the
server too). So every server gets a private thread and loop; the test only sees a URL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

AppSource = web.Application | Callable[[], Awaitable[web.Application]]


class ServerThread:
    """Serve `app` on an ephemeral loopback port until `stop()`.

    `app` may be an application or a coroutine factory; use a factory when the app must be
    built inside the server's loop (for example because it opens a ClientSession).
    `runner_options` go to `web.AppRunner` (e.g. `handler_cancellation=True`).
    """

    def __init__(
        self,
        app: AppSource,
        *,
        host: str = "127.0.0.1",
        shutdown_timeout: float = 5.0,
        startup_timeout: float = 10.0,
        **runner_options: Any,
    ) -> None:
        self._source = app
        self._runner_options = runner_options
        self._host = host
        self._shutdown_timeout = shutdown_timeout
        self._startup_timeout = startup_timeout
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> Self:
        """Start serving; block until the socket listens (or re-raise the startup error)."""
        self._thread = threading.Thread(target=self._run, name=f"server-{id(self):x}", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._startup_timeout):
            raise TimeoutError("server thread did not start listening in time")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self) -> None:
        """Run the app's shutdown and cleanup on its own loop, then join the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        thread.join(self._shutdown_timeout + 5.0)
        self._thread = None
        if thread.is_alive():
            raise RuntimeError("server thread did not stop")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = self._source if isinstance(self._source, web.Application) else await self._source()
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=self._shutdown_timeout, **self._runner_options
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stopping.wait()
            # Let accepts already under way finish first: on Python 3.11 a connection
            # accepted after the listening socket closes is leaked (AssertionError in
            # asyncio's Server._attach), which `filterwarnings = error` turns into a failure.
            await asyncio.sleep(0.01)
        finally:
            await runner.cleanup()
