"""Reading a request's body: within `server.max_body_bytes` and `server.body_timeout_s`.

aiohttp's server undoes a body's `Content-Encoding` while reading it (gzip and deflate; br and
zstd only with their decoders installed, and without them it refuses the request itself) and
applies the app's `client_max_size`, which is `max_body_bytes`, to the inflated bytes, so a
small compressed body cannot grow past the limit. The body is forwarded inflated, without the
header (`Body.inflated`, `forwarding.upstream_headers`). An encoding aiohttp leaves alone is
forwarded as sent on pass-through routes; where the proxy must read the JSON it is a 415.

What aiohttp does not bound is the time a body takes: a client sending a byte a second would
hold its connection and handler for as long as it liked. The read gets `body_timeout_s` in all,
then a 408 and a closed connection. Nearly every body arrives with its headers and is complete
before the handler runs: those are read without arming a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import NamedTuple

from aiohttp import http_exceptions, web

from proxy import errors

INFLATED_ENCODINGS = frozenset({"gzip", "deflate", "br", "zstd"})
"""What aiohttp's parsers decode: one of these names, in any case (`HttpParser.parse_headers`,
and the same test in its C parser)."""


class Body(NamedTuple):
    data: bytes
    inflated: bool
    """aiohttp undid the client's `Content-Encoding`: forward `data` without that header."""


async def read_body(request: web.Request, *, limit: int, timeout_s: float, readable: bool) -> Body:
    """The whole body, inflated; a `ProxyError` (413, 408, 415 or 400) when it cannot be had.
    `readable`: the proxy must parse it, so an encoding it cannot undo is refused."""
    if request.content_length is not None and request.content_length > limit:
        raise errors.body_too_large(limit)
    inflated = _inflated(request, readable)
    try:
        if request.content.is_eof():  # all of it is here already: nothing to wait for
            data = await request.read()
        else:
            async with asyncio.timeout(timeout_s):
                data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.body_too_large(limit) from None
    except TimeoutError:
        if _all_arrived(request):  # not slow, broken: aiohttp never ends a body whose
            # deflate stream stops short (the error it finds waits for the next request)
            short = errors.invalid_body_encoding("the compressed data ends early")
            raise _closing(short) from None
        raise _closing(errors.body_timeout(timeout_s)) from None
    except web.RequestPayloadError as exc:  # the parser's error is its cause
        if isinstance(exc.__cause__, http_exceptions.ContentEncodingError):
            encoding = request.headers.get("Content-Encoding", "")
            detail = f"not valid {encoding[:40]!r} data"
            raise _closing(errors.invalid_body_encoding(detail)) from None
        raise _closing(errors.malformed_body(str(exc))) from None  # broken chunked framing
    return Body(data, inflated)


def _closing(error: errors.ProxyError) -> errors.ProxyError:
    return dataclasses.replace(error, close=True)


def _all_arrived(request: web.Request) -> bool:
    length = request.content_length
    return length is not None and getattr(request.content, "total_raw_bytes", -1) >= length


def _inflated(request: web.Request, readable: bool) -> bool:
    encoding = request.headers.get("Content-Encoding")
    if encoding is None:  # nearly every request
        return False
    encodings = request.headers.getall("Content-Encoding")
    decoded = [e for e in encodings if e.isascii() and e.lower() in INFLATED_ENCODINGS]
    if decoded and len(encodings) > 1:  # aiohttp's two parsers would not undo the same one
        raise errors.invalid_body_encoding("send one Content-Encoding header, not several")
    if not decoded and readable:
        for value in encodings:
            if value.strip().lower() not in ("", "identity"):
                raise errors.unsupported_encoding(value)
    return bool(decoded)


LINGER_S = 1.0
"""How long the rest of a body that failed (too slow, broken) is still read and dropped after
the answer, so a client still sending reads that answer rather than a reset."""
UPLOAD_LINGER_S = 10.0
"""The same for a body refused before it was read (a bad key, path or skillbook, too large):
it may be arriving at full speed, and the client read the answer once it has sent it all.
aiohttp's own `lingering_time`."""


async def answer_unread(
    request: web.Request, response: web.StreamResponse, error: errors.ProxyError
) -> None:
    """Send `response` now, with `Connection: close`, for a request whose body was not read
    to its end; then drop what the client still sends, for a while, and close. aiohttp would
    otherwise read the rest itself and keep the connection, but a broken rest (bad gzip or
    framing) makes it fail on the connection after the answer, and a client reusing it sees
    a reset. The answer is followed by a FIN; the socket closes at the end of the body, at an
    error, or after `LINGER_S` (`UPLOAD_LINGER_S` if the body was refused, not failed).
    Nothing to do when the body was read to its end: aiohttp sends `response` as usual."""
    if request.content.is_eof():
        return
    response.force_close()
    try:
        await response.prepare(request)
        await response.write_eof()
        transport = request.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(LINGER_S if error.close else UPLOAD_LINGER_S):
                    while await request.content.readany():
                        pass
    except ConnectionResetError:
        pass
    request.protocol.force_close()
