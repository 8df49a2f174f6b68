"""The process that turns finished exchanges into `traces` rows, beside the proxy, not inside it.

Building a row (folding a stream, parsing a response for its usage) and inserting it is Python
work; in a thread it competed with the event loop for the GIL and cost every request. In its own
process it runs on the other core. The proxy sends batches of `TraceRecord`s over the child's
stdin, each record as the tuple of its fields, in length-prefixed `marshal` frames, and waits
for one acknowledgement per batch on its stdout: `{"ok": true}` once committed, or
`{"ok": false, "error": ...}`, which the trace writer retries. Serialising happens on the event
loop, so it has to be cheap: pickling the dataclasses themselves went through their Python-level
`__getstate__` (about 5 µs a record); tuples of plain values marshal in about 1 µs. The child is
the same interpreter (`sys.executable`), so marshal's format always matches.
The child ignores SIGINT and SIGTERM (a terminal or service manager signals the whole process
group) and exits when its stdin closes, so the proxy's shutdown decides when the last batch is in.

    python -m proxy.trace_sink STORE_URL     (started by the proxy, never by hand)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import marshal
import signal
import struct
import sys
from typing import Any, BinaryIO

from proxy.tracing import (
    TraceRecord,
    base_values,
    plain,
    record_from_values,
    record_values,
    row_values,
)
from store import open_store

log = logging.getLogger("skillproxy.traces")

HEADER = struct.Struct(">I")
FRAME_RECORDS = 200
"""Records per frame: serialising a frame holds the event loop, and a frame larger than the
pipe's buffer waits in asyncio's write buffer, copied and moved as the child drains it. With
frames of 1,000, a 64 KiB pipe and the header joined to the payload, that cost a streamed
request about 13,000 instructions. 200 bench-sized records fit in the enlarged pipe; each
frame is one commit in the sink, a few dozen a second at most."""
PIPE_BYTES = 1 << 20
"""The pipe to the sink is enlarged to this (Linux's default limit for any user) from 64 KiB."""


class SinkFailed(Exception):
    """The batch was not committed (the store refused it, or the sink process died)."""


class TraceSink:
    """The proxy's side: one child process, one batch in flight at a time."""

    def __init__(self, store_url: str) -> None:
        self._store_url = store_url
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy.trace_sink",
            self._store_url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdin is not None
        _enlarge(self._proc.stdin.transport.get_extra_info("pipe"))

    async def write(self, batch: list[TraceRecord]) -> None:
        """Commit `batch`; raises `SinkFailed` (after restarting a dead sink) if it was not."""
        for start in range(0, len(batch), FRAME_RECORDS):
            await self._write_frame(batch[start : start + FRAME_RECORDS])

    async def _write_frame(self, records: list[TraceRecord]) -> None:
        if self._proc is None or self._proc.returncode is not None:
            try:
                await self.start()
            except OSError as exc:  # out of processes or file descriptors: retried like a failure
                raise SinkFailed(f"could not start the trace sink: {exc}") from None
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        values = [record_values(record) for record in records]
        try:
            payload = marshal.dumps(values)
        except ValueError:  # a value marshal refuses (a str subclass): send plain types
            payload = marshal.dumps([plain(v) for v in values])
        try:
            proc.stdin.write(HEADER.pack(len(payload)))
            proc.stdin.write(payload)  # not joined to the header: that would copy it whole
            await proc.stdin.drain()
            size = HEADER.unpack(await proc.stdout.readexactly(HEADER.size))[0]
            ack: dict[str, Any] = marshal.loads(await proc.stdout.readexactly(size))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            with contextlib.suppress(ProcessLookupError):  # already reaped
                proc.kill()
            await proc.wait()
            raise SinkFailed(f"trace sink process died: {exc!r}") from None
        if not ack.get("ok"):
            raise SinkFailed(str(ack.get("error")))

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _enlarge(pipe: Any) -> None:
    """Ask for a bigger pipe buffer where the platform allows it; the default works too."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is None or pipe is None:
        return
    with contextlib.suppress(OSError):  # over the system's limit: keep the default
        fcntl.fcntl(pipe.fileno(), setsize, PIPE_BYTES)


def serve(store_url: str, reader: BinaryIO, writer: BinaryIO) -> None:
    """The child's side: commit every batch it is sent, acknowledge each, stop at EOF."""
    store = open_store(store_url)
    try:
        while header := reader.read(HEADER.size):
            (size,) = HEADER.unpack(header)
            records = [record_from_values(values) for values in marshal.loads(reader.read(size))]
            try:
                store.traces.insert_values([_row(record) for record in records])
                ack: dict[str, Any] = {"ok": True}
            except Exception as exc:  # the store failed: the parent retries, then counts losses
                ack = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            data = marshal.dumps(ack)
            writer.write(HEADER.pack(len(data)) + data)
            writer.flush()
    finally:
        store.close()


def _row(record: TraceRecord) -> tuple[Any, ...]:
    try:
        return row_values(record)
    except Exception as exc:  # one malformed exchange must not cost the whole batch
        log.error("could not build trace row %s: %s", record.id, exc)
        return base_values(record, f"trace row not built: {type(exc).__name__}: {exc}")


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
