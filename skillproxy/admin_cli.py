"""The `skillproxy` commands for people at a terminal: skills, export, import, traces.

Each command is one call to a running proxy's admin API through `AdminClient`, so the CLI can
do nothing the API does not allow and needs no access to the database. Output is a compact table
or a readable detail view; `--json` prints the API's JSON instead, for scripts. Status lines that
are not the answer itself (counts, hints) go to stderr, so stdout can be piped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, BinaryIO, TypeAlias

from skillproxy import exports
from skillproxy.admin_client import AdminAPIError, AdminClient
from skillproxy.cli_output import done, print_json, table, terminal_width, time_of
from skillproxy.episodes_cli import add_episode_commands
from skillproxy.import_formats.langfuse import DEFAULT_SCORE_NAMES
from skillproxy.skillbooks_cli import add_skillbook_commands

DEFAULT_URL = "http://127.0.0.1:8080"
URL_VARIABLE = "SKILLPROXY_URL"
TOKEN_VARIABLE = "SKILLPROXY_ADMIN__TOKEN"  # the variable `serve` reads admin.token from
ACTOR_VARIABLE = "SKILLPROXY_ACTOR"
STATUSES = ("pending", "active", "rejected", "archived")
TRACE_FORMATS = ("openai-jsonl", "anthropic-jsonl", "claude-code", "langfuse", "otlp-json")
IMPORT_CHUNK = 64 * 1024
EXPORT_FORMATS = ("json", "markdown", "agents-md", "claude-md", "skill-md", "langfuse")
FILE_KINDS: dict[str, exports.FileKind] = {"agents-md": "agents", "claude-md": "claude"}
ACTIONS = {  # action: (past tense, help)
    "approve": ("approved", "make a pending or rejected skill active"),
    "reject": ("rejected", "reject a pending skill"),
    "archive": ("archived", "stop using a pending or active skill"),
    "restore": (
        "restored",
        "bring back a deleted skill as it was, an archived one to the status it had, "
        "a rejected one to pending",
    ),
}

Command = Callable[[AdminClient, argparse.Namespace], None]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(Exception):
    """A failure on this side of the API, such as an import file that is not JSON."""


class UsageError(CommandError):
    """Arguments that do not go together (exit status 2, as argparse's own refusals)."""


def add_admin_commands(subparsers: Subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help=f"the proxy's base URL (default: ${URL_VARIABLE}, else {DEFAULT_URL})"
    )
    common.add_argument("--token", help=f"admin token (default: ${TOKEN_VARIABLE})")
    common.add_argument("--json", action="store_true", help="print the API's JSON as it is")
    common.add_argument(
        "--actor",
        help=f"who the history records for changes (default: ${ACTOR_VARIABLE}, else $USER)",
    )
    book = argparse.ArgumentParser(add_help=False)
    book.add_argument("--skillbook", default="default", help="skillbook name (default: default)")

    def leaf(
        group: Subparsers, name: str, run: Command, summary: str, *parents: argparse.ArgumentParser
    ) -> argparse.ArgumentParser:
        parser = group.add_parser(name, help=summary, parents=[common, *parents])
        parser.set_defaults(run=run)
        return parser

    skills = subparsers.add_parser("skills", help="review and edit skills").add_subparsers(
        dest="skills_command", required=True, metavar="COMMAND"
    )
    listing = leaf(skills, "list", _list_skills, "list a skillbook's skills", book)
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--section")
    listing.add_argument("--q", metavar="TEXT", help="only skills whose content contains TEXT")
    listing.add_argument("--deleted", action="store_true", help="list the deleted skills")
    leaf(skills, "show", _show_skill, "show a skill with its evidence and history").add_argument(
        "id"
    )
    add = leaf(skills, "add", _add_skill, "propose a skill (it arrives pending)", book)
    add.add_argument("--section", required=True)
    add.add_argument("content")
    for action, (_, summary) in ACTIONS.items():
        change = leaf(skills, action, _change_status, f"{summary} (several ids: all or none)")
        change.add_argument("ids", nargs="+", metavar="ID")
        change.add_argument(
            "--skillbook", help="the skillbook of several ids (default: the first id's)"
        )
        if action == "approve":
            change.add_argument(
                "--canary", type=_share, metavar="SHARE",
                help="approve as a canary: inject into this share of sessions only (20%%)",
            )  # fmt: skip
    canary = leaf(skills, "canary", _canary, "a canary's figures per arm and its verdict")
    canary.add_argument("id")
    canary.add_argument("--stop", action="store_true", help="end it, leaving the skill as it was")
    leaf(skills, "delete", _delete_skill, "delete a skill (restore brings it back)").add_argument(
        "id"
    )
    leaf(
        skills, "outcomes", _outcomes, "feedback of episodes with the skill and without it"
    ).add_argument("id")
    edit = leaf(skills, "edit", _edit_skill, "change a skill's content or section")
    edit.add_argument("id")
    edit.add_argument("--content")
    edit.add_argument("--section")
    rollback = leaf(skills, "rollback", _rollback, "return a skill to an earlier revision")
    rollback.add_argument("id")
    rollback.add_argument("revision", type=int)
    prompt = leaf(skills, "prompt", _prompt, "print the exact text the proxy injects now", book)
    prompt.add_argument("--model", help="count tokens as this model does")
    prompt.add_argument("--query", help="rank for this request text (relevance ranking)")

    export = leaf(
        subparsers, "export", _export,
        "write a skillbook as JSON, Markdown, an AGENTS.md/CLAUDE.md section, Agent Skills "
        "folders or a Langfuse prompt",
    )  # fmt: skip
    export.add_argument(
        "name",
        nargs="?",
        metavar="SKILLBOOK",
        help="the skillbook (or --skillbook; default: default)",
    )
    export.add_argument("--skillbook", help="the skillbook, as the other commands name it")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="json")
    where = export.add_mutually_exclusive_group()
    where.add_argument(
        "-o", "--output", metavar="FILE",
        help="write here, not to stdout (agents-md, claude-md: merge into FILE)",
    )  # fmt: skip
    where.add_argument(
        "--out", metavar="DIR",
        help="agents-md, claude-md: merge into DIR/AGENTS.md or DIR/CLAUDE.md; "
        "skill-md (required): write DIR/<folder>/SKILL.md",
    )  # fmt: skip
    imports = leaf(subparsers, "import", _import, "load a JSON export into a skillbook")
    imports.add_argument("file", metavar="FILE", help="a JSON export, or - for stdin")
    imports.add_argument(
        "--skillbook", help="import into this skillbook (default: the one named in the file)"
    )
    imports.add_argument("--mode", choices=("merge", "replace"), default="merge")

    traces = subparsers.add_parser("traces", help="look at recorded exchanges").add_subparsers(
        dest="traces_command", required=True, metavar="COMMAND"
    )
    trace_list = leaf(traces, "list", _list_traces, "list traces, newest first")
    trace_list.add_argument("--skillbook", help="only this skillbook's traces (default: all)")
    trace_list.add_argument("--limit", type=int, default=50, help="at most N (1-500)")
    trace_list.add_argument("--before", type=float, help="older than this created_at (paging)")
    leaf(traces, "show", _show_trace, "show one trace with its bodies").add_argument("id")
    trace_import = leaf(
        traces, "import", _import_traces,
        "import conversations from a JSONL file as traces the learner learns from",
    )  # fmt: skip
    trace_import.add_argument("file", metavar="FILE", help="a JSONL file, or - for stdin")
    trace_import.add_argument(
        "--format", choices=TRACE_FORMATS, required=True,
        help="openai-jsonl, anthropic-jsonl: a conversation per line; claude-code: a Claude "
        "Code session transcript; langfuse: a Langfuse export (traces, observations, scores); "
        "otlp-json: OTLP/JSON trace exports of GenAI spans",
    )  # fmt: skip
    trace_import.add_argument(
        "--skillbook", default="default", help="skillbook name (default: default)"
    )
    trace_import.add_argument(
        "--score-name", action="append", dest="score_names", metavar="NAME",
        help="langfuse: take the scores of this name as feedback (repeat for more; default: "
        f"{', '.join(DEFAULT_SCORE_NAMES)})",
    )  # fmt: skip
    add_skillbook_commands(subparsers, leaf)
    add_episode_commands(subparsers, leaf)


def run_admin_command(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get(URL_VARIABLE) or DEFAULT_URL
    token = args.token if args.token is not None else os.environ.get(TOKEN_VARIABLE)
    actor = args.actor or os.environ.get(ACTOR_VARIABLE) or os.environ.get("USER")
    command: Command = args.run
    try:
        with AdminClient(url, token, actor=actor) as client:
            command(client, args)
    except AdminAPIError as exc:
        return _fail(_describe(exc))
    except UsageError as exc:
        return _fail(str(exc), status=2)
    except (CommandError, OSError) as exc:
        return _fail(str(exc))
    return 0


def _fail(message: str, status: int = 1) -> int:
    print(f"skillproxy: {message}", file=sys.stderr)
    return status


def _describe(exc: AdminAPIError) -> str:
    if exc.status == 0:
        return exc.message
    hint = f" (give --token or set ${TOKEN_VARIABLE})" if exc.code == "missing_token" else ""
    return f"{exc.message}{hint} [{exc.status} {exc.code}]"


# skills


def _list_skills(client: AdminClient, args: argparse.Namespace) -> None:
    found = client.list_skills(args.skillbook, args.status, args.section, args.q, args.deleted)
    if args.json:
        return print_json(found)
    if not found:
        print(f"no skills match in skillbook {args.skillbook!r}", file=sys.stderr)
        return None
    rows = [
        [s["id"], s["status"], s["section"], f"+{s['helpful']}/-{s['harmful']}", s["content"]]
        for s in found
    ]
    print(table(["ID", "STATUS", "SECTION", "VOTES", "CONTENT"], rows))


def _show_skill(client: AdminClient, args: argparse.Namespace) -> None:
    skill = client.get_skill(args.id)
    if args.json:
        return print_json(skill)
    state = skill["status"] + (", deleted" if skill.get("deleted_at") else "")
    print(f"{skill['id']}  [{state}]  skillbook {skill['skillbook']}")
    for key, label in (
        ("supersedes", "rewords"), ("superseded_by", "replaced by"),
        ("contradicts", "contradicts"), ("retire_reason", "retire?"),
    ):  # fmt: skip
        if skill.get(key):
            print(f"{label:<9} {skill[key]}")
    print(f"section   {skill['section']}")
    print(
        f"votes     +{skill['helpful']} helpful  -{skill['harmful']} harmful  "
        f"{skill['neutral']} neutral"
    )
    print(f"revision  {skill['revision']}, updated {time_of(skill['updated_at'])}")
    print()
    width = min(terminal_width() or 100, 100) - 2
    print(textwrap.fill(skill["content"], width, initial_indent="  ", subsequent_indent="  "))
    print()
    evidence = skill.get("evidence") or []
    print(f"evidence ({len(evidence)})")
    if evidence:
        rows = [[e["trace_id"], e["source"], e["reason"]] for e in evidence]
        print(table(["TRACE", "FROM", "REASON"], rows, indent=2))
    print()
    history = skill.get("history") or []
    print("history")
    rows = [
        [str(h["revision"]), h["action"], h["actor"], time_of(h["at"]), _change(h)] for h in history
    ]
    print(table(["REV", "ACTION", "ACTOR", "AT", "CHANGE"], rows, indent=2))


def _change(event: dict[str, Any]) -> str:
    """What one history event changed, in a few words."""
    before, after = event.get("before"), event["after"]
    if before is None:
        return f"{after['status']} in {after['section']!r}: {after['content']}"
    parts = [
        f"{key} {before[key]} -> {after[key]}"
        for key in ("status", "section")
        if before.get(key) != after.get(key)
    ]
    parts += [
        f"{key} {after[key] - before[key]:+d}"
        for key in ("helpful", "harmful", "neutral")
        if before.get(key) != after.get(key)
    ]
    if before.get("content") != after.get("content"):
        parts.append(f"content: {after['content']}")
    return "; ".join(parts) or "no change"


def _add_skill(client: AdminClient, args: argparse.Namespace) -> None:
    skill = client.create_skill(args.skillbook, args.section, args.content)
    done(args, skill, f"added {skill['id']} to {skill['skillbook']} ({skill['status']})")


def _share(text: str) -> float:
    """`20%` or `20`: a percent of sessions strictly between 0 and 100."""
    try:
        share = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a share: give a percent, e.g. 20%"
        ) from None
    if not 0 < share < 100:
        raise argparse.ArgumentTypeError(f"{text!r}: a share is between 0% and 100%, both excluded")
    return share


def _change_status(client: AdminClient, args: argparse.Namespace) -> None:
    action, ids = args.skills_command, list(args.ids)
    past = ACTIONS[action][0]
    if getattr(args, "canary", None) is not None:
        started = _start_canaries(client, ids, args.canary)
        lines = [f"canary {c['skill_id']}: {c['share']:g}% of sessions" for c in started]
        return done(args, {"canaries": started}, "\n".join(lines))
    if len(ids) == 1 and args.skillbook is None:
        skill = client.change_status(ids[0], action)
        return done(args, skill, _status_line(past, skill))
    skillbook = args.skillbook or client.get_skill(ids[0])["skillbook"]
    try:
        result = client.bulk(skillbook, ids, action)
    except AdminAPIError as exc:
        if not exc.refused:
            raise
        for skill_id, reason in exc.refused.items():
            print(f"  {skill_id}: {reason}", file=sys.stderr)
        raise
    lines = [_status_line(past, s) for s in result["changed"]]
    done(args, result, "\n".join(lines))


def _status_line(past: str, skill: dict[str, Any]) -> str:
    """What a change did; an approval the skillbook's share rule turned into a canary, or one
    that could not be (frozen, no room), says so."""
    last = (skill.get("history") or [{}])[-1]
    canary = skill.get("canary")
    if str(last.get("action", "")).startswith("canary start") and canary:
        return (
            f"{past} {skill['id']} as a canary: {canary['share']:g}% of sessions (the "
            f"skillbook's share rule); it stays {skill['status']} until promoted"
        )
    note = last.get("note") or ""
    why = f" ({note})" if "without a canary" in note else ""
    return f"{past} {skill['id']}: now {skill['status']}{why}"


def _start_canaries(client: AdminClient, ids: list[str], share: float) -> list[dict[str, Any]]:
    """All or none: when one cannot start, the ones started before it are stopped again
    (each skill left as it was) and the error says which."""
    started: list[dict[str, Any]] = []
    for skill_id in ids:
        try:
            started.append(client.start_canary(skill_id, share))
        except AdminAPIError as exc:
            for canary in started:
                client.stop_canary(canary["skill_id"], note=f"undone: {skill_id} could not start")
            undone = ", ".join(c["skill_id"] for c in started)
            if undone:
                print(f"stopped again (none started): {undone}", file=sys.stderr)
            if skill_id not in exc.message:
                exc.message = f"{skill_id}: {exc.message}"
            raise
    return started


def _delete_skill(client: AdminClient, args: argparse.Namespace) -> None:
    skill = client.delete_skill(args.id)
    done(args, skill, f"deleted {skill['id']} (skillproxy skills restore {skill['id']} undoes it)")


def _outcomes(client: AdminClient, args: argparse.Namespace) -> None:
    figures = client.outcomes(args.id)
    if args.json:
        return print_json(figures)
    rows = [
        [label, str(arm["episodes"]), str(arm["with_feedback"]), _score(arm["mean_score"])]
        for label, arm in (
            ("with it", figures["with_skill"]),
            ("without", figures["without_skill"]),
        )
    ]
    print(f"{figures['skill_id']}: episodes since {time_of(figures['since'])}")
    print(table(["", "EPISODES", "RATED", "MEAN SCORE"], rows, indent=2))
    difference = figures["difference"]
    print(f"difference  {'-' if difference is None else f'{difference:+.3f}'}")
    print(figures["note"])
    return None


def _canary(client: AdminClient, args: argparse.Namespace) -> None:
    if args.stop:
        stopped = client.stop_canary(args.id)
        return done(args, stopped, f"stopped the canary of {args.id}")
    report = client.canary(args.id)
    if args.json:
        return print_json(report)
    canary = report["canary"]
    print(f"{args.id}: canary {canary['share']:g}% ({canary['status']}), {report['assignment']}")
    rows = [
        [label, str(arm["sessions"]), str(arm["rated_sessions"]), _score(arm["mean_score"]),
         _score(arm["tokens_per_session"]), _score(arm["turns_per_session"])]
        for label, arm in (("with it", report["treatment"]), ("without", report["control"]))
    ]  # fmt: skip
    print(table(["", "SESSIONS", "RATED", "MEAN SCORE", "TOKENS", "TURNS"], rows, indent=2))
    interval = report["interval"]
    span = "-" if interval is None else f"[{interval['low']:+.3f}, {interval['high']:+.3f}]"
    difference = report["difference"]
    shown = "-" if difference is None else f"{difference:+.3f}"
    print(f"difference  {shown}  {1 - report['alpha']:.0%} interval {span}")
    print(f"verdict     {report['verdict']} (rules: {report['decision']})")
    for line in report["limits"]:
        print(f"  {line}")
    return None


def _score(value: float | None) -> str:
    return "no data" if value is None else f"{value:.3f}"


def _edit_skill(client: AdminClient, args: argparse.Namespace) -> None:
    skill = client.edit_skill(args.id, args.content, args.section)
    done(args, skill, f"edited {skill['id']}: now revision {skill['revision']}")


def _rollback(client: AdminClient, args: argparse.Namespace) -> None:
    skill = client.rollback(args.id, args.revision)
    done(
        args,
        skill,
        f"rolled {skill['id']} back to revision {args.revision}: "
        f"now revision {skill['revision']}, {skill['status']}",
    )


def _prompt(client: AdminClient, args: argparse.Namespace) -> None:
    """stdout gets the text byte for byte (a newline is added only on a terminal)."""
    shown = client.prompt(args.skillbook, args.model, args.query)
    if args.json:
        return print_json(shown)
    text = shown["text"]
    sys.stdout.write(text + ("\n" if text and sys.stdout.isatty() else ""))
    print(
        f"skillbook {shown['skillbook']} v{shown['version']}: {len(shown['skill_ids'])} skills, "
        f"{shown['tokens']}/{shown['token_budget']} tokens ({shown['encoding']}, "
        f"ranked by {shown['ranking']})" + ("" if text else ": nothing is injected"),
        file=sys.stderr,
    )


# export and import


def _export(client: AdminClient, args: argparse.Namespace) -> None:
    skillbook = _export_skillbook(args)
    problem = _export_problem(args.format, args.output, args.out)
    if problem:
        raise UsageError(problem)
    if args.format in FILE_KINDS:
        return _export_section(client, args, skillbook)
    if args.format == "skill-md":
        return _export_skill_folders(client, Path(args.out), skillbook)
    if args.format == "markdown":
        text = client.export(skillbook, "markdown")
    else:
        document = client.export(skillbook, "langfuse" if args.format == "langfuse" else "json")
        text = json.dumps(document, indent=2, ensure_ascii=False)
    if not text.endswith("\n"):
        text += "\n"
    if args.output is None:
        sys.stdout.write(text)
        return None
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"wrote skillbook {skillbook} to {args.output}", file=sys.stderr)
    return None


def _export_skillbook(args: argparse.Namespace) -> str:
    """`export S` and `export --skillbook S` both work; naming two is refused."""
    if args.name and args.skillbook and args.name != args.skillbook:
        raise UsageError(
            f"two skillbooks named ({args.name!r} and --skillbook {args.skillbook!r}): give one"
        )
    name: str = args.name or args.skillbook or "default"
    return name


def _export_problem(kind: str, output: str | None, out: str | None) -> str | None:
    if kind == "skill-md" and out is None:
        return "--format skill-md writes a folder per section: give --out DIR"
    if out is not None and kind not in (*FILE_KINDS, "skill-md"):
        return f"--out DIR is for agents-md, claude-md and skill-md: give -o FILE for {kind}"
    return None


def _export_section(client: AdminClient, args: argparse.Namespace, skillbook: str) -> None:
    """Print the section, or merge it into a file, leaving the rest of the file as it was."""
    section = client.export(skillbook, args.format)
    if args.out is None and args.output is None:
        sys.stdout.write(section)
        return
    if args.out is not None and not Path(args.out).is_dir():
        raise CommandError(f"--out {args.out}: no such directory")
    name = exports.FILE_NAMES[FILE_KINDS[args.format]]
    target = Path(args.out) / name if args.out is not None else Path(args.output)
    existing = _read_text(target) if target.exists() else None
    try:
        merged = exports.merge_into(existing, section, skillbook)
    except ValueError as exc:
        raise CommandError(f"{target}: {exc}") from None
    if merged == existing:
        print(f"{target} already has skillbook {skillbook} as it is", file=sys.stderr)
        return
    target.write_bytes(merged.encode("utf-8"))  # in place: a symlinked CLAUDE.md stays one
    verb = "updated" if existing and exports.markers(skillbook)[0] in existing else "added"
    print(f"{verb} skillbook {skillbook}'s section in {target}", file=sys.stderr)


def _read_text(path: Path) -> str:
    """The file's text with its line endings as they are (CRLF stays CRLF)."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text: not touching it") from None


def _export_skill_folders(client: AdminClient, root: Path, skillbook: str) -> None:
    """Write every folder, or none if one would overwrite a SKILL.md that is not ours."""
    folders = client.export(skillbook, "skill-md").get("folders") or {}
    targets = {root / name / "SKILL.md": text for name, text in folders.items()}
    for name in folders:
        if not exports.SKILL_NAME.match(name):  # a folder name must not climb out of root
            raise CommandError(f"the proxy answered an invalid skill name {name!r}")
    for path in targets:
        if path.exists():
            _refuse_foreign(path, skillbook)
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    print(
        f"wrote {len(targets)} skill folders of skillbook {skillbook} under {root}", file=sys.stderr
    )
    stale = sorted(
        path.parent.name
        for path in root.glob("*/SKILL.md")
        if path not in targets and _owner(path) == skillbook
    )
    if stale:
        print(f"no longer in the skillbook, left as they are: {', '.join(stale)}", file=sys.stderr)


def _owner(path: Path) -> str | None:
    """The skillbook skillproxy exported this SKILL.md from; None if a person wrote it."""
    return exports.generated_skillbook(path.read_bytes().decode("utf-8", errors="replace"))


def _refuse_foreign(path: Path, skillbook: str) -> None:
    owner = _owner(path)
    if owner is None:
        raise CommandError(f"{path} exists and skillproxy did not write it: not overwriting it")
    if owner != skillbook:
        raise CommandError(
            f"{path} holds skillbook {owner!r}, not {skillbook!r}: not overwriting it"
        )


def _import(client: AdminClient, args: argparse.Namespace) -> None:
    source = "stdin" if args.file == "-" else args.file
    raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise CommandError(f"{source} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CommandError(f"{source} is not a skillbook export (a JSON object)")
    named = document.get("skillbook")
    skillbook = args.skillbook or (named if isinstance(named, str) and named else "default")
    summary = client.import_(skillbook, document, args.mode)
    remapped = summary.get("remapped") or {}
    counts = ", ".join(
        f"{count} {what}" for what, count in summary.items() if isinstance(count, int)
    )
    if remapped:
        counts += f"; {len(remapped)} under new ids (another skillbook has theirs)"
    done(args, summary, f"imported {source} into {skillbook} ({args.mode}): {counts}")


# traces


def _list_traces(client: AdminClient, args: argparse.Namespace) -> None:
    page = client.list_traces(args.skillbook, args.limit, args.before)
    if args.json:
        return print_json(page)
    rows = [
        [
            t["id"],
            time_of(t["created_at"]),
            t["skillbook"],
            str(t.get("status") or "-"),
            f"{t['latency_ms']:.0f}" if t.get("latency_ms") is not None else "-",
            f"{t.get('input_tokens') or 0}/{t.get('output_tokens') or 0}",
            str(len(t.get("injected_skill_ids") or [])),
            t.get("model") or f"({t['method']} {t['path']})",  # last: cut to fit
        ]
        for t in page["data"]
    ]
    if rows:
        headers = ["ID", "AT", "SKILLBOOK", "STATUS", "MS", "TOKENS", "SKILLS", "MODEL"]
        print(table(headers, rows))
    else:
        print("no traces", file=sys.stderr)
    if page.get("next_before") is not None:
        print(f"more: --before {page['next_before']!r}", file=sys.stderr)


def _show_trace(client: AdminClient, args: argparse.Namespace) -> None:
    trace = client.get_trace(args.id)
    if args.json:
        return print_json(trace)
    bodies = {"request_json": "request", "response_json": "response"}
    for key, value in trace.items():
        if key in bodies or value is None or value == "":
            continue
        if key == "created_at":
            value = time_of(value)
        elif isinstance(value, float):
            value = f"{value:.1f}"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        print(f"{key:<20} {value}")
    for key, title in bodies.items():
        body = trace.get(key)
        print(f"\n{title}")
        text = body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False)
        print(textwrap.indent(text, "  "))


def _import_traces(client: AdminClient, args: argparse.Namespace) -> None:
    """Stream the file in chunks (never read whole); progress on stderr, the summary on
    stdout; exit 1 after the import when any line failed."""
    source = "stdin" if args.file == "-" else args.file
    with _binary(args.file) as stream:
        chunks = iter(lambda: stream.read(IMPORT_CHUNK), b"")
        summary = client.import_traces(
            args.skillbook, chunks, args.format, _progress, args.score_names
        )
    failed = summary.get("failed") or []
    count = int(summary.get("failed_count") or 0)
    done(
        args, summary,
        f"imported {source} into {args.skillbook}: {summary.get('imported', 0)} conversations "
        f"({summary.get('traces', 0)} traces), {summary.get('skipped', 0)} already imported, "
        f"{count} failed",
    )  # fmt: skip
    if not args.json:
        for failure in failed:
            print(f"line {failure['line']}: {failure['error']}", file=sys.stderr)
        if count > len(failed):
            print(f"... and {count - len(failed)} more lines failed", file=sys.stderr)
    if summary.get("error"):
        raise CommandError(str(summary["error"]))
    if count:
        raise CommandError(f"{count} lines of {source} failed; the others were imported")


def _binary(path: str) -> AbstractContextManager[BinaryIO]:
    """The file, or stdin left open for whoever else reads it."""
    if path == "-":
        return nullcontext(sys.stdin.buffer)
    return open(path, "rb")


def _progress(line: dict[str, Any]) -> None:
    """One progress line; a format whose conversations span lines also says how many it
    holds until the file ends (they are stored then)."""
    held = line.get("held")
    waiting = f", {held} conversations held until the file ends" if held else ""
    print(
        f"read {line.get('line')} lines: {line.get('imported')} imported, "
        f"{line.get('skipped')} skipped, {line.get('failed')} failed{waiting}",
        file=sys.stderr,
    )
