"""The hardening fault matrix: hostile, malformed and unlucky traffic against a running proxy.

    .venv/bin/python bench/faults.py [--keep DIR]

Starts a recording fake provider (in this process) and a real `python -m skillproxy serve` on
127.0.0.1 with a fresh store in a temporary folder, seeds one approved skill, then runs each
probe and prints one line per probe, `PASS|FAIL  <probe>  <detail>`, and finally
`N survived, M failed` (exit status 1 if any failed). Requests are written byte for byte over
raw sockets, so no client library repairs them first. Every wait is bounded, only loopback is
used, and the proxy is stopped however the run ends (Ctrl-C and SIGTERM included). `--keep DIR`
leaves the store and the proxy's log in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from admin_api import skill_text
from aiohttp import web
from procs import Fleet, Server, fleet, free_port, log_tail
from servers import SKILLPROXY_CMD, skillproxy_argv
from upstream import COMPLETION, MESSAGE, RESPONSE

TOKEN = "faults"
SKILLBOOK = "faults"
RULE = "When a customer asks to return an item, verify the return window before asking for details."
BODY_TIMEOUT_S = 2.0
PROBE_TIMEOUT_S = 90.0
STORED_WITHIN_S = 20.0
Header = tuple[str | bytes, str | bytes]


# --------------------------------------------------------------------------- the fake provider


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Provider:
    """Answers every route (the three formats with real bodies, anything else an empty list)
    and keeps what it was sent, raw path and headers included."""

    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.raw_headers}
        self.seen.append(Seen(request.method, request.raw_path, headers, body))
        tail = request.path
        reply = {"/v1/chat/completions": COMPLETION, "/v1/messages": MESSAGE}.get(tail)
        reply = reply or (RESPONSE if tail == "/v1/responses" else b'{"object":"list","data":[]}')
        return web.Response(body=reply, content_type="application/json")

    def sent(self, probe: str) -> list[Seen]:
        return [s for s in self.seen if s.headers.get("x-probe") == probe]


# --------------------------------------------------------------------------- raw HTTP


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> Any:
        return json.loads(self.body)

    def error_code(self) -> str:
        """`error.code` (else `error.type`) of a JSON error body; "" if the body is not one."""
        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
            error = self.json()["error"]
            return str(error.get("code") or error.get("type") or "?")
        return ""

    @property
    def refused_badly(self) -> bool:
        """A 5xx, or a 4xx whose body is not a JSON error."""
        return self.status >= 500 or (self.status >= 400 and not self.error_code())

    def __str__(self) -> str:
        if self.status < 400:
            return str(self.status)
        return f"{self.status} {self.error_code() or f'(body {self.body[:60]!r})'}"


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        body = await reader.read()
    return Reply(int(lines[0].split()[1]), headers, body)


def request_bytes(
    port: int, method: str, target: str, headers: Sequence[Header], body: bytes
) -> bytes:
    def raw(value: str | bytes) -> bytes:
        return value if isinstance(value, bytes) else value.encode("latin-1")

    lines = [f"{method} {target} HTTP/1.1".encode(), f"Host: 127.0.0.1:{port}".encode()]
    lines += [raw(k) + b": " + raw(v) for k, v in headers]
    lines += [f"Content-Length: {len(body)}".encode(), b"Connection: close", b"", b""]
    return b"\r\n".join(lines) + body


async def send(
    port: int,
    method: str,
    target: str,
    *,
    headers: Sequence[Header] = (),
    body: bytes = b"",
    timeout: float = 30.0,
) -> Reply:
    """One request, exactly as given (path, header bytes, body), on its own connection."""

    async def exchange() -> Reply:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request_bytes(port, method, target, headers, body))
            await writer.drain()
            return await read_reply(reader)
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)


JSON = ("Content-Type", "application/json")


def chat(user: str = '"Where is my order?"', *, model: str = '"gpt-4o-mini"') -> bytes:
    """A Chat Completions body with a system message; `user` and `model` are raw JSON."""
    return (
        f'{{"model":{model},"messages":[{{"role":"system","content":"Be brief."}},'
        f'{{"role":"user","content":{user}}}]}}'
    ).encode()


# --------------------------------------------------------------------------- the run


@dataclass
class Run:
    port: int
    provider: Provider
    db: Path
    server: Server
    accepted_feedback: list[str] = field(default_factory=list)
    locked_trace: str = ""
    lock: sqlite3.Connection | None = None

    async def admin(self, method: str, path: str, body: object = None) -> Reply:
        headers: list[Header] = [("Authorization", f"Bearer {TOKEN}"), JSON]
        data = b"" if body is None else json.dumps(body).encode()
        return await send(self.port, method, "/admin" + path, headers=headers, body=data)

    async def post(
        self, target: str, body: bytes, probe: str, *extra: Header, timeout: float = 30.0
    ) -> Reply:
        headers = [JSON, ("X-Probe", probe), *extra]
        return await send(self.port, "POST", target, headers=headers, body=body, timeout=timeout)

    async def stored_via_admin(self, trace_id: str, within: float = STORED_WITHIN_S) -> Any:
        """The trace as GET /admin/traces/{id} shows it, once written; None if it never is."""
        if not trace_id:
            return None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            reply = await self.admin("GET", f"/traces/{trace_id}")
            if reply.status == 200:
                return reply.json()
            await asyncio.sleep(0.2)
        return None

    def stored_ids(self, table: str = "traces", column: str = "id") -> set[str]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
            conn.execute("PRAGMA busy_timeout = 5000")
            return {str(r[0]) for r in conn.execute(f"SELECT {column} FROM {table}")}

    async def wait_stored(self, ids: set[str], within: float = STORED_WITHIN_S) -> set[str]:
        """Which of `ids` are still not in the traces table after `within` seconds."""
        deadline = time.monotonic() + within
        missing = set(ids)
        while missing and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            missing -= await asyncio.to_thread(self.stored_ids)
        return missing


Outcome = tuple[bool, str]
Probe = Callable[[Run], Awaitable[Outcome]]
PROBES: list[tuple[str, Probe]] = []


def probe(name: str) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        PROBES.append((name, fn))
        return fn

    return register


async def forwarded_and_traced(run: Run, reply: Reply, name: str, want: int = 200) -> Outcome:
    if reply.status != want:
        return False, f"answered {reply}, expected {want}"
    trace_id = reply.headers.get("x-trace-id", "")
    if not run.provider.sent(name):
        return False, f"{reply}, but the provider never received it"
    if await run.stored_via_admin(trace_id) is None:
        return False, f"{reply}, but trace {trace_id or '(no X-Trace-Id)'} was never stored"
    return True, f"{reply}, forwarded, trace stored"


def refused(run: Run, reply: Reply, before: int, want: int, code: str) -> Outcome:
    forwarded = len(run.provider.seen) - before
    if reply.status != want or forwarded:
        return False, f"answered {reply} (expected {want} {code}); forwarded {forwarded}"
    if reply.error_code() != code:
        return False, f"answered {reply}, expected error code {code}"
    return True, f"{reply}, not forwarded"


@probe("surrogate-in-model")
async def surrogate_in_model(run: Run) -> Outcome:
    body = chat(model=r'"gpt-4o-mini\ud800"')
    reply = await run.post("/v1/chat/completions", body, "surrogate-in-model")
    ok, detail = await forwarded_and_traced(run, reply, "surrogate-in-model")
    sent = run.provider.sent("surrogate-in-model")
    if ok and sent[-1].body != body:
        return False, "forwarded with a changed body (nothing to inject: expected it verbatim)"
    return ok, detail


@probe("surrogate-in-injected-body")
async def surrogate_injected(run: Run) -> Outcome:
    reply = await run.post(
        f"/sb/{SKILLBOOK}/v1/chat/completions",
        chat(r'"broken \ud83d emoji, caf\u00e9 \udc00\ud800"'),
        "surrogate-in-injected-body",
    )
    ok, detail = await forwarded_and_traced(run, reply, "surrogate-in-injected-body")
    if not ok:
        return ok, detail
    injected = reply.headers.get("x-skills-injected", "0")
    sent = run.provider.sent("surrogate-in-injected-body")[-1].body
    try:
        sent.decode("utf-8")
        document = json.loads(sent)
    except ValueError as exc:
        return False, f"forwarded a body that is not UTF-8 JSON: {exc}"
    if injected == "0" or RULE not in document["messages"][0]["content"]:
        return False, f"forwarded without the skill (X-Skills-Injected: {injected})"
    if rb"\ud83d" not in sent or rb"\udc00\ud800" not in sent:
        return False, "the lone surrogates were not kept as escapes"
    return True, f"{detail}, {injected} skill(s) injected, escapes kept"


@probe("0xff-in-x-session-id")
async def session_0xff(run: Run) -> Outcome:
    reply = await run.post(
        "/v1/chat/completions", chat(), "0xff-in-x-session-id", (b"X-Session-Id", b"sess-\xff-1")
    )
    if reply.refused_badly:
        return False, f"answered {reply}"
    if reply.status != 200:
        return True, f"refused with {reply}"
    trace = await run.stored_via_admin(reply.headers.get("x-trace-id", ""))
    if trace is None:
        return False, "200, but the trace was never stored"
    return True, f"200, trace stored with session_id {trace.get('session_id')!r}"


@probe("json-nested-5000-deep")
async def nested(run: Run) -> Outcome:
    before = len(run.provider.seen)
    body = chat("[" * 5000 + "]" * 5000)
    reply = await run.post("/v1/chat/completions", body, "json-nested-5000-deep")
    return refused(run, reply, before, 400, "invalid_json")


@probe("role-as-a-list")
async def role_list(run: Run) -> Outcome:
    body = b'{"model":"m","messages":[{"role":["system"],"content":"x"},{"role":"user"}]}'
    reply = await run.post(f"/sb/{SKILLBOOK}/v1/chat/completions", body, "role-as-a-list")
    if reply.refused_badly:
        return False, f"answered {reply}"
    if reply.status != 200:
        return True, f"refused with {reply}"
    return await forwarded_and_traced(run, reply, "role-as-a-list")


@probe("gzip-invalid")
async def gzip_invalid(run: Run) -> Outcome:
    before = len(run.provider.seen)
    body = b"\x1f\x8b\x08\x00 not deflate at all " * 8
    reply = await run.post(
        "/v1/chat/completions", body, "gzip-invalid", ("Content-Encoding", "gzip")
    )
    return refused(run, reply, before, 400, "invalid_body_encoding")


@probe("gzip-valid")
async def gzip_valid(run: Run) -> Outcome:
    plain = chat('"I want to return my shoes."')
    reply = await run.post(
        f"/sb/{SKILLBOOK}/v1/chat/completions",
        gzip.compress(plain),
        "gzip-valid",
        ("Content-Encoding", "gzip"),
    )
    if reply.status != 200 or not run.provider.sent("gzip-valid"):
        return False, f"answered {reply}; provider received {len(run.provider.sent('gzip-valid'))}"
    sent = run.provider.sent("gzip-valid")[-1]
    if "gzip" in sent.headers.get("content-encoding", "").lower():
        return False, "the provider received Content-Encoding: gzip"
    try:
        model = json.loads(sent.body)["model"]
    except (ValueError, KeyError) as exc:
        return False, f"the provider received a body that is not the inflated JSON: {exc!r}"
    length = sent.headers.get("content-length")
    if length is not None and int(length) != len(sent.body):
        return False, f"Content-Length {length} but {len(sent.body)} bytes"
    return True, f"200, the provider received {len(sent.body)} plain bytes (model {model})"


@probe("slow-body")
async def slow_body(run: Run) -> Outcome:
    """Headers, then the body one byte every 0.2 s: answered 408 within body_timeout_s + 2 s."""
    before, limit = len(run.provider.seen), BODY_TIMEOUT_S + 2
    reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
        b"\r\nContent-Length: 1000\r\n\r\n{"
    )
    started = time.monotonic()
    answer = asyncio.ensure_future(read_reply(reader))
    try:
        writer.write(head)
        while not answer.done() and time.monotonic() - started < limit:
            with contextlib.suppress(ConnectionError):
                writer.write(b" ")
                await writer.drain()
            await asyncio.wait([answer], timeout=0.2)
        elapsed = time.monotonic() - started
        if not answer.done():
            return False, f"no answer within {limit:g} s (body_timeout_s = {BODY_TIMEOUT_S:g})"
        try:
            reply = answer.result()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            return False, f"connection closed without an answer after {elapsed:.1f} s ({exc!r})"
    finally:
        answer.cancel()
        writer.close()
    ok, detail = refused(run, reply, before, 408, "request_timeout")
    return ok, f"{detail} after {elapsed:.1f} s"


@probe("dot-segments")
async def dot_segments(run: Run) -> Outcome:
    before, answers = len(run.provider.seen), []
    for target in ("/v1/../../secret", "/v1/%2e%2e/%2e%2e/secret", "/sb/x/v1/../../../secret"):
        for method in ("GET", "POST"):
            reply = await send(run.port, method, target, body=b"{}")
            answers.append(f"{method} {target} {reply}")
            if reply.status != 400:
                return False, f"{method} {target} answered {reply}, expected 400"
    leaked = [s.path for s in run.provider.seen[before:] if "secret" in s.path]
    if leaked or len(run.provider.seen) != before:
        return False, f"forwarded to the provider: {leaked or run.provider.seen[before:]}"
    return (
        True,
        f"{len(answers)} requests, each 400 ({answers[0].rsplit(' ', 1)[1]}), none forwarded",
    )


@probe("query-key-redacted")
async def query_key(run: Run) -> Outcome:
    secret = "SECRET-" + os.urandom(6).hex()
    target = f"/v1/models?limit=5&key={secret}"
    reply = await send(run.port, "GET", target, headers=[("X-Probe", "query-key")])
    if reply.status != 200:
        return False, f"answered {reply}"
    trace_id = reply.headers.get("x-trace-id", "")
    if await run.stored_via_admin(trace_id) is None:
        return False, f"trace {trace_id} never stored"
    listed = await run.admin("GET", "/traces?limit=500")
    rows = [t for t in listed.json()["data"] if t.get("id") == trace_id] if listed.ok else []
    if not rows:
        return False, f"GET /admin/traces answered {listed} without trace {trace_id}"
    path, anywhere = str(rows[0].get("path")), secret in json.dumps(rows[0])
    if secret in path:
        return False, f"stored path {path!r} holds the key"
    forwarded = any(secret in s.path for s in run.provider.sent("query-key"))
    where = "; but the key is elsewhere in the stored trace" if anywhere else ""
    return not anywhere, f"stored path {path!r}; forwarded with the key: {forwarded}{where}"


POISON: list[tuple[str, Sequence[Header], bytes]] = [
    ("/v1/chat/completions", (), chat(model=r'"m\ud800"')),
    ("/v1/chat/completions", ((b"X-Session-Id", b"\xff\xfe"),), chat()),
    ("/v1/chat/completions", (), chat("[" * 5000 + "]" * 5000)),
    (f"/sb/{SKILLBOOK}/v1/chat/completions", (), b'{"model":"m","messages":[{"role":["user"]}]}'),
    ("/v1/chat/completions", (("Content-Encoding", "gzip"),), b"\x1f\x8bnot gzip"),
    (f"/sb/{SKILLBOOK}/v1/chat/completions", (), chat(r'"\udc00 lone"')),
    ("/v1/../../secret", (), b"{}"),
]


@probe("good-traffic-with-poison")
async def mixed(run: Run) -> Outcome:
    """200 good requests and 70 poisoned ones, shuffled, 32 at a time: every good one answered
    and its trace stored (counted in the database file), no poisoned one a 5xx."""
    jobs: list[tuple[bool, str, Sequence[Header], bytes]] = [
        (True, f"/sb/{SKILLBOOK}/v1/chat/completions", (), chat(f'"good request {i}"'))
        for i in range(200)
    ]
    jobs += [(False, *POISON[i % len(POISON)]) for i in range(70)]
    random.Random(7).shuffle(jobs)
    gate = asyncio.Semaphore(32)

    async def one(job: tuple[bool, str, Sequence[Header], bytes]) -> tuple[bool, Reply | str]:
        good, target, headers, body = job
        async with gate:
            try:
                return good, await run.post(target, body, "mixed", *headers)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                return good, repr(exc)

    answers = await asyncio.gather(*(one(job) for job in jobs))
    good = [r for g, r in answers if g]
    ids = {r.headers.get("x-trace-id", "") for r in good if isinstance(r, Reply) and r.ok}
    bad5xx = [str(r) for g, r in answers if not g and (not isinstance(r, Reply) or r.refused_badly)]
    missing = await run.wait_stored(ids)
    detail = (
        f"good: {len(ids)}/200 answered 200, {len(ids) - len(missing)}/200 stored; "
        f"poisoned: {70 - len(bad5xx)}/70 answered below 500 (errors as JSON)"
        + (f" (others: {sorted(set(bad5xx))[:3]})" if bad5xx else "")
    )
    return len(ids) == 200 and not missing and not bad5xx, detail


def release(run: Run) -> None:
    if run.lock is not None:
        run.lock.execute("ROLLBACK")
        run.lock.close()
        run.lock = None


def _locker(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db), isolation_level=None, timeout=10, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def _service_unavailable(reply: Reply) -> bool:
    return reply.status == 503 and "retry-after" in reply.headers and reply.error_code() != ""


@probe("store-locked")
async def locked(run: Run) -> Outcome:
    """Another connection holds BEGIN EXCLUSIVE: writes wait out the busy timeout, then fail."""
    older = max(run.stored_ids(), default="")
    run.lock = await asyncio.to_thread(_locker, run.db)
    served = await run.post("/v1/chat/completions", chat(), "store-locked", timeout=10)
    run.locked_trace = served.headers.get("x-trace-id", "")
    write, fb_old, fb_new, health = await asyncio.gather(
        new_skill(run, 1),
        send_feedback(run, older),
        send_feedback(run, run.locked_trace),
        health_becomes(run, "degraded", within=15),
    )
    feedback_ok = []
    for trace_id, reply in ((older, fb_old), (run.locked_trace, fb_new)):
        if 200 <= reply.status < 300:
            run.accepted_feedback.append(trace_id)
        feedback_ok.append(_service_unavailable(reply) or 200 <= reply.status < 300)
    retry = write.headers.get("retry-after", "-")
    detail = (
        f"proxied request {served}; admin write {write} (Retry-After {retry}); feedback "
        f"{fb_old}/{fb_new}; /healthz {health!r}"
    )
    ok = served.status == 200 and _service_unavailable(write) and all(feedback_ok)
    return ok and health == "degraded", detail


async def health_becomes(run: Run, status: str, *, within: float) -> object:
    """Poll /healthz until its `status` is `status` or `within` seconds pass; the last seen."""
    deadline, seen = time.monotonic() + within, None
    while time.monotonic() < deadline:
        reply = await send(run.port, "GET", "/healthz", timeout=10)
        with contextlib.suppress(ValueError, AttributeError):
            seen = reply.json().get("status")
        if seen == status:
            break
        await asyncio.sleep(0.3)
    return seen


async def new_skill(run: Run, i: int) -> Reply:
    """An admin write: propose the `i`-th benchmark skill (distinct text, no duplicate)."""
    section, text = skill_text(i)
    return await run.admin(
        "POST", f"/skillbooks/{SKILLBOOK}/skills", {"section": section, "content": text}
    )


async def send_feedback(run: Run, trace_id: str) -> Reply:
    body = json.dumps({"trace_id": trace_id, "score": 0.0, "comment": "faults"}).encode()
    return await run.post("/v1/feedback", body, "feedback", timeout=30)


@probe("store-unlocked")
async def unlocked(run: Run) -> Outcome:
    release(run)
    health = await health_becomes(run, "ok", within=STORED_WITHIN_S)
    write = await new_skill(run, 2)
    missing = await run.wait_stored({run.locked_trace} if run.locked_trace else set())
    feedback = await send_feedback(run, run.locked_trace) if not missing else None
    kept = await asyncio.to_thread(run.stored_ids, "feedback", "trace_id")
    lost = [t for t in run.accepted_feedback if t not in kept]
    detail = (
        f"/healthz {health!r}; admin write {write}; trace from the lock "
        f"{'missing' if missing else 'stored'}; feedback {feedback}; feedback accepted while "
        f"locked: {len(run.accepted_feedback)}, {len(lost)} of them lost"
    )
    ok = health == "ok" and write.status == 201 and not missing and not lost
    return ok and feedback is not None and feedback.status == 201, detail


@probe("aftermath")
async def aftermath(run: Run) -> Outcome:
    if run.server.proc.poll() is not None:
        return False, f"the proxy exited with {run.server.proc.returncode}"
    health = (await send(run.port, "GET", "/healthz")).json()
    traces = health.get("traces", {})
    lost = {k: traces.get(k) for k in ("dropped", "lost") if traces.get(k)}
    detail = f"proxy alive, /healthz {health.get('status')!r}, traces {traces}"
    return health.get("status") == "ok" and not lost, detail


# --------------------------------------------------------------------------- set-up and report


async def start_provider(provider: Provider) -> web.AppRunner:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", provider.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    provider.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", provider.port).start()
    return runner


def start_proxy(group: Fleet, provider_port: int, db: Path) -> Server:
    port = free_port()
    argv = skillproxy_argv(SKILLPROXY_CMD, port, f"http://127.0.0.1:{provider_port}", db)
    env = {
        "SKILLPROXY_ADMIN__TOKEN": TOKEN,
        "SKILLPROXY_SERVER__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "SKILLPROXY_TRACES__FLUSH_INTERVAL_MS": "100",
        "SKILLPROXY_SKILLBOOK__REFRESH_INTERVAL_MS": "100",
    }
    return group.start("skillproxy", argv, port, ready_path="/healthz", env=env)


async def seed(run: Run) -> None:
    """One approved skill in SKILLBOOK, and the proxy's cache showing it."""
    made = await run.admin(
        "POST", f"/skillbooks/{SKILLBOOK}/skills", {"section": "returns", "content": RULE}
    )
    if made.status != 201:
        raise RuntimeError(f"creating the skill answered {made}: {made.body[:200]!r}")
    approved = await run.admin("POST", f"/skills/{made.json()['id']}/approve")
    if approved.status != 200:
        raise RuntimeError(f"approving the skill answered {approved}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = await run.post(f"/sb/{SKILLBOOK}/v1/chat/completions", chat(), "warm-up")
        if reply.headers.get("x-skills-injected", "0") != "0":
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the approved skill was never injected")


async def run_probes(group: Fleet, workdir: Path) -> list[Outcome]:
    provider = Provider()
    runner = await start_provider(provider)
    try:
        db = workdir / "faults.db"
        server = await asyncio.to_thread(start_proxy, group, provider.port, db)
        run = Run(server.port, provider, db, server)
        await seed(run)
        results = []
        for name, fn in PROBES:
            try:
                ok, detail = await asyncio.wait_for(fn(run), PROBE_TIMEOUT_S)
            except Exception as exc:  # a probe that breaks is a failure to report, not a crash
                ok, detail = False, f"probe error: {exc!r}"[:300]
            if server.proc.poll() is not None:
                ok, detail = False, f"{detail}; the proxy exited with {server.proc.returncode}"
            print(f"{'PASS' if ok else 'FAIL'}  {name:<27} {detail}", flush=True)
            results.append((ok, name))
        release(run)
        return results
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="keep the store and the proxy's log here")
    args = parser.parse_args(argv)
    for name in [n for n in os.environ if n.startswith("SKILLPROXY_")]:
        del os.environ[name]  # the operator's settings must not leak into the proxy under test
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            workdir = args.keep
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="faults-")))
        group = stack.enter_context(fleet(workdir))
        try:
            results = asyncio.run(run_probes(group, workdir))
        except (RuntimeError, KeyboardInterrupt) as exc:
            log = workdir / "skillproxy.log"
            tail = log_tail(log) if log.exists() else ""
            print(f"faults: stopped: {exc!r}\n{tail}", file=sys.stderr)
            return 2
    failed = sum(1 for ok, _ in results if not ok)
    print(f"{len(results) - failed} survived, {failed} failed")
    if args.keep:
        print(f"store and proxy log kept in {args.keep}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
