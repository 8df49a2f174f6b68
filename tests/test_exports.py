"""Skillbooks out as AGENTS.md/CLAUDE.md sections, Agent Skills folders and Langfuse prompts.

The pure renderers of skillproxy/exports.py on hand-made documents (awkward names, broken
markers, other people's text around ours), then `GET /admin/skillbooks/{s}/export` and
`skillproxy export` against a real running proxy.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from skillproxy import exports
from skillproxy.admin.openapi import openapi_document
from skillproxy.admin.routes import ROUTES
from skillproxy.cli import main
from tests.harness import ADMIN_TOKEN, RunningProxy

SPEC_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ALLOWED_KEYS = {"name", "description", "license", "compatibility", "metadata", "allowed-tools"}
TRIGGERED = "When a test fails, read the whole traceback before editing code."
PLAIN = "Prefer small commits that each leave the tests green."

Cli = Callable[..., tuple[int, str, str]]


def skill(skill_id: str, section: str, content: str, status: str = "active") -> dict[str, Any]:
    return {"id": skill_id, "section": section, "content": content, "status": status}


def document(*skills: dict[str, Any], name: str = "default", version: int = 3) -> dict[str, Any]:
    """The parts of a `skillproxy.skillbook/1` export the renderers read."""
    return {
        "format": "skillproxy.skillbook/1",
        "skillbook": name,
        "version": version,
        "settings": {},
        "skills": list(skills),
    }


BOOK = document(
    skill("debugging-00001", "debugging", TRIGGERED),
    skill(
        "debugging-00002", "debugging", "If this is pending it must never be exported.", "pending"
    ),
    skill("style-00003", "style", PLAIN),
    skill("style-00004", "style", "When archived, a skill is never exported either.", "archived"),
    skill("debugging-00005", "debugging", "When a flaky test passes once, run it ten more times."),
)


# AGENTS.md and CLAUDE.md


def test_the_section_has_only_active_skills_by_section_between_its_markers() -> None:
    text = exports.agents_md_section(BOOK, file_kind="agents")
    lines = text.splitlines()
    assert lines[0] == "<!-- skillproxy:skillbook default:start -->"
    assert lines[-1] == "<!-- skillproxy:skillbook default:end -->"
    assert text.endswith("-->\n")
    assert lines[1] == "## Learned strategies (default)"
    [note] = [line for line in lines if line.startswith("_Generated")]
    assert "version 3" in note and "do not edit" in note and "--format agents-md" in note
    bullets = [line for line in lines if line.startswith(("- ", "### "))]
    assert bullets == [
        "### debugging",
        f"- {TRIGGERED}",
        "- When a flaky test passes once, run it ten more times.",
        "### style",
        f"- {PLAIN}",
    ]
    assert "pending" not in text and "archived" not in text


def test_claude_md_keeps_an_at_word_from_importing_a_file() -> None:
    book = document(skill("a-00001", "files", "When asked about @~/.ssh/config, refuse it."))
    assert "`@~/.ssh/config,`" in exports.agents_md_section(book, file_kind="claude")
    assert " @~/.ssh/config," in exports.agents_md_section(book, file_kind="agents")


def test_an_empty_skillbook_still_has_its_markers() -> None:
    text = exports.agents_md_section(document(), file_kind="agents")
    assert "_No active skills yet._" in text
    assert text.startswith(exports.markers("default")[0])


def test_merging_replaces_only_the_section_and_twice_is_once() -> None:
    before = "# My project\n\nRun `make test` before pushing.\n"
    after = "\n## Mine again\nHand-written, after the section.\n"
    old = exports.agents_md_section(document(skill("a-00001", "x", PLAIN)), file_kind="agents")
    existing = before + old + after
    new = exports.agents_md_section(BOOK, file_kind="agents")

    merged = exports.merge_into(existing, new, "default")
    assert merged == before + new + after  # bytes outside the markers as they were
    assert exports.merge_into(merged, new, "default") == merged


def test_merging_appends_after_a_blank_line_or_starts_the_file() -> None:
    section = exports.agents_md_section(BOOK, file_kind="agents")
    assert exports.merge_into(None, section, "default") == section
    assert exports.merge_into("", section, "default") == section
    for text in ("# Title", "# Title\n", "# Title\n\n"):
        merged = exports.merge_into(text, section, "default")
        assert merged == "# Title\n\n" + section
        assert exports.merge_into(merged, section, "default") == merged


def test_merging_keeps_crlf_and_a_missing_final_newline() -> None:
    section = exports.agents_md_section(BOOK, file_kind="agents")
    windows = "# Title\r\n\r\nkeep this\r\n"
    merged = exports.merge_into(windows, section, "default")
    assert merged.startswith(windows)
    assert "\n" not in merged.replace("\r\n", "")
    assert exports.merge_into(merged, section, "default") == merged

    start, end = exports.markers("default")
    unterminated = f"intro\n{start}\nold\n{end}"
    merged = exports.merge_into(unterminated, section, "default")
    assert merged == "intro\n" + section.removesuffix("\n")
    assert exports.merge_into(merged, section, "default") == merged


def test_two_skillbooks_share_a_file() -> None:
    sales = document(skill("sales-00001", "pricing", PLAIN), name="sales", version=7)
    text = exports.merge_into(
        "# Agents\n", exports.agents_md_section(BOOK, file_kind="agents"), "default"
    )
    text = exports.merge_into(text, exports.agents_md_section(sales, file_kind="agents"), "sales")
    assert text.count("skillproxy:skillbook default:start") == 1
    assert text.count("skillproxy:skillbook sales:start") == 1
    sales_part = text[text.index(exports.markers("sales")[0]) :]

    newer = document(skill("debugging-00001", "debugging", TRIGGERED), version=4)
    updated = exports.merge_into(
        text, exports.agents_md_section(newer, file_kind="agents"), "default"
    )
    assert updated.endswith(sales_part)  # the other skillbook's section is not touched
    assert "version 4" in updated and PLAIN in sales_part


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{start}\nno end\n", "a start marker and no end marker"),
        ("{start}\n{end}\n{start}\n{end}\n", "2 start markers"),
        ("{start}\n{end}\n{end}\n", "2 end markers"),
        ("{end}\nthen\n{start}\n", "the end marker comes before the start marker"),
        ("only an end\n{end}\n", "an end marker and no start marker"),
    ],
)
def test_markers_that_do_not_pair_are_refused(text: str, problem: str) -> None:
    start, end = exports.markers("default")
    broken = text.format(start=start, end=end)
    section = exports.agents_md_section(BOOK, file_kind="agents")
    with pytest.raises(ValueError, match=problem) as refused:
        exports.merge_into(broken, section, "default")
    assert "fix the markers by hand" in str(refused.value)


def test_a_marker_inside_a_line_is_text() -> None:
    start, end = exports.markers("default")
    mentioned = f"The tool writes `{start}` and `{end}` lines.\n"
    section = exports.agents_md_section(BOOK, file_kind="agents")
    assert exports.merge_into(mentioned, section, "default") == mentioned + "\n" + section


# Agent Skills

ODD = ("line\u2028break", "tab\there", "nul\x00", "bom\ufeff", "emoji 😀", "nel\x85", '\\"')
AWKWARD = [
    "debugging",
    "données café",  # unicode that has an ASCII form
    "日本語",  # unicode that has none
    "!!!",  # punctuation only
    "a" * 40 + " and then a good deal more text",  # long
    "code review",
    "code-review",  # these three slugify alike
    "code_review",
    "true",  # YAML would read these unquoted as a boolean, null and a number
    "null",
    "123",
]


def awkward_book(
    name: str = "My.Skill_Book-with-a-very-long-name-indeed-0123456789",
) -> dict[str, Any]:
    skills = [
        skill(f"s-{i:05d}", section, f'When "{section}" work comes up: say so, then act #{i}.')
        for i, section in enumerate(AWKWARD)
    ]
    return document(*skills, name=name)


def front_matter(text: str) -> dict[str, Any]:
    """The SKILL.md's front matter, read with a YAML parser when one is installed; otherwise
    each line is checked to be `key: "..."` or the `metadata:` map, read as JSON strings."""
    lines = text.splitlines()
    assert lines[0] == "---"
    block = lines[1 : lines.index("---", 1)]
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        return strict_front_matter(block)
    parsed = yaml.safe_load("\n".join(block))
    assert isinstance(parsed, dict)
    assert parsed == strict_front_matter(block)  # the fallback agrees where both run
    return parsed


def strict_front_matter(block: list[str]) -> dict[str, Any]:
    scalar = r'"(?:[^"\\\x00-\x1f]|\\.)*"'
    result: dict[str, Any] = {}
    current = result
    for line in block:
        if line == "metadata:":
            current = result["metadata"] = {}
            continue
        found = re.fullmatch(rf"( {{2}})?([a-z-]+): ({scalar})", line)
        assert found, f"not a plain quoted front-matter line: {line!r}"
        assert bool(found.group(1)) == (current is not result), line
        current[found.group(2)] = json.loads(found.group(3))
    return result


def test_every_folder_name_keeps_the_spec_and_matches_its_skill() -> None:
    folders = exports.skill_folders(awkward_book())
    assert len(folders) == len(AWKWARD)
    for folder, text in folders.items():
        assert SPEC_NAME.match(folder) and len(folder) <= 64, folder
        fields = front_matter(text)
        assert set(fields) <= ALLOWED_KEYS
        assert fields["name"] == folder
        assert 1 <= len(fields["description"]) <= 1024
        assert "<" not in fields["description"] and ">" not in fields["description"]
        assert all(isinstance(v, str) for v in fields["metadata"].values())


def test_awkward_sections_get_readable_unique_names() -> None:
    names = exports.folder_names("default", AWKWARD)
    assert names["debugging"] == "default-debugging"
    assert names["données café"] == "default-donnees-cafe"
    assert names["日本語"] == "default-section"
    assert names["!!!"] == "default-section-2"
    assert names["code review"] == "default-code-review"
    assert names["code-review"] == "default-code-review-2"
    assert names["code_review"] == "default-code-review-3"
    assert len(set(names.values())) == len(AWKWARD)
    long = exports.folder_names("x" * 64, ["y" * 40, "y" * 40 + " z"])
    assert [len(name) for name in long.values()] == [64, 64]
    assert list(long.values())[1].endswith("-2")
    assert exports.folder_names("---", ["---"]) == {"---": "skillbook-section"}


def test_front_matter_values_stay_strings_whatever_they_hold() -> None:
    book = document(
        skill("a-00001", "true", 'When text has "quotes", a colon: and # a hash, keep it.'),
        name="yes",
    )
    [(folder, text)] = exports.skill_folders(book).items()
    fields = front_matter(text)
    assert fields["name"] == folder == "yes-true"
    assert fields["metadata"] == {
        "generated-by": "skillproxy",
        "skillbook": "yes",
        "section": "true",
        "skillbook-version": "3",
    }
    assert fields["description"] == (
        'Strategies learned by skillproxy for yes (true): use when text has "quotes".'
    )
    for odd in ODD:
        line = f"description: {exports.yaml_string(odd)}"
        assert line.isprintable() or "😀" in line
        assert strict_front_matter([line]) == {"description": odd}


def test_odd_characters_read_back_through_yaml() -> None:
    yaml = pytest.importorskip("yaml")
    for odd in ODD:
        assert yaml.safe_load(f"k: {exports.yaml_string(odd)}") == {"k": odd}


def test_a_description_says_when_and_fits_1024() -> None:
    long = "very " * 60
    skills = [
        skill(f"s-{i:05d}", "ops", f"When the {i}th {long}situation comes up, act.")
        for i in range(20)
    ]
    text = exports.description("default", "ops", skills)
    assert text.startswith("Strategies learned by skillproxy for default (ops): use when the 0th")
    assert len(text) <= 1024 and text.endswith("; and related situations.")
    one = [skill("s-1", "ops", "When " + "x" * 2000 + ", act.")]
    assert len(exports.description("b" * 64, "ops", one)) <= 1024
    assert exports.description("default", "ops", []).endswith("use when working on ops.")


def test_skill_bodies_hold_the_skills_and_the_version() -> None:
    folders = exports.skill_folders(BOOK)
    assert list(folders) == ["default-debugging", "default-style"]
    body = folders["default-debugging"].split("\n---\n", 1)[1]
    assert "version 3" in body
    assert f"- {TRIGGERED}\n" in body
    assert "pending" not in "".join(folders.values()) and "archived" not in body
    assert exports.skill_folders(document()) == {}


def test_generated_skill_md_is_recognised_and_hand_written_is_not() -> None:
    for text in exports.skill_folders(awkward_book("we.ird_Name")).values():
        assert exports.generated_skillbook(text) == "we.ird_Name"
    hand = "---\nname: mine\ndescription: Mine. Use when I say so.\n---\n# Mine\n"
    assert exports.generated_skillbook(hand) is None
    assert exports.generated_skillbook("no front matter\n") is None


# Langfuse


def test_langfuse_prompt_is_a_text_prompt_at_the_skillbook_version() -> None:
    prompt = exports.langfuse_prompt(BOOK)
    assert set(prompt) == {
        "name", "type", "prompt", "version", "labels", "config", "tags", "commitMessage",
    }  # fmt: skip
    assert (prompt["name"], prompt["type"], prompt["version"]) == ("default", "text", 3)
    assert prompt["config"] == {
        "skill_ids": ["debugging-00001", "debugging-00005", "style-00003"],
        "source": "skillproxy",
    }
    assert isinstance(prompt["labels"], list) and isinstance(prompt["tags"], list)
    assert prompt["prompt"].startswith("# Strategies learned from earlier conversations\n")
    assert f"## debugging\n- {TRIGGERED}\n" in prompt["prompt"]
    assert "pending" not in prompt["prompt"] and "archived" not in prompt["prompt"]


# the admin API


def test_openapi_lists_the_export_formats() -> None:
    operation = openapi_document(ROUTES)["paths"]["/admin/skillbooks/{skillbook}/export"]["get"]
    [fmt] = [p for p in operation["parameters"] if p["name"] == "format"]
    schema = json.dumps(fmt["schema"])
    for kind in ("json", "markdown", "agents-md", "claude-md", "skill-md", "langfuse"):
        assert f'"{kind}"' in schema
    assert "text/markdown" in operation["responses"]["200"]["content"]


@pytest.fixture
def book(proxy: RunningProxy) -> RunningProxy:
    """`default` with two active skills, one pending and one archived."""
    proxy.add_skill("default", "debugging", TRIGGERED)
    proxy.add_skill("default", "style", PLAIN)
    proxy.add_skill("default", "debugging", "When in doubt, this stays pending.", approve=False)
    archived = proxy.add_skill("default", "style", "When archived, it is never exported.")
    assert proxy.admin("POST", f"/skills/{archived}/archive").status_code == 200
    return proxy


def export(proxy: RunningProxy, kind: str) -> httpx.Response:
    return proxy.admin("GET", "/skillbooks/default/export", params={"format": kind})


def test_the_api_exports_each_format(book: RunningProxy) -> None:
    version = book.admin("GET", "/skillbooks/default").json()["version"]
    for kind in ("agents-md", "claude-md"):
        answer = export(book, kind)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/markdown")
        assert TRIGGERED in answer.text and "pending" not in answer.text
        assert f"version {version}" in answer.text
    folders = export(book, "skill-md").json()["folders"]
    assert sorted(folders) == ["default-debugging", "default-style"]
    langfuse = export(book, "langfuse").json()
    assert (langfuse["name"], langfuse["version"]) == ("default", version)
    assert len(langfuse["config"]["skill_ids"]) == 2
    assert export(book, "json").json()["format"] == "skillproxy.skillbook/1"
    assert export(book, "markdown").text.startswith("# Skillbook: default\n")
    refused = export(book, "yaml")
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_query")


# the CLI


@pytest.fixture
def cli(book: RunningProxy, capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--url", book.url, "--token", ADMIN_TOKEN])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_agents_md_merges_into_a_file_and_reruns_change_nothing(cli: Cli, tmp_path: Path) -> None:
    code, out, _ = cli("export", "default", "--format", "agents-md")
    assert code == 0 and out.startswith("<!-- skillproxy:skillbook default:start -->\n")

    mine = "# Project\r\n\r\nOur own rules, CRLF and all.\r\n"
    (tmp_path / "AGENTS.md").write_bytes(mine.encode())
    code, _, err = cli(
        "export", "--skillbook", "default", "--format", "agents-md", "--out", str(tmp_path)
    )
    assert (code, err) == (0, f"added skillbook default's section in {tmp_path / 'AGENTS.md'}\n")
    written = (tmp_path / "AGENTS.md").read_bytes()
    assert written.startswith(mine.encode() + b"\r\n<!-- skillproxy:skillbook default:start -->")
    assert TRIGGERED.encode() in written
    code, _, err = cli("export", "--format", "agents-md", "--out", str(tmp_path))
    assert code == 0 and "already has skillbook default as it is" in err
    assert (tmp_path / "AGENTS.md").read_bytes() == written

    assert cli("export", "--format", "claude-md", "--out", str(tmp_path))[0] == 0
    assert PLAIN in (tmp_path / "CLAUDE.md").read_text()  # created
    other = tmp_path / "notes.md"
    assert cli("export", "--format", "claude-md", "-o", str(other))[0] == 0
    assert other.read_text() == (tmp_path / "CLAUDE.md").read_text()


def test_a_broken_file_is_left_alone(cli: Cli, tmp_path: Path) -> None:
    broken = "keep\n<!-- skillproxy:skillbook default:start -->\nno end\n"
    (tmp_path / "AGENTS.md").write_text(broken)
    code, _, err = cli("export", "--format", "agents-md", "--out", str(tmp_path))
    assert code == 1
    assert "a start marker and no end marker" in err
    assert (tmp_path / "AGENTS.md").read_text() == broken


def test_skill_md_writes_folders_and_never_overwrites_other_files(cli: Cli, tmp_path: Path) -> None:
    skills = tmp_path / ".claude" / "skills"
    code, _, err = cli("export", "default", "--format", "skill-md", "--out", str(skills))
    assert (code, err) == (0, f"wrote 2 skill folders of skillbook default under {skills}\n")
    written = skills / "default-debugging" / "SKILL.md"
    assert front_matter(written.read_text())["name"] == "default-debugging"
    gone = exports.skill_folders(document(skill("g-1", "gone", PLAIN)))["default-gone"]
    (skills / "default-gone").mkdir()
    (skills / "default-gone" / "SKILL.md").write_text(gone)
    code, _, err = cli("export", "--format", "skill-md", "--out", str(skills))  # ours: replaced
    assert code == 0 and "no longer in the skillbook, left as they are: default-gone\n" in err

    hand = "---\nname: default-style\ndescription: Mine.\n---\nmine\n"
    (skills / "default-style" / "SKILL.md").write_text(hand)
    older = exports.skill_folders(document(skill("x-1", "debugging", PLAIN)))
    written.write_text(older["default-debugging"])  # ours, from an older version
    code, _, err = cli("export", "--format", "skill-md", "--out", str(skills))
    assert code == 1
    assert "default-style/SKILL.md exists and skillproxy did not write it" in err
    assert (skills / "default-style" / "SKILL.md").read_text() == hand
    assert written.read_text() == older["default-debugging"]  # all folders or none


def test_langfuse_prints_or_writes_json(cli: Cli, book: RunningProxy, tmp_path: Path) -> None:
    code, out, _ = cli("export", "default", "--format", "langfuse")
    prompt = json.loads(out)
    assert code == 0 and prompt["type"] == "text"
    assert prompt["version"] == book.admin("GET", "/skillbooks/default").json()["version"]
    target = tmp_path / "prompt.json"
    assert cli("export", "--format", "langfuse", "-o", str(target))[0] == 0
    assert json.loads(target.read_text()) == prompt


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--format", "skill-md"), "--format skill-md writes a folder per section: give --out DIR"),
        (("--format", "skill-md", "-o", "x"), "give --out DIR"),
        (
            ("--format", "langfuse", "--out", "."),
            "--out DIR is for agents-md, claude-md and skill-md",
        ),
        (("--format", "json", "--out", "."), "give -o FILE for json"),
        (("a", "--skillbook", "b"), "two skillbooks named ('a' and --skillbook 'b'): give one"),
    ],
)
def test_bad_combinations_exit_2_with_one_line(
    cli: Cli, argv: tuple[str, ...], message: str
) -> None:
    code, out, err = cli("export", *argv)
    assert (code, out) == (2, "")
    assert err.startswith("skillproxy: ") and message in err and err.count("\n") == 1
