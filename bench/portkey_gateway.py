"""Portkey's AI gateway (npm `@portkey-ai/gateway`) as a comparison point, on Node.js.

`ensure_installed()` runs `npm install @portkey-ai/gateway` once into `bench/.node-portkey`
(git-ignored; a stamp file remembers success). `start()` runs its Node server
(`build/start-server.js --port=N --headless`) the way its README's `npx @portkey-ai/gateway`
does, one process, default settings. The server listens on every interface and has no option
for the address, so a two-line preload (`loopback.mjs`, given to `node --import`) pins every
`listen` to 127.0.0.1, like everything else in the suite.

Portkey takes the provider and where it lives per request, in headers: `x-portkey-provider:
openai` and `x-portkey-custom-host: <fake provider>/v1` (127.0.0.1 is a trusted custom host by
default); the client's bearer token is passed on as the provider key. Only Chat Completions is
measured. Streaming is measured only if a check request streams: with Node 20 the gateway
answers a streamed chat request with `{"status":"failure","message":"Something went wrong"}`
and logs `TypeError: immutable` (it appends a header to the provider's fetch `Response`, whose
headers undici makes immutable), so then it is left out, and RESULTS.md says why.

Anything that goes wrong becomes a `PortkeyUnavailable` whose message says exactly why, so the
suite finishes and RESULTS.md can tell the reader.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from procs import BENCH, Fleet, Server, free_port, install_steps, log_tail

DIR = BENCH / ".node-portkey"
PACKAGE = "@portkey-ai/gateway"
PACKAGE_DIR = DIR / "node_modules" / "@portkey-ai" / "gateway"
SERVER_JS = PACKAGE_DIR / "build" / "start-server.js"
STAMP = DIR / ".bench-installed"
PRELOAD = DIR / "loopback.mjs"
INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 60.0
FORMATS = ("chat",)
LOOPBACK = """\
import net from "node:net";
// Pin every listen() to 127.0.0.1: start-server.js listens on all interfaces, with no option.
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const host = "127.0.0.1";
  if (typeof args[0] === "object" && args[0] !== null) args[0] = { ...args[0], host };
  else if (typeof args[0] === "number") args.splice(1, typeof args[1] === "string" ? 1 : 0, host);
  return listen.apply(this, args);
};
"""


class PortkeyUnavailable(Exception):
    """Portkey's gateway could not be installed or started; the message says why."""


def headers(upstream: str) -> dict[str, str]:
    """What a client sends so that Portkey relays to `upstream`'s Chat Completions."""
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{upstream}/v1"}


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise PortkeyUnavailable(
            "Node.js is not installed (`node` not on PATH); `make bench` installs Debian's "
            "`nodejs` and `npm` when it runs as root with apt-get, otherwise install them"
        )
    return node


def ensure_installed(log: Path) -> str:
    """Install once; return the installed version and Node's."""
    node = _node()
    if not STAMP.exists() or not SERVER_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise PortkeyUnavailable("`npm` is not on PATH (Debian's package `npm`)")
        DIR.mkdir(exist_ok=True)
        manifest = DIR / "package.json"
        if not manifest.exists():
            manifest.write_text('{"name": "bench-portkey", "private": true}\n')
        argv = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", PACKAGE]
        named = f"npm install {PACKAGE}"
        failed = install_steps([argv], log, INSTALL_TIMEOUT_S, cwd=DIR, name=named)
        if failed is not None:
            raise PortkeyUnavailable(failed)
        if not SERVER_JS.exists():
            raise PortkeyUnavailable(
                f"`{named}` finished but left no {SERVER_JS.relative_to(DIR)}: "
                + log_tail(log, 3).replace("\n", " | ")
            )
        STAMP.write_text(PACKAGE + "\n")
    PRELOAD.write_text(LOOPBACK)
    try:
        version = json.loads((PACKAGE_DIR / "package.json").read_text())["version"]
        found = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        STAMP.unlink(missing_ok=True)
        raise PortkeyUnavailable(f"{PACKAGE} is installed but unreadable: {exc}") from None
    return f"{version} on Node.js {found.stdout.strip()}"


def _check(base: str, upstream: str, stream: bool) -> str | None:
    """None if one chat request through Portkey answers 200 (and, streamed, ends in [DONE])."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        base + "/v1/chat/completions",
        data=json.dumps({**body, "stream": stream}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Bearer sk-bench",
            **headers(upstream),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            answer = resp.read()
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if stream:
        return None if b"[DONE]" in answer else f"no [DONE] in {answer[:200]!r}"
    return None if b'"choices"' in answer else f"no choices in {answer[:200]!r}"


def start(group: Fleet, upstream: str) -> tuple[Server, str | None]:
    """Start Portkey's gateway; return it and why streaming is left out (None if it works)."""
    node = _node()
    port = free_port()
    argv = [node, "--import", str(PRELOAD), str(SERVER_JS), f"--port={port}", "--headless"]
    try:
        server = group.start(
            "portkey", argv, port, ready_path="/", cwd=DIR, timeout=START_TIMEOUT_S
        )
    except (RuntimeError, OSError) as exc:
        raise PortkeyUnavailable(f"Portkey's gateway did not start: {exc}") from None
    problem = _check(server.base, upstream, stream=False)
    if problem:
        raise PortkeyUnavailable(f"Portkey's gateway answered a check request with {problem}")
    streamed = _check(server.base, upstream, stream=True)
    if streamed is None:
        return server, None
    logged = re.findall(r"\w*Error: [^\n]{0,120}", log_tail(server.log, 40))
    cause = f"; its log says `{logged[-1].strip()}`" if logged else ""
    return server, f"a streamed check request got {streamed}{cause}"
