"""`skillproxy episodes ...`: what the learner has read, why one failed, and re-queueing it;
each one call to a running proxy's admin API, like the other commands."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

from skillproxy.admin_client import AdminClient
from skillproxy.cli_output import done, print_json, table, time_of
from skillproxy.skillbooks_cli import Leaf, Subparsers

STATUSES = ("open", "reflected", "failed", "skipped")


def add_episode_commands(subparsers: Subparsers, leaf: Leaf) -> None:
    episodes = subparsers.add_parser("episodes", help="what the learner read, and why it failed")
    group = episodes.add_subparsers(dest="episodes_command", required=True, metavar="COMMAND")
    listing = leaf(group, "list", _list, "list episodes, newest activity first")
    listing.add_argument("--skillbook")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int, default=50, help="at most N (1-500)")
    listing.add_argument("--before", type=float, help="older than this last_at (paging)")
    show = leaf(group, "show", _show, "an episode: traces, feedback, reflections, errors")
    show.add_argument("id")
    retry = leaf(group, "retry", _retry, "re-queue failed episodes for the next learner run")
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.add_argument("--failed", action="store_true", help="every failed one of --skillbook")
    retry.add_argument("--skillbook", default="default")


def _list(client: AdminClient, args: argparse.Namespace) -> None:
    page = client.list_episodes(args.skillbook, args.status, args.limit, args.before)
    if args.json:
        return print_json(page)
    rows = [
        [
            e["id"], e["skillbook"], e["status"], str(e["trace_count"]), str(e["attempts"]),
            time_of(e["last_at"]), e.get("error") or "",
        ]
        for e in page["data"]
    ]  # fmt: skip
    if rows:
        print(table(["ID", "SKILLBOOK", "STATUS", "TRACES", "TRIES", "LAST", "ERROR"], rows))
    else:
        print("no episodes", file=sys.stderr)
    if page.get("next_before") is not None:
        print(f"more: --before {page['next_before']!r}", file=sys.stderr)
    return None


def _show(client: AdminClient, args: argparse.Namespace) -> None:
    episode = client.get_episode(args.id)
    if args.json:
        return print_json(episode)
    print(f"{episode['id']}  [{episode['status']}]  skillbook {episode['skillbook']}")
    print(f"session   {episode.get('session_key') or '-'}")
    print(f"traces    {episode['trace_count']}, {time_of(episode['first_at'])} .. "
          f"{time_of(episode['last_at'])}")  # fmt: skip
    print(f"attempts  {episode['attempts']}")
    if episode.get("error"):
        print(f"error     {episode['error']}")
    print()
    rows = [
        [t["id"], time_of(t["created_at"]), str(t.get("status") or "-"), t.get("model") or "-"]
        for t in episode["traces"]
    ]
    print(table(["TRACE", "AT", "STATUS", "MODEL"], rows))
    for item in episode["feedback"]:
        verdict = item["label"] if item.get("score") is None else f"{item['score']:g}"
        print(f"feedback  {verdict}  {item.get('comment') or ''}".rstrip())
    for reflection in episode["reflections"]:
        print(f"\nreflection {reflection['seq']} (run {reflection['run']})")
        _fields(reflection["reflection"])
    for refused in episode["refused"]:
        print(f"\nrefused   {refused['content']}\n          rule: {refused['rule']}")
    return None


def _fields(reflection: dict[str, Any]) -> None:
    for key, value in reflection.items():
        if value in ("", [], None):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        print(textwrap.fill(text, 96, initial_indent=f"  {key}: ", subsequent_indent="    "))


def _retry(client: AdminClient, args: argparse.Namespace) -> None:
    if not args.ids and not args.failed:
        raise SystemExit("skillproxy: give episode ids, or --failed for every failed one")
    result = client.retry_episodes(list(args.ids), None if args.ids else args.skillbook)
    count = len(result["retried"])
    done(args, result, f"re-queued {count} episode{'s' if count != 1 else ''}")
