"""The process that turns finished exchanges into `traces` rows, beside the proxy, not inside it.

Building a row (folding a stream, parsing a response for its usage) and inserting it is Python
work; in a thread it competed with the event loop for the GIL and cost every request. In its own
process it runs on the other core. The proxy sends batches of `TraceRecord`s over the child's
stdin, each record as the tuple of its fields, in length-prefixed `marshal` frames, and waits
for one acknowledgement per batch on its stdout: `{"ok": true, ...}` once committed, or
`{"ok": false, "error": ..., "stored": n}` (the frame's first n records are done with), which
the trace writer retries from record n. Serialising happens on the event loop, so it has to be
cheap: pickling the dataclasses themselves went through their Python-level `__getstate__`
(about 5 µs a record); tuples of plain values marshal in about 1 µs. The child is the same
interpreter (`sys.executable`), so marshal's format always matches. The first frame after
start-up carries the settings the child applies (`sink_settings`): parameters whose values are
masked, and which skillbooks' bodies are redacted of personal data (`core.redaction`); both
happen here, off the request path.

No exchange may cost another its trace. Every value is made storable when its row is built
(`proxy.tracing.storable_text`); a frame the store still refuses for a reason of its rows (not
of the store: `StoreUnavailable` fails the frame, to be retried) is stored row by row; a row
that still fails is stored without the field that made it fail, its `error` saying which, and
one that fails even with nothing but its id is given up (counted `lost`) when the others went
in. If none went in, the store is failing, and the frame is retried.

The store's file is watched (`store.open_watched`): deleted or replaced under the running sink,
writes would go on into a file nobody can read. The sink checks before and after each frame,
and every `CHECK_INTERVAL_S` while idle (acting on a change seen at two looks in a row). On a
change the store logs an ERROR and opens a fresh, migrated database at the same path, and the
sink writes the frame there again (ids make that idempotent): nothing written after the change
is lost, and `reopened` counts these in the stats.

With `[otel]` enabled, the child also turns each committed row into an OpenTelemetry span
(`proxy.otel_export`), after the frame is acknowledged: the proxy never waits for it.

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
import os
import select
import signal
import struct
import sys
from typing import Any, BinaryIO

from core import prices
from core.config import Config, PrivacyConfig, TracesConfig
from core.redaction import Counts, total
from proxy.otel_export import SpanExport, open_export, span_settings
from proxy.tracing import (
    DEFAULT_POLICY,
    StoragePolicy,
    TraceRecord,
    base_values,
    plain,
    record_from_values,
    record_values,
    row_values,
    storable_text,
)
from store import TRACE_COLUMNS, Store, open_watched
from store.columns import PRICED_COLUMNS
from store.errors import StoreUnavailable
from store.interfaces import WatchedStore

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
CHECK_INTERVAL_S = 1.0
"""While no frame arrives, how often the sink looks whether its store file is still there."""
COUNTERS = ("redacted", "marked", "lost", "reopened")
"""What each acknowledgement adds to `TraceSink.counts`: personal data replaced, rows stored
with a field left out (`error` says which), records given up (the store refused even the row
of what identifies them, while taking the others), store files reopened after a delete or
replace."""


class SinkFailed(Exception):
    """The batch was not committed (the store refused it, or the sink process died).

    `stored`: how many records at the start of the batch are done with (stored, or given up
    and counted in `TraceSink.counts["lost"]`); the rest may or may not be stored (a retry of
    them is idempotent)."""

    def __init__(self, message: str, *, stored: int = 0) -> None:
        super().__init__(message)
        self.stored = stored


def sink_settings(config: Config | None) -> dict[str, Any]:
    """What the child needs of the configuration, as plain values for its first frame."""
    traces = config.traces if config is not None else TracesConfig()
    privacy = config.privacy if config is not None else PrivacyConfig()
    return {
        "redact_params": list(traces.redact_params),
        "stored_skillbooks": list(privacy.stored_skillbooks),
        "detect": list(privacy.detect),
        "patterns": list(privacy.patterns),
        "otel": span_settings(config),
    }


def policy_from(settings: dict[str, Any]) -> StoragePolicy:
    traces = TracesConfig(redact_params=tuple(settings["redact_params"]))
    privacy = PrivacyConfig(
        stored_skillbooks=tuple(settings["stored_skillbooks"]),
        detect=tuple(settings["detect"]),
        patterns=tuple(settings["patterns"]),
    )
    return StoragePolicy.of(traces, privacy)


class TraceSink:
    """The proxy's side: one child process, one batch in flight at a time.

    `config` gives the child `traces.redact_params` and `[privacy]`; without it the defaults
    apply (the default parameter names masked, no body redacted)."""

    def __init__(self, store_url: str, *, config: Config | None = None) -> None:
        self._store_url = store_url
        self._settings = marshal.dumps(sink_settings(config))
        self._proc: asyncio.subprocess.Process | None = None
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)

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
        self._proc.stdin.write(HEADER.pack(len(self._settings)) + self._settings)

    async def write(self, batch: list[TraceRecord]) -> None:
        """Commit `batch`; raises `SinkFailed` (after restarting a dead sink) if it was not,
        saying how much of the batch's start is stored."""
        for start in range(0, len(batch), FRAME_RECORDS):
            try:
                await self._write_frame(batch[start : start + FRAME_RECORDS])
            except SinkFailed as exc:
                raise SinkFailed(str(exc), stored=start + exc.stored) from None

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
        for name in COUNTERS:
            self.counts[name] += int(ack.get(name, 0))
        if not ack.get("ok"):
            raise SinkFailed(str(ack.get("error")), stored=int(ack.get("stored", 0)))

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


# -- the child -----------------------------------------------------------------------------------

_ERROR = TRACE_COLUMNS.index("error")
_MODEL, _INPUT, _OUTPUT = (
    TRACE_COLUMNS.index(c) for c in ("model", "input_tokens", "output_tokens")
)
_KEPT = frozenset(TRACE_COLUMNS.index(c) for c in ("id", "created_at", "skillbook"))
"""What identifies a row: never left out, since without them there is no row."""
_REQUIRED = {
    TRACE_COLUMNS.index(c): empty
    for c, empty in (("method", ""), ("path", ""), ("stream", 0), ("client_disconnected", 0))
}
"""NOT NULL columns, and what stands for a value of theirs that cannot be stored."""


class _FrameFailed(Exception):
    """The store failed after the first `done` rows were handled, `lost` of them given up."""

    def __init__(self, done: int, lost: int, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.done = done
        self.lost = lost


def serve(store_url: str, reader: BinaryIO, writer: BinaryIO) -> None:
    """The child's side: read the settings, then commit every batch it is sent, acknowledge
    each, stop at EOF. Frames are read from the file descriptor itself, so waiting for one
    can time out to look after the store's file."""
    fd = reader.fileno()
    settings = _read_frame(fd)
    if settings is None:
        return
    given = marshal.loads(settings)
    policy = policy_from(given)
    spans = open_export(given.get("otel"), os.environ)
    store = open_watched(store_url)
    try:
        while True:
            if not select.select([fd], [], [], CHECK_INTERVAL_S)[0]:
                _look_after(store)
                continue
            payload = _read_frame(fd)
            if payload is None:
                return
            records = [record_from_values(values) for values in marshal.loads(payload)]
            counts: Counts = {}
            rows = [_row(record, policy, counts) for record in records]
            ack = commit_rows(store, rows, counts)
            data = marshal.dumps(ack)
            writer.write(HEADER.pack(len(data)) + data)
            writer.flush()
            _export(spans, rows[: ack["stored"]])  # the rest is sent again
    finally:
        try:
            if spans is not None:
                spans.close()
        finally:
            store.close()


def _export(spans: SpanExport | None, rows: list[tuple[Any, ...]]) -> None:
    """Spans of the rows done with, once the proxy has its acknowledgement."""
    if spans is not None and rows:
        spans.emit(rows)


def _look_after(store: WatchedStore) -> None:
    """While idle: a file found gone at two looks in a row is made afresh. Waiting one look
    gives a `mv` or restore under way a moment, and the proxy's own threads, which see the
    same change, the chance to report it as it is; a frame arriving does not wait."""
    if store.trouble() is None:
        store.noticed = False
        return
    if not store.noticed:
        store.noticed = True
        return
    try:
        store.ready()
    except Exception:  # could not open a fresh one: the next frame tries again, and says so
        log.exception("the trace store %s could not be reopened", store.path)


def _read_frame(fd: int) -> bytes | None:
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    return _read_exact(fd, HEADER.unpack(header)[0])


def _read_exact(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd`, or None at end of file."""
    data = bytearray()
    while len(data) < size:
        piece = os.read(fd, size - len(data))
        if not piece:
            return None
        data += piece
    return bytes(data)


def commit(
    store: WatchedStore, records: list[TraceRecord], policy: StoragePolicy = DEFAULT_POLICY
) -> dict[str, Any]:
    """Store one frame's records; the acknowledgement to send back."""
    counts: Counts = {}
    return commit_rows(store, [_row(record, policy, counts) for record in records], counts)


def commit_rows(store: WatchedStore, rows: list[tuple[Any, ...]], counts: Counts) -> dict[str, Any]:
    """Store one frame's built rows (`counts`: the redactions made building them)."""
    try:
        marked, lost = _insert(store.ready(), rows)
        if store.trouble() is not None:  # gone while we wrote: so are these rows
            marked, lost = _insert(store.ready(), rows)
    except _FrameFailed as exc:
        log.error("trace store write failed: %s", exc)
        done, lost, error = exc.done, exc.lost, str(exc)
    except Exception as exc:  # the store could not even be opened: the parent retries
        done, lost, error = 0, 0, f"{type(exc).__name__}: {exc}"
    else:
        return {
            "ok": True,
            "stored": len(rows),
            "redacted": total(counts),
            "marked": marked,
            "lost": lost,
            "reopened": store.take_reopened(),
        }
    ack = {"ok": False, "error": error, "stored": done, "lost": lost}
    return {**ack, "reopened": store.take_reopened()}


def _insert(store: Store, rows: list[tuple[Any, ...]]) -> tuple[int, int]:
    """Insert `rows`, row by row if the store refuses them together for a reason of theirs.
    Returns how many were stored with a field left out, and how many not at all (the store
    took the others, so the fault is theirs). `_FrameFailed` when the store itself fails."""
    try:
        store.traces.insert_values(rows)
        return 0, 0
    except StoreUnavailable as exc:
        raise _FrameFailed(0, 0, exc) from None
    except Exception as exc:
        refused: BaseException = exc
        log.error(
            "the store refused a batch of %d traces (%s: %s); storing them one by one",
            len(rows),
            type(exc).__name__,
            exc,
        )
    marked = lost = 0
    for index, row in enumerate(rows):
        try:
            marked += _insert_one(store, row)
        except StoreUnavailable as exc:  # the store, not the row: nothing more goes in now
            raise _FrameFailed(index, lost, exc) from None
        except Exception as exc:
            refused = exc
            lost += 1
            log.error(
                "trace %s could not be stored at all: %s: %s", row[0], type(exc).__name__, exc
            )
    if lost == len(rows):  # not one row went in: that is the store's doing, retried
        raise _FrameFailed(0, 0, refused)
    return marked, lost


def _insert_one(store: Store, row: tuple[Any, ...]) -> int:
    """Store `row`, or else the row without the one field that stops it, or else the row of
    what identifies it; 1 if a field had to be left out. Raises if not even that is stored."""
    try:
        store.traces.insert_values([row])
        return 0
    except StoreUnavailable:
        raise
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
    for index, value in enumerate(row):
        if index in _KEPT or value is None or value == _REQUIRED.get(index):
            continue
        note = f"trace field {PRICED_COLUMNS[index]} not storable: {why}"
        earlier = row[_ERROR] if index != _ERROR else None
        candidate = list(row)
        candidate[index] = _REQUIRED.get(index)
        candidate[_ERROR] = storable_text(f"{earlier}; {note}" if earlier else note)
        try:
            store.traces.insert_values([tuple(candidate)])
        except StoreUnavailable:
            raise
        except Exception:
            continue
        log.error("trace %s stored without its %s: %s", row[0], PRICED_COLUMNS[index], why)
        return 1
    bare = [v if i in _KEPT else _REQUIRED.get(i) for i, v in enumerate(row)]
    bare[_ERROR] = storable_text(f"trace row not storable: {why}")
    store.traces.insert_values([tuple(bare)])
    log.error("trace %s stored without its details: %s", row[0], why)
    return 1


def _row(record: TraceRecord, policy: StoragePolicy, counts: Counts) -> tuple[Any, ...]:
    """The record's row in `PRICED_COLUMNS` order."""
    try:
        return priced(row_values(record, policy, counts))
    except Exception as exc:  # one malformed exchange must not cost the whole batch
        log.error("could not build trace row %s: %s", record.id, exc)
        return priced(
            base_values(record, f"trace row not built: {type(exc).__name__}: {exc}", policy)
        )


def priced(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """`row` (in `TRACE_COLUMNS` order) with its cost appended. Priced here, where the row's
    usage has just been read and off the request path: about 2 us a row, and the price table
    (0.1 s, 3 MB) is read once, by the first row that names a model."""
    model = row[_MODEL]
    cost = prices.cost_usd(model, row[_INPUT], row[_OUTPUT]) if model else None
    return (*row, cost)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
