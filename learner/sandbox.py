"""Run untrusted Python (written by an LLM, reading untrusted traces) in a confined child process.

The reference Recursive Reflector `exec`s model-written code in-process behind an import list;
that is no boundary at all. Here the kernel is the boundary: one child process per `Sandbox`,
confined before it reads any code, keeps a REPL-like namespace across `run` calls.

Isolated (set up as root, then verified inside the child before the first request is read;
if any step fails the child reports it and exits):
- network: a fresh network namespace whose only interface, loopback, is down, so every connect
  fails, including to the host's 127.0.0.1 services and abstract Unix sockets;
- filesystem: a fresh mount namespace with private mounts, a size-capped tmpfs mounted on a
  scratch tempdir, then `chroot` into it: no /proc, /dev, /etc, Python library or database;
- processes and IPC: fresh PID and IPC namespaces, so no other process can be seen or signalled;
  the child dies with its root supervisor (PR_SET_PDEATHSIG);
- identity: empty environment; supplementary groups dropped, then every uid/gid set to an
  unprivileged id (default 65534, nobody); PR_SET_NO_NEW_PRIVS;
- resources: RLIMIT_NPROC=0 (no fork, no threads), RLIMIT_AS (memory), RLIMIT_FSIZE,
  RLIMIT_NOFILE, RLIMIT_CORE=0, RLIMIT_CPU as a lifetime backstop; the parent enforces a
  wall-clock timeout per call by killing the child, which restarts on the next call.

Not isolated: the kernel's system-call surface (no seccomp), the host name and kernel version,
CPU time and caches shared with the host during a call, tmpfs memory (capped by `scratch_size`,
outside RLIMIT_AS), and the child's own memory: code can forge or garble replies, which the
parent only validates and caps. Code can import what was loaded before the chroot (`PRELOADED`,
their dependencies, the modules this file imports); that is a convenience, not a boundary.
Linux only; the parent must be root.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import errno
import io
import itertools
import json
import linecache
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any

# What code may import (plus dependencies); the child also loads _strptime (for
# datetime.strptime) and encodings.idna (so name lookups fail on the network, not a codec).
PRELOADED = "json re math statistics collections itertools functools textwrap difflib datetime"
_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWPID, _CLONE_NEWNET = 0x20000, 1 << 27, 1 << 29, 1 << 30
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 0x4000, 0x40000
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_LOST = "variables from earlier calls are lost (loaded data comes back)."
_TIMED_OUT = "Timed out after {:g} s; the sandbox was killed, so " + _LOST
_DIED = "The sandbox process died ({}; exit status {}), so " + _LOST


@dataclass(frozen=True)
class ExecResult:
    """What one `run` did: the code's failures are data, never exceptions."""

    ok: bool
    stdout: str
    error: str | None = None
    timed_out: bool = False
    restarted: bool = False  # ran in a fresh child: variables from earlier calls are gone


@dataclass(frozen=True)
class Limits:
    """Per-sandbox limits; sizes in bytes, times in seconds."""

    timeout: float = 5.0  # wall clock per `run`, enforced by the parent
    memory: int = 256 << 20  # RLIMIT_AS
    file_size: int = 16 << 20  # RLIMIT_FSIZE, per file
    scratch_size: int = 64 << 20  # the scratch tmpfs, all files together
    open_files: int = 32  # RLIMIT_NOFILE
    cpu_seconds: int = 600  # RLIMIT_CPU over the child's life: a backstop if the parent dies
    max_output: int = 20_000  # characters of output (and of an error) kept per call
    uid: int = 65534
    gid: int = 65534
    start_timeout: float = 10.0


class SandboxError(Exception):
    """The confined child could not be started, or refused data; no code ran unconfined."""


class _Broken(Exception):
    """The child exited or broke the protocol."""


def _wait(fd: int, events: int, deadline: float | None) -> None:
    if deadline is not None:
        poller = select.poll()
        poller.register(fd, events)
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            raise TimeoutError


def _send(fd: int, message: dict[str, Any], deadline: float | None = None) -> None:
    data = json.dumps(message, ensure_ascii=False).encode()
    view = memoryview(len(data).to_bytes(4, "big") + data)
    while view:
        _wait(fd, select.POLLOUT, deadline)
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
        except BrokenPipeError:
            raise _Broken("the sandbox process exited") from None


def _read(fd: int, size: int, deadline: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        _wait(fd, select.POLLIN, deadline)
        if not (chunk := os.read(fd, size - len(buf))):
            raise _Broken("the sandbox process exited")
        buf += chunk
    return bytes(buf)


def _receive(fd: int, deadline: float | None = None, limit: int = 1 << 32) -> dict[str, Any]:
    if (size := int.from_bytes(_read(fd, 4, deadline), "big")) > limit:
        raise _Broken(f"a {size}-byte reply")
    try:
        message = json.loads(_read(fd, size, deadline))
    except ValueError:
        message = None
    if not isinstance(message, dict):
        raise _Broken("a malformed reply")
    return message


class Sandbox:
    """One confined child with a persistent namespace; use as a context manager.

    Not thread-safe: one caller at a time. A call blocks for up to `timeout` seconds, so async
    callers should use `asyncio.to_thread`.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._scratch = tempfile.mkdtemp(prefix="skillproxy-sandbox-")
        self._loads: dict[str, dict[str, Any]] = {}  # replayed into every restarted child
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load_data(self, name: str, value: Any) -> None:
        """Bind `name` to a JSON copy of `value` in the namespace; it survives restarts."""
        if not name.isidentifier():
            raise ValueError(f"not a Python identifier: {name!r}")
        message = {"op": "load", "name": name, "value": value}
        if self._proc is None:
            self._start()
        self._load(message)
        self._loads[name] = message

    def run(self, code: str) -> ExecResult:
        """Execute `code` in the namespace; output, errors, timeouts and crashes are data."""
        restarted = self._proc is None
        if restarted:
            try:
                self._start()
            except SandboxError as exc:
                return ExecResult(False, "", f"The sandbox could not restart: {exc}")
        try:
            reply = self._call({"op": "run", "code": code}, self.limits.timeout)
            stdout, error = reply.get("stdout"), reply.get("error")
            if not isinstance(stdout, str) or not isinstance(error, str | None):
                raise _Broken("a malformed reply")
        except TimeoutError:
            self._kill()
            message = _TIMED_OUT.format(self.limits.timeout)
            return ExecResult(False, "", message, timed_out=True, restarted=restarted)
        except _Broken as exc:
            message = _DIED.format(exc, self._kill(grace=1.0))
            return ExecResult(False, "", message, restarted=restarted)
        return ExecResult(error is None, stdout, error, restarted=restarted)

    def close(self) -> None:
        """Kill the child and remove the scratch directory (its tmpfs dies with the child)."""
        self._closed = True
        self._kill()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def _start(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        config = json.dumps({"scratch": self._scratch, **asdict(self.limits)})
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={},
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        os.set_blocking(self._proc.stdin.fileno(), False)
        try:
            hello = _receive(
                self._proc.stdout.fileno(), time.monotonic() + self.limits.start_timeout
            )
        except (TimeoutError, _Broken) as exc:
            self._kill()
            raise SandboxError(f"the sandbox did not start: {exc or 'timed out'}") from None
        if hello.get("ready") is not True or os.path.ismount(self._scratch):
            self._kill()
            raise SandboxError(str(hello.get("error", "the scratch mount leaked to the host")))
        for message in self._loads.values():
            self._load(message)

    def _load(self, message: dict[str, Any]) -> None:
        try:
            reply = self._call(message, max(self.limits.timeout, 60.0))
        except (TimeoutError, _Broken) as exc:
            self._kill()
            raise SandboxError(f"loading data failed: {exc or 'timed out'}") from None
        if reply.get("ok") is not True:
            raise SandboxError(f"loading data failed: {reply.get('error')}")

    def _call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        deadline = time.monotonic() + timeout
        _send(self._proc.stdin.fileno(), message, deadline)
        limit = 8 * self.limits.max_output + 65536  # output and error, 4 bytes a character
        return _receive(self._proc.stdout.fileno(), deadline, limit)

    def _kill(self, grace: float = 0.0) -> int | None:
        """Stop the child; `grace` lets one that is already exiting report its own status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
        proc.kill()  # the confined grandchild follows through PR_SET_PDEATHSIG
        status = proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()
        return status


def sandbox_support() -> str | None:
    """None if a confined child starts and runs code here, else why not (found by trying)."""
    if sys.platform != "linux":
        return f"the sandbox needs Linux namespaces; this is {sys.platform}"
    if os.geteuid() != 0:
        return "the sandbox needs root: it creates namespaces, chroots and drops to another uid"
    try:
        with Sandbox() as box:
            result = box.run("print(6 * 7)")
    except SandboxError as exc:
        return str(exc)
    return None if result.stdout == "42\n" else f"the sandbox cannot run code: {result.error}"


# ---- everything below runs in the child: `python -I -S sandbox.py CONFIG` ----


class _Capture(io.StringIO):
    """stdout and stderr for user code: keeps the first `limit` characters, counts the rest."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.kept, self.cut = limit, 0, 0

    def write(self, text: str, /) -> int:
        keep = text[: max(0, self.limit - self.kept)]
        self.kept, self.cut = self.kept + len(keep), self.cut + len(text) - len(keep)
        super().write(keep)
        return len(text)

    def value(self) -> str:
        note = f"\n[output cut: {self.cut:,} more characters not shown]" if self.cut else ""
        return _clean(self.getvalue() + note)


def _clean(text: str) -> str:
    """Valid UTF-8 only: a lone surrogate would break the reply."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _execute(code: str, namespace: dict[str, Any], name: str, limit: int) -> dict[str, Any]:
    out, error = _Capture(limit), None
    linecache.cache[name] = (len(code), None, code.splitlines(keepends=True), name)
    try:
        compiled = compile(code, name, "exec")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compiled, namespace)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the code's too
        error = _clean(_format_error(exc)[:limit])
    return {"stdout": out.value(), "error": error}


def _format_error(exc: BaseException) -> str:
    """The traceback through the user's cells only: sandbox and library frames are noise."""
    try:
        report = traceback.TracebackException.from_exception(exc)
        pending = [report]
        while pending:
            part = pending.pop()
            cells = [frame for frame in part.stack if frame.filename.startswith("<cell ")]
            part.stack = traceback.StackSummary.from_list(cells)
            pending += [p for p in (part.__cause__, part.__context__) if p is not None]
        return "".join(report.format())
    except BaseException:
        return f"{type(exc).__name__} (the error could not be formatted)"


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        reason = f"{errno.errorcode.get(code, code)} ({os.strerror(code)})"
        raise RuntimeError(f"{what}: {reason}; the sandbox needs root with CAP_SYS_ADMIN")


def _confine(config: dict[str, Any]) -> None:
    """Enter namespaces, chroot, drop privileges, set limits; only the confined child returns."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    _check(libc.unshare(_CLONE_NEWNET), "cannot create a network namespace")
    namespaces = _CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWPID
    _check(libc.unshare(namespaces), "cannot create mount, IPC and PID namespaces")
    if pid := os.fork():  # the supervisor stays outside the PID namespace and relays the status
        os.closerange(0, 65536)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os._exit(status if status >= 0 else 128 - status)
    scratch, uid, gid = config["scratch"].encode(), config["uid"], config["gid"]
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "cannot make mounts private")
    options = f"size={config['scratch_size']},nr_inodes=4096,mode=0700,uid={uid},gid={gid}"
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _check(libc.mount(b"tmpfs", scratch, b"tmpfs", flags, options.encode()), "cannot mount tmpfs")
    os.chroot(scratch)
    os.chdir("/")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG) failed")
    for limit, value in _rlimits(config).items():
        resource.setrlimit(limit, (value, value))
    os.environ.clear()


def _rlimits(config: dict[str, Any]) -> dict[int, int]:
    return {
        resource.RLIMIT_NPROC: 0,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_AS: config["memory"],
        resource.RLIMIT_FSIZE: config["file_size"],
        resource.RLIMIT_NOFILE: config["open_files"],
        resource.RLIMIT_CPU: config["cpu_seconds"],
    }


def _verify(config: dict[str, Any]) -> None:
    """Prove each confinement step from the inside; raise on the first that does not hold."""
    uid, gid = config["uid"], config["gid"]
    if (os.getresuid(), os.getresgid(), os.getgroups()) != ((uid,) * 3, (gid,) * 3, []):
        raise RuntimeError("privileges were not dropped")
    with contextlib.suppress(PermissionError):
        os.setuid(0)
        raise RuntimeError("root could be regained")
    if os.getcwd() != "/" or os.listdir("/") or os.getppid() != 0 or os.environ:
        raise RuntimeError("the filesystem, process or environment view is not confined")
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex(("127.0.0.1", 9)) != errno.ENETUNREACH:
            raise RuntimeError("the network namespace has a usable loopback")
    if any(resource.getrlimit(key) != (v, v) for key, v in _rlimits(config).items()):
        raise RuntimeError("resource limits were not applied")
    with contextlib.suppress(BlockingIOError):
        if os.fork() == 0:
            os._exit(0)
        raise RuntimeError("the sandbox could fork")


def _child_main(config: dict[str, Any]) -> None:
    """Confine and verify, and only then read code; on any failure, report and exit."""
    fd_in, fd_out, null = os.dup(0), os.dup(1), os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    try:
        for module in [*PRELOADED.split(), "_strptime", "encodings.idna"]:
            __import__(module)
        _confine(config)
        _verify(config)
    except Exception as exc:
        _send(fd_out, {"ready": False, "error": str(exc)})
        os._exit(1)
    os.dup2(null, 2)
    os.close(null)
    _send(fd_out, {"ready": True})
    namespace: dict[str, Any] = {"__name__": "__sandbox__", "__builtins__": builtins}
    for cell in itertools.count(1):
        try:
            message = _receive(fd_in)
        except _Broken:
            os._exit(0)  # the parent closed the pipe
        reply: dict[str, Any] = {"ok": True}
        try:
            if message["op"] == "load":
                namespace[message["name"]] = message["value"]
            else:
                reply = _execute(message["code"], namespace, f"<cell {cell}>", config["max_output"])
        except BaseException as exc:  # e.g. MemoryError on huge data: report it, keep serving
            reply = {"ok": False, "stdout": "", "error": _clean(repr(exc)[:1000])}
        _send(fd_out, reply)


if __name__ == "__main__":
    _child_main(json.loads(sys.argv[1]))
