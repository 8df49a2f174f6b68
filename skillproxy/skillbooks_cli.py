"""`skillproxy skillbooks ...`: list, show, copy, freeze, delete and restore skillbooks, and
read their history; each one call to a running proxy's admin API, like the other commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

from skillproxy.admin_client import AdminClient
from skillproxy.cli_output import done, print_json, table, time_of

Command = Callable[[AdminClient, argparse.Namespace], None]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Leaf(Protocol):
    def __call__(
        self, group: Subparsers, name: str, run: Command, summary: str, *parents: Any
    ) -> argparse.ArgumentParser: ...


def add_skillbook_commands(subparsers: Subparsers, leaf: Leaf) -> None:
    books = subparsers.add_parser("skillbooks", help="list, copy, freeze, delete skillbooks")
    group = books.add_subparsers(dest="skillbooks_command", required=True, metavar="COMMAND")
    listing = leaf(group, "list", _list, "list skillbooks, who created each and when")
    listing.add_argument("--deleted", action="store_true", help="list the deleted ones")
    leaf(group, "show", _show, "show a skillbook's settings and counts").add_argument("name")
    copy = leaf(group, "copy", _copy, "copy a skillbook into a new one (new skill ids)")
    copy.add_argument("source")
    copy.add_argument("target")
    for name, run, summary in (
        ("freeze", _freeze, "keep what it injects exactly as now, until unfreeze"),
        ("unfreeze", _unfreeze, "inject its active skills again as they change"),
        ("delete", _delete, "delete (soft: it injects nothing; restore brings it back)"),
        ("restore", _restore, "bring back a deleted skillbook"),
        ("history", _history, "what happened to it: created, settings, frozen, imported"),
    ):
        leaf(group, name, run, summary).add_argument("name")


def _list(client: AdminClient, args: argparse.Namespace) -> None:
    books = client.list_deleted_skillbooks() if args.deleted else client.list_skillbooks()
    if args.json:
        return print_json(books)
    rows = [_row(book) for book in books]
    print(table(["NAME", "VERSION", "ACTIVE", "PENDING", "STATE", "CREATED"], rows))
    return None


def _row(book: dict[str, Any]) -> list[str]:
    counts = book["skills"]
    state = (
        "deleted"
        if book.get("deleted_at")
        else f"frozen at v{book['frozen_version']}"
        if book.get("frozen_version")
        else "live"
    )
    created = f"{time_of(book['created_at'])} by {book.get('created_by', 'unknown')}"
    return [
        book["name"], str(book["version"]), str(counts["active"]), str(counts["pending"]),
        state, created,
    ]  # fmt: skip


def _show(client: AdminClient, args: argparse.Namespace) -> None:
    book = client.get_skillbook(args.name)
    settings = client.get_settings(args.name)
    if args.json:
        return print_json({**book, "settings": settings})
    print(table(["NAME", "VERSION", "ACTIVE", "PENDING", "STATE", "CREATED"], [_row(book)]))
    for key, value in settings["effective"].items():
        own = "" if settings[key] is not None else " (default)"
        print(f"  {key:<13} {value}{own}")
    return None


def _copy(client: AdminClient, args: argparse.Namespace) -> None:
    copied = client.copy_skillbook(args.source, args.target)
    count = copied["summary"]["created"]
    done(args, copied, f"copied {args.source} into {args.target}: {count} skills")


def _freeze(client: AdminClient, args: argparse.Namespace) -> None:
    settings = client.update_settings(args.name, {"frozen": True})
    done(args, settings, f"froze {args.name} at version {settings['frozen_version']}")


def _unfreeze(client: AdminClient, args: argparse.Namespace) -> None:
    settings = client.update_settings(args.name, {"frozen": False})
    done(args, settings, f"unfroze {args.name}: now version {settings['version']}")


def _delete(client: AdminClient, args: argparse.Namespace) -> None:
    book = client.delete_skillbook(args.name)
    hint = f"skillproxy skillbooks restore {args.name} undoes it"
    done(args, book, f"deleted {args.name} ({hint})")


def _restore(client: AdminClient, args: argparse.Namespace) -> None:
    book = client.restore_skillbook(args.name)
    done(args, book, f"restored {args.name}")


def _history(client: AdminClient, args: argparse.Namespace) -> None:
    events = client.skillbook_history(args.name)
    if args.json:
        return print_json(events)
    rows = [[time_of(e["at"]), e["action"], e["actor"], _detail(e["detail"])] for e in events]
    print(table(["AT", "ACTION", "ACTOR", "DETAIL"], rows))
    return None


def _detail(detail: dict[str, Any]) -> str:
    """`mode replace, created 2 (a-00001, b-00002)`: words, not Python reprs."""
    parts = []
    for key, value in detail.items():
        if isinstance(value, list):
            shown = ", ".join(map(str, value[:5])) + (", ..." if len(value) > 5 else "")
            parts.append(f"{key} {len(value)}" + (f" ({shown})" if value else ""))
        elif isinstance(value, bool) or value is None:
            parts.append(f"{key} {'default' if value is None else str(value).lower()}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts) or "-"
