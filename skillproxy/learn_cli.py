"""`skillproxy learn`: run the learner as its own process, with progress and a summary."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from core.config import Config, ConfigError, load_config
from learner.llm import missing_key
from learner.sandbox import sandbox_support
from learner.service import learn_once, waiting_for
from store.errors import StoreError
from store.url import hide_password

BAR_WIDTH = 30


def add_learn_command(commands: Any) -> None:
    learn = commands.add_parser("learn", help="run the learner over logged traffic")
    learn.add_argument("--config", help="TOML config file (the [learner] section)")
    learn.add_argument("--db", help="the store: sqlite:///path or a file path (store.url)")
    learn.add_argument("--skillbook", help="only this skillbook (default: every one with work)")
    learn.add_argument("--once", action="store_true", help="one run, then exit")
    learn.add_argument("--model", help="litellm model string (learner.model)")
    learn.add_argument("--api-base", help="base URL for the learner's model (learner.api_base)")
    learn.add_argument(
        "--now",
        action="store_true",
        help="count every conversation as finished now (settle_s and episode_idle_s 0)",
    )


def run_learn(args: argparse.Namespace) -> int:
    try:
        config = load_config(
            args.config,
            overrides={
                "store": {"url": args.db},
                "learner": {
                    "model": args.model,
                    "api_base": args.api_base,
                    **({"settle_s": 0, "episode_idle_s": 0} if args.now else {}),
                },
            },
        )
    except ConfigError as exc:
        print(f"skillproxy: configuration error: {exc}", file=sys.stderr)
        return 2
    if not config.learner.model:
        print(
            "skillproxy: set learner.model (or --model) to a litellm model string", file=sys.stderr
        )
        return 2
    if (problem := missing_key(config.learner)) is not None:
        print(f"skillproxy: {problem}", file=sys.stderr)
        return 2
    if config.learner.recursive and (reason := sandbox_support()):
        print(f"skillproxy: recursive reflector refused: {reason}", file=sys.stderr)
        return 2
    first = True
    while True:
        try:
            summaries = learn_once(config, skillbook=args.skillbook, progress=_progress)
        except Exception as exc:
            if (reason := store_failure(exc, config.store.url)) is None:
                raise
            if args.once or first:  # nothing learned yet: most likely the wrong file
                print(f"skillproxy: cannot start: {reason}", file=sys.stderr)
                return 2
            print(
                f"skillproxy: {reason}; retrying in {config.learner.interval_s:g} s",
                file=sys.stderr,
            )
            time.sleep(config.learner.interval_s)
            continue
        first = False
        failed = []
        for summary in summaries:
            _print_summary(summary.as_dict())
            if summary.reflections == 0 and (summary.failures or summary.deferred):
                failed.append(f"{summary.skillbook}: {summary.stopped}")
        if not summaries:
            print(_nothing_yet(config, args.skillbook), file=sys.stderr)
        for reason in failed:
            print(f"skillproxy: the learner could do nothing useful for {reason}", file=sys.stderr)
        if args.once:
            return 1 if failed else 0
        time.sleep(config.learner.interval_s)


def store_failure(exc: BaseException, url: str) -> str | None:
    """What is wrong with the store at `url`, when `exc` says it cannot be used (corrupted,
    locked, gone), as one line naming it; None for any other error, which is a bug and keeps
    its traceback.

    The store raises `StoreError` (`StoreUnavailable` for a file it cannot open). SQLite's own
    `DatabaseError`, should one still escape the engine, is recognised by its class's name:
    above `store/` nothing imports sqlite3 (tests/test_layout.py).
    """
    where = hide_password(url)
    if isinstance(exc, StoreError):
        message = str(exc) or type(exc).__name__
        shown = where.removeprefix("sqlite:///")
        return message if shown in message else f"the store {where}: {message}"
    if any(c.__module__ == "sqlite3" and c.__name__ == "DatabaseError" for c in type(exc).__mro__):
        return f"the store {where} cannot be opened: {exc} (is it a skillproxy database?)"
    return None


def _nothing_yet(config: Config, skillbook: str | None) -> str:
    """Why there is nothing to learn from, and when there will be."""
    waiting = waiting_for(config, skillbook=skillbook)
    if not waiting:
        return "nothing to learn from yet: no traffic waits for the learner"
    traces = sum(w.settling_traces for w in waiting.values())
    episodes = sum(w.open_episodes for w in waiting.values())
    ready = [w.first_ready_at for w in waiting.values() if w.first_ready_at is not None]
    settings = config.learner
    line = (
        f"nothing to learn from yet: {traces} traces still settling "
        f"(learner.settle_s = {settings.settle_s:g}), {episodes} conversations not idle yet "
        f"(learner.episode_idle_s = {settings.episode_idle_s:g})"
    )
    if ready:
        first = min(ready)
        wait = max(0.0, first - time.time())
        line += f"; the first is ready at {time.strftime('%H:%M:%S', time.localtime(first))}"
        line += f" (in {wait:.0f} s)"
    return line + "; --now counts them as finished now"


def _progress(done: int, total: int, episode: str) -> None:
    filled = BAR_WIDTH * done // max(total, 1)
    bar = "█" * filled + " " * (BAR_WIDTH - filled)
    end = "\n" if done == total else ""
    print(f"\r▕{bar}▏ {done}/{total} episodes {episode[:24]:<24}", end=end, file=sys.stderr)


def _print_summary(s: dict[str, Any]) -> None:
    print(
        f"{s['skillbook']}: {s['episodes']} episodes read, {s['reflections']} reflected, "
        f"{s['failures']} failed, {s['deferred']} waiting to retry, {s['skipped']} skipped; "
        f"{s['proposals']} proposals, "
        f"{s['merged']} merged into existing skills, {s['tags']} tags; "
        f"{s['llm_calls']} LLM calls, {s['input_tokens']}+{s['output_tokens']} tokens, "
        f"${s['cost_usd']:.4f}; {s['redactions']} redactions"
        + (f"; stopped: {s['stopped']}" if s["stopped"] else "")
    )
    if s["failure"] and not s["stopped"]:
        print(f"  last failure: {s['failure']}")
    for refused in s["refused"]:
        print(f"  refused proposal {refused}")
