"""`POST /admin/skillbooks/{s}/traces/import`: a JSONL file of conversations becomes traces.

The body is read as it arrives, never whole (`LineSplitter` holds at most one line, capped),
parsed in batches off the event loop (`skillproxy.trace_import`), and each batch is one store
call: what a batch accepted is committed before the next line is read, so a bad line, a
client that hangs up or a store that fails later loses nothing already accepted. The answer
is NDJSON, progress lines as batches commit and a summary last, because a large file takes a while
and its sender should see it moving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from core import jsonio
from proxy.state import ProxyState
from skillproxy.admin.requests import Query, query_of, skillbook_name, state_of
from skillproxy.trace_import import (
    ImportFormat,
    LineError,
    LineSplitter,
    TooLong,
    parse_line,
    stored_bytes,
    too_long_error,
)
from store.errors import StoreUnavailable
from store.records import ImportedConversation

BATCH_LINES = 100
"""Lines per store call."""
PROGRESS_EVERY_S = 1.0
"""A progress line after the first batch, then after a batch at most this often. An HTTP/1.1
client (httpx's among them) reads the answer only once it has sent the whole body: a line per
batch of a very large file could fill the socket's buffers, and the import would stall with
the client blocked sending and the handler blocked writing."""
BATCH_BYTES = 8 * 1024 * 1024
"""A batch of lines also ends once they hold this much: memory stays bounded for long lines."""
STORE_BYTES = 16 * 1024 * 1024
"""A store call also ends once its traces hold this much: a line's turns each repeat the
conversation before them, so parsed lines may be many times larger than the file's."""
MAX_REPORTED = 100
"""Failed lines listed in the summary; `failed_count` counts them all."""
READ_CHUNK = 64 * 1024
NDJSON = "application/x-ndjson"


class TraceImportQuery(Query):
    format: Literal["openai-jsonl", "anthropic-jsonl"] = Field(
        description=(
            "openai-jsonl: one {messages, tools?} conversation per line, as OpenAI's chat "
            "fine-tuning files; anthropic-jsonl: a Messages request per line, optionally with "
            "its response, or a Message Batches line {custom_id, params, result?}. Either may "
            "add session_id, model, and score (0..1) and/or label as session feedback"
        )
    )


class FailedLine(BaseModel):
    line: int
    error: str


class ImportProgress(BaseModel):
    """A progress line, after each batch the store committed."""

    line: int
    imported: int
    skipped: int
    failed: int


class ImportDone(BaseModel):
    """The last line: conversations imported, skipped (imported before), and the failures."""

    done: Literal[True]
    lines: int
    imported: int
    skipped: int
    traces: int
    failed: list[FailedLine]
    failed_count: int
    error: str | None = None
    """Set when the import stopped early (the store became unavailable): lines up to `lines`
    were handled, some after it may have been, the rest were not read; importing the same
    file again adds only what is missing."""


@dataclass
class _Tally:
    line: int = 0
    imported: int = 0
    skipped: int = 0
    traces: int = 0
    failed: list[FailedLine] = field(default_factory=list)
    failed_count: int = 0

    def fail(self, line: int, error: str) -> None:
        self.failed_count += 1
        if len(self.failed) < MAX_REPORTED:
            self.failed.append(FailedLine(line=line, error=error))

    def progress(self) -> dict[str, Any]:
        return ImportProgress(
            line=self.line, imported=self.imported, skipped=self.skipped, failed=self.failed_count
        ).model_dump()

    def done(self, error: str | None = None) -> dict[str, Any]:
        return ImportDone(
            done=True, lines=self.line, imported=self.imported, skipped=self.skipped,
            traces=self.traces, failed=self.failed, failed_count=self.failed_count, error=error,
        ).model_dump()  # fmt: skip


Numbered = tuple[int, bytes | TooLong]


async def import_traces(request: web.Request) -> web.StreamResponse:
    state, skillbook = state_of(request), skillbook_name(request)
    kind: ImportFormat = query_of(request, TraceImportQuery).format
    settle_s = state.config.learner.settle_s
    answer = web.StreamResponse(headers={"Content-Type": NDJSON})
    await answer.prepare(request)
    tally, last_progress = _Tally(), float("-inf")
    try:
        async for batch in _batches(request):
            rest = batch
            while rest:
                parsed, rest = await asyncio.to_thread(_parse, kind, rest, tally)
                if parsed:
                    await _store(state, skillbook, parsed, settle_s, tally)
            tally.line = batch[-1][0]
            if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                await _write(answer, tally.progress())
    except StoreUnavailable as exc:
        await _write(answer, tally.done(f"the store is unavailable: {exc}; import again later"))
        return answer
    await _write(answer, tally.done())
    await answer.write_eof()
    return answer


async def _batches(request: web.Request) -> AsyncIterator[list[Numbered]]:
    """The body's lines, in batches of `BATCH_LINES` or `BATCH_BYTES`, whichever comes first."""
    splitter, batch, size = LineSplitter(), list[Numbered](), 0
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        for numbered in splitter.feed(chunk):
            batch.append(numbered)
            size += len(numbered[1]) if isinstance(numbered[1], bytes) else 0
            if len(batch) >= BATCH_LINES or size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
    batch.extend(splitter.close())
    if batch:
        yield batch


def _parse(
    kind: ImportFormat, batch: list[Numbered], tally: _Tally
) -> tuple[list[ImportedConversation], list[Numbered]]:
    """The conversations of the batch's first lines, up to `STORE_BYTES` of traces, and the
    lines left; each line that is not a conversation is counted as failed."""
    parsed: list[ImportedConversation] = []
    size = 0
    for index, (number, raw) in enumerate(batch):
        if isinstance(raw, TooLong):
            tally.fail(number, too_long_error(raw))
            continue
        try:
            conversation = parse_line(kind, raw)
        except LineError as exc:
            tally.fail(number, str(exc))
            continue
        parsed.append(conversation)
        size += stored_bytes(conversation)
        if size >= STORE_BYTES:
            return parsed, batch[index + 1 :]
    return parsed, []


async def _store(
    state: ProxyState,
    skillbook: str,
    conversations: list[ImportedConversation],
    settle_s: float,
    tally: _Tally,
) -> None:
    stored = await state.store.run(
        lambda s: s.traces.import_conversations(skillbook, conversations, settle_s=settle_s)
    )
    for conversation, new in zip(conversations, stored, strict=True):
        if new:
            tally.imported += 1
            tally.traces += len(conversation.turns)
        else:
            tally.skipped += 1


async def _write(answer: web.StreamResponse, line: dict[str, Any]) -> None:
    await answer.write(jsonio.dumps(line) + b"\n")
