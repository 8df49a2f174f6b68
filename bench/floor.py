"""A feature-less aiohttp pass-through proxy: the floor any Python proxy on this stack pays.

It does only what every proxy must (one pooled upstream session, copy method, path, body and
end-to-end headers, relay the response chunk by chunk as it arrives), so skillproxy's overhead is
measured against it rather than against the bare provider.

    python bench/floor.py --port 9002 --upstream http://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


def _end_to_end(headers: Mapping[str, str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


async def forward(request: web.Request) -> web.StreamResponse:
    url = URL(request.app[UPSTREAM] + request.raw_path, encoded=True)
    body = await request.read()
    try:
        async with request.app[SESSION].request(
            request.method, url, data=body, headers=_end_to_end(request.headers)
        ) as upstream:
            resp = web.StreamResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=_end_to_end(upstream.headers),
            )
            if upstream.content_length is not None:
                resp.content_length = upstream.content_length
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
    except aiohttp.ClientError as exc:
        return web.json_response(
            {"error": {"message": str(exc), "type": "upstream_error"}}, status=502
        )


def create_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            app[SESSION] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL; the path is appended as is")
    args = parser.parse_args()
    web.run_app(
        create_app(args.upstream), host=args.host, port=args.port, access_log=None, print=None
    )


if __name__ == "__main__":
    main()
