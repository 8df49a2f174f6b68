"""`POST /admin/skillbooks/{s}/traces/import`: a JSONL file of conversations becomes traces.

The body is read as it arrives, never whole (`LineSplitter` holds at most one line, capped),
parsed in batches off the event loop (`skillproxy.trace_import`), and each batch is one store
call: what a batch accepted is committed before the next line is read, so a bad line, a
client that hangs up or a store that fails later loses nothing already accepted. The answer
is NDJSON, progress lines as batches commit and a summary last, because a large file takes a while
and its sender should see it moving.

The formats whose conversations span lines (`claude-code`, `langfuse`, `otlp-json`) are fed
line by line to their reader, which holds the open conversations within caps
(`skillproxy.import_formats.grouping`); their conversations are complete, and stored in
batches, only once the body has ended. Lines are reported by number either way, and a
conversation refused at the end at the line it began at.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from core import jsonio
from core.redaction import Redactor
from proxy.state import ProxyState
from skillproxy.admin.guard import AdminError
from skillproxy.admin.requests import Query, query_of, skillbook_name, state_of
from skillproxy.import_formats.grouping import Finished, GroupedFormat
from skillproxy.import_formats.langfuse import DEFAULT_SCORE_NAMES
from skillproxy.import_formats.privacy import import_redactor, redacted
from skillproxy.import_formats.turns import unexpected
from skillproxy.trace_import import (
    LINE_FORMATS,
    ImportFormat,
    LineError,
    LineSplitter,
    TooLong,
    grouped,
    line_limit,
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

log = logging.getLogger("skillproxy.import")


class TraceImportQuery(Query):
    format: Literal["openai-jsonl", "anthropic-jsonl", "claude-code", "langfuse", "otlp-json"] = (
        Field(
            description=(
                "openai-jsonl: one {messages, tools?} conversation per line, as OpenAI's chat "
                "fine-tuning files; anthropic-jsonl: a Messages request per line, optionally "
                "with its response, or a Message Batches line {custom_id, params, result?}; "
                "either may add session_id, model, and score (0..1) and/or label as session "
                "feedback. Conversations over many lines: claude-code: a Claude Code session "
                "transcript (~/.claude/projects/*/<session>.jsonl), a session per episode; "
                "langfuse: Langfuse's export of traces, observations and scores (blob storage "
                "JSONL or API records), a trace per episode, each GENERATION a turn, a 0..1 "
                "score named in score_names as feedback; otlp-json: OTLP/JSON trace exports, one "
                "ExportTraceServiceRequest per line (or one pretty-printed), spans following "
                "the GenAI semantic conventions, a trace per episode, each chat span a turn"
            )
        )
    )
    score_names: str | None = Field(
        default=None,
        description=(
            "langfuse only: the score names taken as feedback, comma-separated, compared as "
            "labels are (user_feedback is user-feedback); default: "
            + ",".join(DEFAULT_SCORE_NAMES)
            + ". Other scores (a toxicity score, high when the answer is bad) are left out"
        ),
    )


class FailedLine(BaseModel):
    line: int
    error: str


class ImportProgress(BaseModel):
    """A progress line, after a batch (at most about once a second): the last line read, and
    the conversations stored (`imported`), found stored before (`skipped`) and refused so far.

    The formats whose conversations span lines store nothing until the body has ended, so
    for them `held` says how many conversations have been read and are held until then; as
    they are stored, `imported` grows and `held` falls to 0."""

    line: int
    imported: int
    skipped: int
    failed: int
    held: int | None = None


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
    """Set when the import stopped early (the store became unavailable, the body broke off,
    an internal error): lines up to `lines` were handled, some after it may have been, the
    rest were not read; importing the same file again adds only what is missing."""


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

    def progress(self, held: int | None) -> dict[str, Any]:
        return ImportProgress(
            line=self.line, imported=self.imported, skipped=self.skipped,
            failed=self.failed_count, held=held,
        ).model_dump(exclude_none=True)  # fmt: skip

    def done(self, error: str | None = None) -> dict[str, Any]:
        failed = sorted(self.failed, key=lambda f: f.line)  # conversations refused at the end
        return ImportDone(
            done=True, lines=self.line, imported=self.imported, skipped=self.skipped,
            traces=self.traces, failed=failed, failed_count=self.failed_count, error=error,
        ).model_dump()  # fmt: skip


Numbered = tuple[int, bytes | TooLong]


async def import_traces(request: web.Request) -> web.StreamResponse:
    state, skillbook = state_of(request), skillbook_name(request)
    query = query_of(request, TraceImportQuery)
    kind: ImportFormat = query.format
    score_names = _score_names(kind, query.score_names)
    settle_s = state.config.learner.settle_s
    redactor = import_redactor(state.config, skillbook)
    answer = web.StreamResponse(headers={"Content-Type": NDJSON})
    await answer.prepare(request)
    tally = _Tally()
    reader = None if kind in LINE_FORMATS else grouped(kind, score_names=score_names)
    progress = _Progress(answer, tally, reader)
    try:
        async for batch in _batches(request, line_limit(kind)):
            if reader is not None:  # held until the body ends
                await asyncio.to_thread(_feed, reader, batch, tally)
                rest: list[Numbered] = []
            else:
                rest = batch
            while rest:
                parsed, rest = await asyncio.to_thread(_parse, kind, rest, tally)
                if parsed:
                    await _store(state, skillbook, parsed, settle_s, tally, redactor)
            tally.line = batch[-1][0]
            await progress.maybe()
        if reader is not None:
            finished = reader.finish()
            while parsed := await asyncio.to_thread(_take, finished, tally):
                await _store(state, skillbook, parsed, settle_s, tally, redactor)
                await progress.maybe()
    except StoreUnavailable as exc:
        await _write(answer, tally.done(f"the store is unavailable: {exc}; import again later"))
        return answer
    except ConnectionResetError:  # the client hung up: no one to tell
        raise
    except Exception as exc:  # the answer has begun: it ends with a summary, not a 500 page
        log.exception("import into %s (%s) stopped", skillbook, kind)
        await _write(answer, tally.done(_stopped(exc)))
        return answer
    await _write(answer, tally.done())
    await answer.write_eof()
    return answer


def _score_names(kind: ImportFormat, given: str | None) -> list[str] | None:
    if given is None:
        return None
    if kind != "langfuse":
        raise AdminError(400, "score_names: only for format=langfuse", "invalid_query")
    names = [name.strip() for name in given.split(",") if name.strip()]
    if not names:
        raise AdminError(400, "score_names: name at least one score", "invalid_query")
    return names


class _Progress:
    """Writes a progress line now and then (`PROGRESS_EVERY_S`), the first at once."""

    def __init__(
        self, answer: web.StreamResponse, tally: _Tally, reader: GroupedFormat | None
    ) -> None:
        self._answer, self._tally, self._reader = answer, tally, reader
        self._last = float("-inf")

    async def maybe(self) -> None:
        if time.monotonic() - self._last < PROGRESS_EVERY_S:
            return
        self._last = time.monotonic()
        held = None if self._reader is None else self._reader.held()
        await _write(self._answer, self._tally.progress(held))


def _stopped(exc: Exception) -> str:
    if isinstance(exc, web.RequestPayloadError):  # aiohttp's reading of the body
        return f"the request body broke off ({exc}); import the file again"
    return "an internal error stopped the import (the proxy's log has the traceback)"


async def _batches(request: web.Request, limit: int) -> AsyncIterator[list[Numbered]]:
    """The body's lines, in batches of `BATCH_LINES` or `BATCH_BYTES`, whichever comes first."""
    splitter, batch, size = LineSplitter(limit), list[Numbered](), 0
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
        except Exception:  # a bug: this line's failure, not the batch's
            tally.fail(number, str(unexpected(f"line {number}")))
            continue
        parsed.append(conversation)
        size += stored_bytes(conversation)
        if size >= STORE_BYTES:
            return parsed, batch[index + 1 :]
    return parsed, []


def _feed(reader: GroupedFormat, batch: list[Numbered], tally: _Tally) -> None:
    """Each line of the batch to a reader of conversations that span lines."""
    for number, raw in batch:
        if isinstance(raw, TooLong):
            tally.fail(number, too_long_error(raw))
            continue
        try:
            reader.feed(number, raw)
        except LineError as exc:
            tally.fail(number, str(exc))
        except Exception:  # a bug: this line's failure, not the batch's
            tally.fail(number, str(unexpected(f"line {number}")))


def _take(finished: Iterator[Finished], tally: _Tally) -> list[ImportedConversation]:
    """The next finished conversations, up to `STORE_BYTES` of traces; each refused one
    counted as a failed line. Empty once there are no more."""
    parsed: list[ImportedConversation] = []
    size = 0
    for number, outcome in finished:
        if isinstance(outcome, LineError):
            tally.fail(number, str(outcome))
            continue
        parsed.append(outcome)
        size += stored_bytes(outcome)
        if size >= STORE_BYTES:
            break
    return parsed


async def _store(
    state: ProxyState,
    skillbook: str,
    conversations: list[ImportedConversation],
    settle_s: float,
    tally: _Tally,
    redactor: Redactor | None,
) -> None:
    """Store a batch, redacted first as `[privacy]` asks for the skillbook's traces."""
    if redactor is not None:
        conversations = await asyncio.to_thread(redacted, conversations, redactor)
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
