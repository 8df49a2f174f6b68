"""The admin commands as a person runs them: `skillproxy ...` against a real running proxy.

Covers skillproxy/cli.py and skillproxy/admin_client.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from core.config import load_config
from proxy.render import HEADER
from skillproxy.cli import main
from tests.harness import ADMIN_TOKEN, Cli, RunningProxy

ROOT = Path(__file__).resolve().parent.parent
CONTENT = "When a test fails, read the whole traceback before editing code."


def add_skill(cli: Cli, content: str = CONTENT, *extra: str) -> str:
    code, out, _ = cli("skills", "add", "--section", "debugging", content, "--json", *extra)
    assert code == 0
    skill_id: str = json.loads(out)["id"]
    return skill_id


def test_review_a_skill_from_proposal_to_rollback(cli: Cli) -> None:
    code, out, _ = cli("skills", "add", "--section", "Debugging", CONTENT)
    assert code == 0
    assert out.startswith("added debugging-00001 to default (pending)")

    code, out, _ = cli("skills", "list", "--status", "pending")
    header, row = out.splitlines()
    assert header.split() == ["ID", "STATUS", "SECTION", "VOTES", "CONTENT"]
    assert row.split()[:4] == ["debugging-00001", "pending", "debugging", "+0/-0"]
    assert row.endswith(CONTENT)

    assert cli("skills", "approve", "debugging-00001")[1] == (
        "approved debugging-00001: now active\n"
    )
    code, out, err = cli("skills", "prompt")
    assert code == 0
    assert out == f"{HEADER}\n\n## debugging\n- {CONTENT}"  # exact: no newline when piped
    assert "1 skills" in err
    assert json.loads(cli("skills", "prompt", "--json")[1])["text"] == out

    assert cli("skills", "edit", "debugging-00001", "--content", CONTENT + " Twice.")[0] == 0
    code, out, _ = cli("skills", "show", "debugging-00001")
    assert code == 0
    assert "[active]" in out and "revision  3" in out and CONTENT + " Twice." in out
    history = out[out.index("history") :].splitlines()[1:]
    assert [line.split()[:3] for line in history] == [
        ["REV", "ACTION", "ACTOR"],
        ["1", "create", "admin"],
        ["2", "approve", "admin"],
        ["3", "edit", "admin"],
    ]
    assert "status pending -> active" in history[2]

    code, out, _ = cli("skills", "rollback", "debugging-00001", "1")
    assert out == "rolled debugging-00001 back to revision 1: now revision 4, pending\n"
    shown = json.loads(cli("skills", "show", "debugging-00001", "--json")[1])
    assert (shown["content"], shown["status"]) == (CONTENT, "pending")
    assert shown["history"][-1]["action"] == "rollback to 1"
    code, out, err = cli("skills", "prompt")
    assert (code, out) == (0, "")
    assert "nothing is injected" in err


def test_list_filters_and_fits_the_terminal(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    first = add_skill(cli)
    add_skill(cli, "Prefer small commits that each leave the tests green.")
    out = cli("skills", "list", "--q", "traceback", "--json")[1]
    assert [s["id"] for s in json.loads(out)] == [first]
    empty = "no skills match in skillbook 'default'\n"
    assert cli("skills", "list", "--status", "active") == (0, "", empty)

    monkeypatch.setenv("COLUMNS", "60")
    lines = cli("skills", "list")[1].splitlines()
    assert len(lines) == 3
    assert all(len(line) <= 60 for line in lines)
    assert lines[1].endswith("…")


def test_refusals_print_the_api_message_and_exit_1(cli: Cli) -> None:
    skill_id = add_skill(cli)
    code, out, err = cli("skills", "reject", skill_id)
    assert code == 0
    code, out, err = cli("skills", "archive", skill_id)
    assert (code, out) == (1, "")
    assert err == (
        f"skillproxy: cannot archive skill {skill_id}: it is rejected "
        "(only pending, active skills can be archived) [409 invalid_transition]\n"
    )
    code, _, err = cli("skills", "show", "nope-00009")
    assert (code, err) == (1, "skillproxy: no skill with id 'nope-00009' [404 not_found]\n")
    code, _, err = cli("skills", "add", "--section", "x", "short")
    assert err == "skillproxy: content must be at least 8 characters [422 invalid_content]\n"
    assert code == 1


def test_usage_errors_exit_2(cli: Cli) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli("skills", "rollback", "debugging-00001", "latest")
    assert exit_.value.code == 2


def test_export_then_import_and_its_conflict(cli: Cli, tmp_path: Path) -> None:
    skill_id = add_skill(cli)
    cli("skills", "approve", skill_id)
    exported = tmp_path / "default.json"
    code, out, err = cli("export", "-o", str(exported))
    assert (code, out) == (0, "")
    assert f"to {exported}" in err
    document = json.loads(exported.read_text())
    assert document["skillbook"] == "default"
    assert [s["id"] for s in document["skills"]] == [skill_id]

    code, out, _ = cli("import", str(exported))
    assert (code, out) == (
        0,
        f"imported {exported} into default (merge): "
        "0 created, 0 updated, 1 unchanged, 0 archived\n",
    )
    code, out, err = cli("import", str(exported), "--skillbook", "copy", "--mode", "replace")
    assert (code, err) == (0, "")
    assert out.startswith(f"imported {exported} into copy (replace): 1 created,")
    assert out.endswith("; 1 under new ids (another skillbook has theirs)\n")
    [copied] = json.loads(cli("skills", "list", "--skillbook", "copy", "--json")[1])
    assert copied["id"] != skill_id and copied["content"] == CONTENT
    assert copied["status"] == "active"  # the file's approval came with it

    renamed = dict(document, skillbook="renamed")
    named = tmp_path / "renamed.json"
    named.write_text(json.dumps(renamed))
    code, out, _ = cli("import", str(named))  # no --skillbook: the one the file names
    assert (code, out.split(":")[0]) == (0, f"imported {named} into renamed (merge)")

    code, out, _ = cli("export", "--format", "markdown")
    assert code == 0
    assert out.startswith("# Skillbook: default\n")
    assert f"- {CONTENT}\n" in out


def test_import_refuses_a_file_that_is_not_json(cli: Cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    code, _, err = cli("import", str(broken))
    assert code == 1
    assert err.startswith(f"skillproxy: {broken} is not JSON: ")
    code, _, err = cli("import", str(tmp_path / "missing.json"))
    assert code == 1
    assert "No such file or directory" in err


def test_traces_list_and_show_an_exchange(cli: Cli, proxy: RunningProxy) -> None:
    skill_id = add_skill(cli)
    cli("skills", "approve", skill_id)
    response = httpx.post(
        proxy.v1 + "/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}]},
        timeout=10,
    )
    assert response.status_code == 200
    trace_id = response.headers["X-Trace-Id"]
    proxy.trace(trace_id)  # stored by now

    code, out, _ = cli("traces", "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "AT", "SKILLBOOK", "STATUS", "MS", "TOKENS", "SKILLS", "MODEL"]
    assert row.startswith(trace_id)
    cells = row.split()  # AT is two words
    assert cells[3:5] + cells[-2:] == ["default", "200", "1", "fake-model"]
    assert json.loads(cli("traces", "list", "--skillbook", "other", "--json")[1])["data"] == []

    code, out, _ = cli("traces", "show", trace_id)
    assert code == 0
    assert f"injected_skill_ids   {skill_id}" in out
    assert '"content": "hello there"' in out
    assert "\nresponse\n" in out
    assert cli("traces", "show", "missing")[2] == (
        "skillproxy: no trace with id 'missing' [404 not_found]\n"
    )


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("wrong", "The admin token is not valid. [403 invalid_token]"),
        (
            "",
            "Send the admin token as 'Authorization: Bearer <token>'. "
            "(give --token or set $SKILLPROXY_ADMIN__TOKEN) [401 missing_token]",
        ),
    ],
)
def test_a_bad_token_exits_1_with_the_api_message(cli: Cli, token: str, message: str) -> None:
    assert cli("skills", "list", token=token) == (1, "", f"skillproxy: {message}\n")


def test_an_unreachable_proxy_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed
    assert main(["skills", "list", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"skillproxy: cannot reach skillproxy at {url}: ")


def test_the_entry_point_reads_url_and_token_from_the_environment(proxy: RunningProxy) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SKILLPROXY_")}
    environ.update(SKILLPROXY_URL=proxy.url, SKILLPROXY_ADMIN__TOKEN=ADMIN_TOKEN)

    def skillproxy(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "skillproxy", *argv],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = skillproxy("skills", "add", "--section", "style", CONTENT)
    assert (added.returncode, added.stderr) == (0, "")
    assert added.stdout == "added style-00001 to default (pending)\n"
    listed = skillproxy("skills", "list", "--json")
    assert [s["content"] for s in json.loads(listed.stdout)] == [CONTENT]

    environ["SKILLPROXY_ADMIN__TOKEN"] = "wrong"
    refused = skillproxy("skills", "list")
    assert refused.returncode == 1
    assert refused.stderr == "skillproxy: The admin token is not valid. [403 invalid_token]\n"


def test_serve_ignores_the_client_only_url_variable() -> None:
    config = load_config(environ={"SKILLPROXY_URL": "http://127.0.0.1:9999"})
    assert config.server.port == 8080
