"""The `skillproxy` command: `serve` starts the proxy; the other commands talk to a running one.

Settings come from `--config FILE`, then `SKILLPROXY_<SECTION>__<KEY>` environment variables,
then the flags given here, each later source overriding the earlier ones.

`serve` binds its sockets before it opens anything else, and refuses to start, with one line on
stderr and exit status 2, when it cannot listen (port taken, host unknown), when the store
cannot be opened, or when it would expose the server's own provider key to anyone who reaches
a non-loopback port (see `exposure_problem`).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from core.config import Config, ConfigError, load_config
from learner.llm import missing_key
from learner.sandbox import sandbox_support
from proxy.runtime import tune_for_serving
from skillproxy.admin_cli import add_admin_commands, run_admin_command
from skillproxy.app import create_app
from skillproxy.eval.cli import add_eval_command, run_eval
from skillproxy.learn_cli import add_learn_command, run_learn, store_failure
from store.url import hide_password

log = logging.getLogger("skillproxy")


class StartupError(Exception):
    """`serve` cannot start; the message says why and what to change, in one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skillproxy", description="An LLM proxy that lets agents learn from their traffic."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the proxy")
    serve.add_argument("--config", help="TOML config file (see config.example.toml)")
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (server.port)")
    serve.add_argument("--db", help="the store: sqlite:///path or a file path (store.url)")
    serve.add_argument("--upstream", help="OpenAI-compatible base URL (upstream.openai_base_url)")
    serve.add_argument(
        "--anthropic-upstream", help="Anthropic base URL (upstream.anthropic_base_url)"
    )
    serve.add_argument(
        "--admin-token",
        help="bearer token for /admin/ (admin.token); visible in ps, prefer "
        "SKILLPROXY_ADMIN__TOKEN or the config file",
    )
    serve.add_argument(
        "--client-key",
        action="append",
        metavar="KEY",
        help="a key clients must send to use /v1, repeatable (server.client_keys); visible "
        "in ps, prefer SKILLPROXY_SERVER__CLIENT_KEYS or the config file",
    )
    serve.add_argument(
        "--allow-open-relay",
        action="store_const",
        const=True,
        help="serve a non-loopback address with upstream.api_key set and no client keys: "
        "anyone reaching the port spends that key (server.allow_open_relay)",
    )
    add_admin_commands(commands)
    add_learn_command(commands)
    add_eval_command(commands)
    return parser


def serve_config(args: argparse.Namespace) -> Config:
    return load_config(
        args.config,
        overrides={
            "server": {
                "host": args.host,
                "port": args.port,
                "client_keys": args.client_key,
                "allow_open_relay": args.allow_open_relay,
            },
            "store": {"url": args.db},
            "upstream": {
                "openai_base_url": args.upstream,
                "anthropic_base_url": args.anthropic_upstream,
            },
            "admin": {"token": args.admin_token},
        },
    )


@dataclass(frozen=True)
class Listener:
    """The sockets `serve` listens on, bound (not yet listening) before the app starts."""

    host: str
    port: int
    sockets: tuple[socket.socket, ...]

    @property
    def addresses(self) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [ipaddress.ip_address(s.getsockname()[0].split("%", 1)[0]) for s in self.sockets]

    @property
    def urls(self) -> str:
        found = []
        for sock in self.sockets:
            host, port = sock.getsockname()[:2]
            found.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
        return ", ".join(found)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def bind(host: str, port: int) -> Listener:
    """Resolve `host` and bind one socket per address, as asyncio's `create_server` would
    (SO_REUSEADDR, IPv6 sockets IPv6-only, families this machine lacks skipped), so that a
    port in use or an unknown host is reported before the store and the trace sink open."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(
            f"cannot resolve server.host {host!r}: {exc.strerror}; give an IP address of this "
            "machine (127.0.0.1 for loopback only) with --host or server.host"
        ) from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    failure: OSError | None = None
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # a family this machine does not support
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise
                failure = exc  # e.g. ::1 for "localhost" where IPv6 is off: skip it
                sockets.pop().close()
        if not sockets:
            raise failure or OSError(errno.EADDRNOTAVAIL, "no usable address")
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise StartupError(_bind_failure(where, exc)) from None
    return Listener(host, port, tuple(sockets))


def _bind_failure(where: str, exc: OSError) -> str:
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno == errno.EADDRINUSE:
        hint = "another process listens there; stop it or choose another port (server.port)"
    elif exc.errno == errno.EACCES:
        hint = "ports below 1024 need privileges; choose another port (server.port)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        hint = "server.host must be an address of this machine"
    else:
        hint = "check server.host and server.port"
    return f"cannot listen on {where}: {reason}; {hint}"


def is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def exposure_problem(config: Config, listener: Listener) -> str | None:
    """Why serving here would hand the server's provider key to strangers, or None.

    With `upstream.api_key` (or `anthropic_api_key`) set, the proxy pays for every request it
    forwards. On a loopback address only this machine can send them; anywhere else, anyone
    who reaches the port can, unless clients must present one of `server.client_keys`.
    """
    keys = [
        name
        for name, value in (
            ("upstream.api_key", config.upstream.api_key),
            ("upstream.anthropic_api_key", config.upstream.anthropic_api_key),
        )
        if value
    ]
    exposed = [str(a) for a in listener.addresses if not is_loopback(a)]
    if not keys or not exposed or config.server.client_keys:
        return None
    return (
        f"{' and '.join(keys)} set, no server.client_keys, and listening on {', '.join(exposed)}"
        " (not loopback): anyone who reaches the port would spend the server's key"
    )


def serve(config: Config, listener: Listener, *, warnings: Sequence[str] = ()) -> None:
    """Run the proxy on `listener` until a signal; `warnings` are logged once it is ready."""
    app = create_app(config)
    started = False

    async def report_ready(app: web.Application) -> None:
        """Runs once the store, the sink and the rest are open: the start can no longer fail
        for them, so this is when the operator is told where the proxy listens."""
        nonlocal started
        started = True
        log.info(
            "skillproxy on %s  store=%s  upstream=%s",
            listener.urls,
            hide_password(config.store.url),
            config.upstream.openai_base_url,
        )
        if not config.admin.token:
            log.warning(
                "no admin.token set: the admin API (/admin/) answers only clients on loopback"
            )
        for warning in warnings:
            log.warning("%s", warning)

    tune_for_serving(app)
    app.on_startup.append(report_ready)
    try:
        web.run_app(
            app,
            sock=listener.sockets,
            handler_cancellation=True,
            access_log=None,
            print=None,
            shutdown_timeout=10.0,
        )
    except Exception as exc:
        reason = None if started else store_failure(exc, config.store.url)
        if reason is None:
            raise
        raise StartupError(f"cannot start: {reason}") from None
    finally:
        listener.close()


SECRET_FLAGS = (
    ("admin_token", "--admin-token", "SKILLPROXY_ADMIN__TOKEN"),
    ("client_key", "--client-key", "SKILLPROXY_SERVER__CLIENT_KEYS"),
)
"""Flags that carry a secret: (argparse dest, the flag, the variable to use instead)."""


def secrets_on_argv(args: argparse.Namespace) -> list[str]:
    return [
        f"{flag} was given on the command line, where any local user can read it (ps, /proc);"
        f" set {variable} or put it in the config file instead"
        for dest, flag, variable in SECRET_FLAGS
        if getattr(args, dest) is not None
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "learn":
        return run_learn(args)
    if args.command == "eval":
        return run_eval(args)
    if args.command != "serve":
        return run_admin_command(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = serve_config(args)
    except ConfigError as exc:
        print(f"skillproxy: configuration error: {exc}", file=sys.stderr)
        return 2
    if config.learner.enabled and (problem := missing_key(config.learner)) is not None:
        print(f"skillproxy: {problem}", file=sys.stderr)
        return 2
    if config.learner.enabled and config.learner.recursive and (reason := sandbox_support()):
        print(f"skillproxy: learner.recursive refused: {reason}", file=sys.stderr)
        return 2
    try:
        listener = bind(config.server.host, config.server.port)
    except StartupError as exc:
        print(f"skillproxy: {exc}", file=sys.stderr)
        return 2
    if (relay := exposure_problem(config, listener)) and not config.server.allow_open_relay:
        listener.close()
        print(
            f"skillproxy: refusing to start: {relay}; set server.client_keys (clients then "
            "send one as their key), listen on 127.0.0.1, or pass --allow-open-relay "
            "(server.allow_open_relay = true) if that is intended",
            file=sys.stderr,
        )
        return 2
    warnings = [f"open relay (server.allow_open_relay): {relay}"] if relay else []
    try:
        serve(config, listener, warnings=[*warnings, *secrets_on_argv(args)])
    except StartupError as exc:
        print(f"skillproxy: {exc}", file=sys.stderr)
        return 2
    return 0
