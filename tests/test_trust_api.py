"""A skillbook people can trust, through the real admin API, the proxy and the CLI: approval
that holds, soft deletes, copies, supersession, bulk review, freezing and pinned versions,
outcome figures, and skillbooks created by traffic saying so.

Covers skillproxy/admin/skillbooks.py, skillproxy/admin/requests.py,
skillproxy/skillbooks_cli.py, skillproxy/cli_output.py, skillproxy/admin/trace_queries.py and
proxy/skillbook_cache.py's frozen and pinned versions."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest

from learner.episodes import group_new_traces
from store import open_store
from tests.harness import Cli, RunningProxy

REFUNDS = "When a refund is asked for, check the order date against the return window first."
TONE = "When the customer is upset, acknowledge the problem before giving any steps."
SHIPPING = "When shipping is late, give the tracking link before offering a voucher."


def ask(proxy: RunningProxy, skillbook: str = "support", **headers: str) -> httpx.Response:
    """One chat request through the proxy; the provider's copy is `proxy.provider.last`."""
    response = httpx.post(
        proxy.sb(skillbook) + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "refund?"}]},
        headers={"Authorization": "Bearer k", **headers},
    )
    assert response.status_code == 200, response.text
    return response


def injected(proxy: RunningProxy) -> str:
    body = json.loads(proxy.provider.last.body)
    first = body["messages"][0]
    return str(first["content"]) if first["role"] == "system" else ""


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refresh_cache(proxy: RunningProxy) -> None:
    """Admin writes refresh the cache at once; a PATCH with no change does too."""
    ok(proxy.admin("PATCH", "/skillbooks/support/settings", json={}))


# 1. approval holds


def test_archive_then_restore_of_a_pending_skill_leaves_it_pending_and_not_injected(
    proxy: RunningProxy,
) -> None:
    pending = proxy.add_skill("support", "returns", REFUNDS, approve=False)
    actor = {"X-Admin-Actor": "dana"}
    assert ok(proxy.admin("POST", f"/skills/{pending}/archive", headers=actor))["status"] == (
        "archived"
    )
    restored = ok(proxy.admin("POST", f"/skills/{pending}/restore", headers=actor))
    assert restored["status"] == "pending"
    ask(proxy)
    assert REFUNDS not in injected(proxy)
    history = restored["history"]
    assert [(h["action"], h["actor"]) for h in history[1:]] == [
        ("archive", "dana"), ("restore", "dana"),
    ]  # fmt: skip
    assert all(h["at"] > 0 for h in history)

    live = proxy.add_skill("support", "tone", TONE)
    proxy.admin("POST", f"/skills/{live}/archive")
    assert ok(proxy.admin("POST", f"/skills/{live}/restore"))["status"] == "active"
    ask(proxy)
    assert TONE in injected(proxy) and REFUNDS not in injected(proxy)


# 3. delete, copy


def test_a_deleted_skill_is_hidden_and_not_injected_until_restored(proxy: RunningProxy) -> None:
    skill = proxy.add_skill("support", "returns", REFUNDS)
    deleted = ok(proxy.admin("DELETE", f"/skills/{skill}"))
    assert deleted["status"] == "active" and deleted["deleted_at"] is not None
    assert deleted["history"][-1]["action"] == "delete"
    assert ok(proxy.admin("GET", "/skillbooks/support/skills"))["data"] == []
    listed = ok(proxy.admin("GET", "/skillbooks/support/skills", params={"deleted": "true"}))
    assert [s["id"] for s in listed["data"]] == [skill]
    ask(proxy)
    assert REFUNDS not in injected(proxy)
    again = proxy.admin("DELETE", f"/skills/{skill}")
    assert again.status_code == 409 and "already deleted" in again.json()["error"]["message"]
    edit = proxy.admin("PATCH", f"/skills/{skill}", json={"content": TONE})
    assert edit.status_code == 409
    assert ok(proxy.admin("POST", f"/skills/{skill}/restore"))["deleted_at"] is None
    ask(proxy)
    assert REFUNDS in injected(proxy)


def test_copy_and_soft_delete_of_a_skillbook_through_the_cli(proxy: RunningProxy, cli: Cli) -> None:
    proxy.add_skill("support", "returns", REFUNDS)
    proxy.add_skill("support", "tone", TONE, approve=False)
    code, out, err = cli("skillbooks", "copy", "support", "support-b")
    assert (code, out, err) == (0, "copied support into support-b: 2 skills\n", "")
    copied = ok(proxy.admin("GET", "/skillbooks/support-b/skills"))["data"]
    originals = ok(proxy.admin("GET", "/skillbooks/support/skills"))["data"]
    assert sorted(s["content"] for s in copied) == sorted(s["content"] for s in originals)
    assert not {s["id"] for s in copied} & {s["id"] for s in originals}
    assert cli("skillbooks", "copy", "support", "support-b")[0] == 1  # the target exists

    ask(proxy, "support-b")
    assert REFUNDS in injected(proxy)
    code, out, _ = cli("skillbooks", "delete", "support-b")
    assert code == 0 and out.startswith("deleted support-b")
    names = [b["name"] for b in ok(proxy.admin("GET", "/skillbooks"))["data"]]
    assert "support-b" not in names and "support" in names
    ask(proxy, "support-b")  # still served (zero-config), with nothing injected
    assert REFUNDS not in injected(proxy)
    create = proxy.admin(
        "POST", "/skillbooks/support-b/skills", json={"section": "x", "content": TONE}
    )
    assert create.status_code == 409 and "restore it first" in create.json()["error"]["message"]

    assert cli("skillbooks", "restore", "support-b")[0] == 0
    ask(proxy, "support-b")
    assert REFUNDS in injected(proxy)
    code, out, _ = cli("skillbooks", "history", "support-b")
    actions = [line.split()[2] for line in out.splitlines()[1:]]
    assert actions == ["create", "import", "copy", "delete", "restore"]


# 4. an approved rewording supersedes the skill it rewords


def test_approving_a_rewording_archives_the_original_with_a_link(proxy: RunningProxy) -> None:
    original = proxy.add_skill("support", "returns", REFUNDS)
    reworded = ok(
        proxy.admin(
            "POST",
            "/skillbooks/support/skills",
            json={"section": "returns", "content": REFUNDS + " Then ask.", "supersedes": original},
        ),
        201,
    )
    assert reworded["supersedes"] == original and reworded["status"] == "pending"
    ok(proxy.admin("POST", f"/skills/{reworded['id']}/approve"))
    old = ok(proxy.admin("GET", f"/skills/{original}"))
    assert (old["status"], old["superseded_by"]) == ("archived", reworded["id"])
    assert old["history"][-1]["action"] == f"superseded by {reworded['id']}"
    prompt = ok(proxy.admin("GET", "/skillbooks/support/prompt"))
    assert prompt["skill_ids"] == [reworded["id"]]
    elsewhere = proxy.add_skill("other", "returns", TONE)
    refused = proxy.admin(
        "POST",
        "/skillbooks/support/skills",
        json={"section": "returns", "content": TONE + " Always.", "supersedes": elsewhere},
    )
    assert refused.status_code == 422 and "belongs to skillbook 'other'" in refused.text


# 5. bulk review


def test_bulk_approve_changes_all_or_none_and_says_why(proxy: RunningProxy, cli: Cli) -> None:
    first = proxy.add_skill("support", "returns", REFUNDS, approve=False)
    second = proxy.add_skill("support", "tone", TONE, approve=False)
    rejected = proxy.add_skill("support", "shipping", SHIPPING, approve=False)
    ok(proxy.admin("POST", f"/skills/{rejected}/archive"))  # archived: approve refuses it
    foreign = proxy.add_skill("other", "x", TONE + " Twice.", approve=False)

    response = proxy.admin(
        "POST",
        "/skillbooks/support/skills/approve",
        json={"ids": [first, second, rejected, foreign, "nope-00099"]},
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "bulk_refused"
    assert set(error["refused"]) == {rejected, foreign, "nope-00099"}
    assert "archived" in error["refused"][rejected]
    assert "belongs to skillbook 'other'" in error["refused"][foreign]
    statuses = {
        s["id"]: s["status"] for s in ok(proxy.admin("GET", "/skillbooks/support/skills"))["data"]
    }
    assert statuses[first] == statuses[second] == "pending"  # nothing changed

    bad = proxy.admin("POST", "/skillbooks/support/skills/approve", json={"ids": []})
    assert bad.status_code == 422 and "ids" in bad.json()["error"]["message"]
    code, out, _ = cli("skills", "approve", first, second)
    assert code == 0
    assert out == f"approved {first}: now active\napproved {second}: now active\n"
    code, _, err = cli("skills", "archive", first, rejected, "--skillbook", "support")
    assert code == 1 and f"  {rejected}: " in err
    assert ok(proxy.admin("GET", f"/skills/{first}"))["status"] == "active"


# 6. freezing and pinned versions


def test_a_frozen_skillbook_injects_the_same_bytes_while_approvals_go_on(
    proxy: RunningProxy,
) -> None:
    proxy.add_skill("support", "returns", REFUNDS)
    settings = ok(proxy.admin("PATCH", "/skillbooks/support/settings", json={"frozen": True}))
    assert settings["frozen"] is True
    first = ask(proxy)
    before = injected(proxy)
    newcomer = proxy.add_skill("support", "tone", TONE)  # approved while frozen
    ok(proxy.admin("PATCH", "/skillbooks/support/settings", json={"token_budget": 5}))
    second = ask(proxy)
    assert injected(proxy) == before and TONE not in before
    assert second.headers["X-Skillbook-Version"] == first.headers["X-Skillbook-Version"]
    assert second.headers["X-Skillbook-Version"] == str(settings["frozen_version"])
    pending = ok(proxy.admin("GET", "/skillbooks/support/skills", params={"status": "active"}))
    assert newcomer in [s["id"] for s in pending["data"]]

    unfrozen = ok(proxy.admin("PATCH", "/skillbooks/support/settings", json={"frozen": False}))
    assert unfrozen["frozen"] is False and unfrozen["frozen_version"] is None
    ask(proxy)
    assert injected(proxy) != before  # the 5-token budget and the new skill now apply


def test_a_request_can_pin_a_version_it_saw_and_an_unknown_one_is_refused(
    proxy: RunningProxy,
) -> None:
    proxy.add_skill("support", "returns", REFUNDS)
    seen = ask(proxy).headers["X-Skillbook-Version"]
    before = injected(proxy)
    proxy.add_skill("support", "tone", TONE)
    ask(proxy)
    assert TONE in injected(proxy)
    pinned = ask(proxy, **{"X-Skillbook-Version": seen})
    assert pinned.headers["X-Skillbook-Version"] == seen
    assert injected(proxy) == before

    gone = httpx.post(
        proxy.sb("support") + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer k", "X-Skillbook-Version": "999"},
    )
    assert gone.status_code == 409
    assert gone.json()["error"]["code"] == "skillbook_version_unknown"
    bad = httpx.post(
        proxy.sb("support") + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": []},
        headers={"Authorization": "Bearer k", "X-Skillbook-Version": "latest"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_skillbook_version"


# 8. outcome figures


def test_outcomes_compare_episodes_with_the_skill_against_those_without(
    proxy: RunningProxy,
) -> None:
    skill = proxy.add_skill("support", "returns", REFUNDS)
    empty = ok(proxy.admin("GET", f"/skills/{skill}/outcomes"))
    assert empty["with_skill"] == {"episodes": 0, "with_feedback": 0, "mean_score": None}
    assert empty["difference"] is None and empty["note"].startswith("no data")

    for session, header, score in (
        ("s-with-1", {}, 1.0),
        ("s-with-2", {}, 0.5),
        ("s-without", {"X-Skillproxy-Inject": "off"}, 0.0),
    ):
        ask(proxy, **{"X-Session-Id": session}, **header)
        proxy.traces(1)
        time.sleep(0.05)
        feedback = httpx.post(
            proxy.sb("support") + "/feedback",
            json={"session_id": session, "score": score},
            headers={"Authorization": "Bearer k"},
        )
        assert feedback.status_code in (201, 202), feedback.text
    proxy.traces(3)
    store = open_store(proxy.config.store.url)
    try:
        group_new_traces(store, settle_s=0)
    finally:
        store.close()

    figures = ok(proxy.admin("GET", f"/skills/{skill}/outcomes"))
    assert figures["with_skill"] == {"episodes": 2, "with_feedback": 2, "mean_score": 0.75}
    assert figures["without_skill"] == {"episodes": 1, "with_feedback": 1, "mean_score": 0.0}
    assert figures["difference"] == 0.75
    assert figures["note"].startswith("observational")


# 9. a skillbook created by traffic says so


def test_a_skillbook_traffic_creates_is_listed_with_its_first_seen_time_and_logged(
    proxy: RunningProxy, caplog: pytest.LogCaptureFixture
) -> None:
    refresh_cache(proxy)
    started = time.time()
    with caplog.at_level(logging.INFO, logger="skillproxy.skillbooks"):
        ask(proxy, "suport")  # a typo of "support"
        proxy.traces(1)
        deadline = time.monotonic() + 5
        while "'suport' created (by traffic)" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    [book] = [b for b in ok(proxy.admin("GET", "/skillbooks"))["data"] if b["name"] == "suport"]
    assert book["created_by"] == "traffic" and book["created_at"] >= started - 1
    history = ok(proxy.admin("GET", "/skillbooks/suport/history"))["data"]
    assert [(e["action"], e["actor"]) for e in history] == [("create", "traffic")]


def test_query_parameters_are_checked_and_a_bad_one_is_named(proxy: RunningProxy) -> None:
    for path, params, named in (
        ("/traces", {"limt": "5"}, "limt"),
        ("/traces", {"limit": "0"}, "limit"),
        ("/traces", {"before": "yesterday"}, "before"),
        ("/skillbooks/support/skills", {"status": "live"}, "status"),
        ("/skillbooks/support/export", {"format": "yaml"}, "format"),
        ("/learner/runs", {"limit": "x"}, "limit"),
    ):
        response = proxy.admin("GET", path, params=params)
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_query" and error["message"].startswith(named)
    assert ok(proxy.admin("GET", "/traces", params={"limit": "2"}))["data"] == []


def test_a_skillbook_name_with_a_trailing_newline_is_refused_everywhere(
    proxy: RunningProxy,
) -> None:
    created = proxy.admin(
        "POST", "/skillbooks/evil%0A/skills", json={"section": "a", "content": REFUNDS}
    )
    assert created.status_code == 400 and created.json()["error"]["code"] == "invalid_skillbook"
    served = httpx.post(
        f"{proxy.url}/sb/evil%0A/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": []},
        headers={"Authorization": "Bearer k"},
    )
    assert served.status_code == 400 and served.json()["error"]["code"] == "invalid_skillbook"
    assert "evil\n" not in [b["name"] for b in ok(proxy.admin("GET", "/skillbooks"))["data"]]


def test_the_cli_freezes_deletes_restores_and_shows_outcomes(proxy: RunningProxy, cli: Cli) -> None:
    skill = proxy.add_skill("support", "returns", REFUNDS)
    code, out, _ = cli("skillbooks", "freeze", "support")
    frozen_at = ok(proxy.admin("GET", "/skillbooks/support/settings"))["frozen_version"]
    assert (code, out) == (0, f"froze support at version {frozen_at}\n")
    code, out, _ = cli("skillbooks", "list")
    [row] = [line for line in out.splitlines() if line.startswith("support ")]
    assert f"frozen at v{frozen_at}" in row and " by admin" in row
    code, out, _ = cli("skillbooks", "show", "support")
    assert code == 0 and "token_budget" in out and "(default)" in out
    assert cli("skillbooks", "unfreeze", "support")[0] == 0

    code, out, _ = cli("skills", "delete", skill)
    assert (code, out) == (0, f"deleted {skill} (skillproxy skills restore {skill} undoes it)\n")
    assert cli("skills", "list", "--skillbook", "support", "--json")[1] == "[]\n"
    assert cli("skills", "restore", skill)[1] == f"restored {skill}: now active\n"

    code, out, _ = cli("skills", "outcomes", skill)
    assert code == 0
    lines = out.splitlines()
    assert lines[2].split() == ["with", "it", "0", "0", "no", "data"]
    assert lines[-2] == "difference  -" and lines[-1].startswith("no data:")
