"""The `skillproxy` command: `serve` starts the proxy; the other commands talk to a running one.

Settings come from `--config FILE`, then `SKILLPROXY_<SECTION>__<KEY>` environment variables,
then the flags given here, each later source overriding the earlier ones.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from core.config import Config, ConfigError, load_config
from learner.sandbox import sandbox_support
from proxy.runtime import tune_for_serving
from skillproxy.admin_cli import add_admin_commands, run_admin_command
from skillproxy.app import create_app
from skillproxy.learn_cli import add_learn_command, run_learn

log = logging.getLogger("skillproxy")


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
    serve.add_argument("--admin-token", help="bearer token for /admin/ (admin.token)")
    add_admin_commands(commands)
    add_learn_command(commands)
    return parser


def serve_config(args: argparse.Namespace) -> Config:
    return load_config(
        args.config,
        overrides={
            "server": {"host": args.host, "port": args.port},
            "store": {"url": args.db},
            "upstream": {
                "openai_base_url": args.upstream,
                "anthropic_base_url": args.anthropic_upstream,
            },
            "admin": {"token": args.admin_token},
        },
    )


def serve(config: Config) -> None:
    app = create_app(config)
    log.info(
        "skillproxy on http://%s:%d  store=%s  upstream=%s",
        config.server.host,
        config.server.port,
        config.store.url,
        config.upstream.openai_base_url,
    )
    if not config.admin.token:
        log.warning("no admin.token set: the admin API (/admin/) answers only clients on loopback")
    tune_for_serving(app)
    web.run_app(
        app,
        host=config.server.host,
        port=config.server.port,
        handler_cancellation=True,
        access_log=None,
        print=None,
        shutdown_timeout=10.0,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "learn":
        return run_learn(args)
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
    if config.learner.enabled and config.learner.recursive and (reason := sandbox_support()):
        print(f"skillproxy: learner.recursive refused: {reason}", file=sys.stderr)
        return 2
    serve(config)
    return 0
