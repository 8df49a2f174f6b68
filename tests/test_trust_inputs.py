"""Bad input changes nothing and says which field; a delete wins over freezes and pins; refused
requests leave no skillbook behind; the CLI records who acted. Through the real HTTP API, the
proxy and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from skillproxy.cli import main
from tests.harness import ADMIN_TOKEN, RunningProxy
from tests.test_trust_api import REFUNDS, TONE, ask, injected, ok


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PATCH", "/skillbooks/support/settings", {"token_budget": 10**30}, "token_budget"),
        ("PATCH", "/skillbooks/support/settings", {"token_budget": "100"}, "token_budget"),
        ("PATCH", "/skillbooks/support/settings", {"auto_approve": "yes"}, "auto_approve"),
        ("PATCH", "/skillbooks/support/settings", {"auto_approve": 1}, "auto_approve"),
        ("PATCH", "/skillbooks/support/settings", {"frozen": "true"}, "frozen"),
        ("POST", "/skills/{id}/rollback", {"revision": 10**30}, "revision"),
        ("POST", "/skills/{id}/rollback", {"revision": "1"}, "revision"),
        ("POST", "/skillbooks/support/skills/approve", {"ids": ["x" * 300]}, "ids.0"),
    ],
)
def test_a_wrong_type_or_an_absurd_number_is_a_422_naming_the_field_and_changes_nothing(
    proxy: RunningProxy, method: str, path: str, body: dict[str, object], field: str
) -> None:
    skill = proxy.add_skill("support", "returns", REFUNDS)
    before = ok(proxy.admin("GET", "/skillbooks/support"))
    response = proxy.admin(method, path.format(id=skill), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith(field)
    assert ok(proxy.admin("GET", "/skillbooks/support")) == before
    assert ok(proxy.admin("GET", f"/skills/{skill}"))["revision"] == 2


def test_a_route_without_query_parameters_refuses_any(proxy: RunningProxy) -> None:
    skill = proxy.add_skill("support", "returns", REFUNDS)
    for path in ("/skillbooks/support", f"/skills/{skill}", f"/skills/{skill}/outcomes"):
        response = proxy.admin("GET", path, params={"x": "1"})
        assert response.status_code == 400, path
        assert response.json()["error"] == {
            "message": "x: this route takes no query parameters",
            "type": "invalid_request_error",
            "code": "invalid_query",
        }


def test_feedback_is_never_forwarded_and_a_contradictory_one_is_refused(
    proxy: RunningProxy,
) -> None:
    for method in ("GET", "PUT"):
        response = httpx.request(
            method, proxy.v1 + "/feedback", headers={"Authorization": "Bearer sk-client"}
        )
        assert response.status_code == 405 and response.headers["Allow"] == "POST"
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert proxy.provider.received == []  # the client's key went nowhere
    trace = ask(proxy).headers["X-Trace-Id"]
    proxy.trace(trace)
    for body, problem in (
        ({"trace_id": trace, "score": 0, "label": "thumbs_up"}, "disagree"),
        ({"trace_id": trace, "score": "0.5"}, "score"),
        ({"trace_id": trace, "score": float("nan")}, "finite"),
    ):
        response = httpx.post(
            proxy.sb("support") + "/feedback",
            content=json.dumps(body),
            headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        )
        assert response.status_code == 400, body
        assert problem in response.json()["error"]["message"]


def test_supersedes_an_unknown_skill_and_an_import_id_out_of_rules_are_422(
    proxy: RunningProxy,
) -> None:
    unknown = proxy.admin(
        "POST",
        "/skillbooks/support/skills",
        json={"section": "returns", "content": REFUNDS, "supersedes": "nope-00001"},
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["message"].startswith(
        "supersedes: no skill"
    )
    proxy.add_skill("support", "returns", REFUNDS)
    document = ok(proxy.admin("GET", "/skillbooks/support/export"))
    document["skills"][0]["id"] = "bad id/with slash"
    refused = proxy.admin("POST", "/skillbooks/other/import", json=document)
    assert refused.status_code == 422 and "skills[0].id must be" in refused.text
    assert proxy.admin("GET", "/skillbooks/other").status_code == 404


def test_a_request_the_proxy_refuses_creates_no_skillbook(proxy: RunningProxy) -> None:
    for headers, body in (
        ({"X-Skillbook-Version": "5"}, {"model": "m", "messages": []}),
        ({"X-Skillbook-Version": "latest"}, {"model": "m", "messages": []}),
        ({}, b"{not json"),
    ):
        response = httpx.post(
            proxy.sb("newbook") + "/chat/completions",
            content=body if isinstance(body, bytes) else json.dumps(body),
            headers={"Authorization": "Bearer k", "Content-Type": "application/json", **headers},
        )
        assert 400 <= response.status_code < 500
    proxy.traces(3)  # the refusals are traced
    ask(proxy)  # a forwarded request does create its skillbook
    proxy.traces(4)
    names = {b["name"] for b in ok(proxy.admin("GET", "/skillbooks"))["data"]}
    assert "newbook" not in names and "support" in names


def test_a_delete_wins_over_a_pinned_version_and_over_a_freeze(proxy: RunningProxy) -> None:
    doomed = proxy.add_skill("support", "returns", REFUNDS)
    proxy.add_skill("support", "tone", TONE)
    seen = ask(proxy).headers["X-Skillbook-Version"]
    ok(proxy.admin("PATCH", "/skillbooks/support/settings", json={"frozen": True}))
    ok(proxy.admin("DELETE", f"/skills/{doomed}"))
    ask(proxy)
    assert REFUNDS not in injected(proxy) and TONE in injected(proxy)  # frozen, minus the delete
    gone = httpx.post(
        proxy.sb("support") + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": []},
        headers={"Authorization": "Bearer k", "X-Skillbook-Version": seen},
    )
    assert gone.status_code == 409  # that version held the deleted skill: never served again


def test_an_edit_that_changes_nothing_makes_no_revision(proxy: RunningProxy) -> None:
    skill = proxy.add_skill("support", "returns", REFUNDS)
    version = ok(proxy.admin("GET", "/skillbooks/support"))["version"]
    same = ok(proxy.admin("PATCH", f"/skills/{skill}", json={"content": REFUNDS}))
    assert same["revision"] == 2 and [h["action"] for h in same["history"]] == [
        "create", "approve",
    ]  # fmt: skip
    ok(proxy.admin("PATCH", "/skillbooks/support/settings", json={"token_budget": 500}))
    again = ok(proxy.admin("PATCH", "/skillbooks/support/settings", json={"token_budget": 500}))
    assert again["version"] == version + 1


def test_the_cli_records_who_acted(
    proxy: RunningProxy, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    skill = proxy.add_skill("support", "returns", REFUNDS, approve=False)
    monkeypatch.setenv("SKILLPROXY_ACTOR", "dana")
    assert main(["skills", "approve", skill, "--url", proxy.url, "--token", ADMIN_TOKEN]) == 0
    argv = ["skills", "archive", skill, "--actor", "lee", "--url", proxy.url]
    assert main([*argv, "--token", ADMIN_TOKEN]) == 0
    capsys.readouterr()
    history = ok(proxy.admin("GET", f"/skills/{skill}"))["history"]
    assert [(h["action"], h["actor"]) for h in history[1:]] == [
        ("approve", "dana"),
        ("archive", "lee"),
    ]


def test_import_records_which_skills_it_brought_in(proxy: RunningProxy, tmp_path: Path) -> None:
    proxy.add_skill("support", "returns", REFUNDS)
    document = ok(proxy.admin("GET", "/skillbooks/support/export"))
    summary = ok(
        proxy.admin("POST", "/skillbooks/b/import", json=document, headers={"X-Admin-Actor": "kim"})
    )
    [event] = [
        e
        for e in ok(proxy.admin("GET", "/skillbooks/b/history"))["data"]
        if e["action"] == "import"
    ]
    assert event["actor"] == "kim"
    assert event["detail"]["created"] == list(summary["remapped"].values())


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ],
)
def test_a_state_changing_admin_call_from_another_site_is_refused(
    proxy: RunningProxy, headers: dict[str, str]
) -> None:
    """skillproxy/admin/guard.py: a web page cannot make a browser change skills (CSRF)."""
    skill = proxy.add_skill("support", "returns", REFUNDS, approve=False)
    response = proxy.admin("POST", f"/skills/{skill}/approve", content=b"{}", headers=headers)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "cross_site_request"
    assert ok(proxy.admin("GET", f"/skills/{skill}"))["status"] == "pending"
    same_site = {"Origin": proxy.url, "Sec-Fetch-Site": "same-origin"}
    assert proxy.admin("POST", f"/skills/{skill}/approve", headers=same_site).status_code == 200


def test_traces_filter_by_outcome_model_session_and_time_and_chart_by_bucket(
    proxy: RunningProxy,
) -> None:
    """skillproxy/admin/traces.py: what the review page's traffic view asks for."""
    started = __import__("time").time()
    ask(proxy, **{"X-Session-Id": "s-1"})
    ask(proxy, **{"X-Session-Id": "s-2"})
    refused = httpx.post(
        proxy.sb("support") + "/chat/completions",
        content=b"{nope",
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
    )
    assert refused.status_code == 400
    proxy.traces(3)

    def ids(**params: str) -> int:
        return len(ok(proxy.admin("GET", "/traces", params=params))["data"])

    assert ids(skillbook="support") == 3
    assert ids(outcome="error") == 1 and ids(outcome="ok") == 2
    assert ids(session_id="s-2") == 1 and ids(model="gpt-4o-mini") == 2
    assert ids(after=str(started + 3600)) == 0
    bad = proxy.admin("GET", "/traces", params={"outcome": "meh"})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("outcome")
    buckets = ok(
        proxy.admin("GET", "/traces/activity", params={"skillbook": "support", "bucket_s": "3600"})
    )["data"]
    assert all(b["start"] % 3600 == 0 for b in buckets)  # an hour boundary may split them
    assert (sum(b["requests"] for b in buckets), sum(b["errors"] for b in buckets)) == (3, 1)


def test_skills_page_newest_first_for_a_review_queue(proxy: RunningProxy) -> None:
    made = [
        proxy.add_skill("support", "queue", f"When case {n} comes up, check step {n} first.",
                        approve=False)
        for n in range(5)
    ]  # fmt: skip
    params = {"status": "pending", "order": "newest", "limit": "2", "offset": "1"}
    page = ok(proxy.admin("GET", "/skillbooks/support/skills", params=params))["data"]
    assert [s["id"] for s in page] == [made[3], made[2]]
    everything = ok(proxy.admin("GET", "/skillbooks/support/skills"))["data"]
    assert [s["id"] for s in everything] == made  # without paging: all, oldest first, as ever


def test_spend_and_skills_per_day_for_the_charts(proxy: RunningProxy) -> None:
    """skillproxy/admin/learner.py and skillbooks.py: the review page's daily series."""
    made = proxy.add_skill("support", "returns", REFUNDS)
    proxy.add_skill("support", "tone", TONE, approve=False)
    ok(proxy.admin("POST", f"/skills/{made}/archive"))
    days = ok(proxy.admin("GET", "/skillbooks/support/skills-by-day"))["data"]
    totals = [sum(d[key] for d in days) for key in ("proposed", "approved", "retired")]
    assert totals == [2, 1, 1]  # summed: the test may straddle midnight UTC
    assert ok(proxy.admin("GET", "/learner/spend", params={"days": "7"}))["data"] == []
    bad = proxy.admin("GET", "/learner/spend", params={"days": "0"})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("days")


def test_a_change_may_carry_a_note_that_the_history_keeps_and_an_export_carries(
    proxy: RunningProxy,
) -> None:
    skill = proxy.add_skill("support", "returns", REFUNDS, approve=False)
    rejected = ok(proxy.admin("POST", f"/skills/{skill}/reject", json={"note": "too vague"}))
    assert rejected["history"][-1]["note"] == "too vague"
    bad = proxy.admin("POST", f"/skills/{skill}/restore", json={"reason": "x"})
    assert bad.status_code == 422 and "reason" in bad.json()["error"]["message"]
    document = ok(proxy.admin("GET", "/skillbooks/support/export"))
    copied = ok(proxy.admin("POST", "/skillbooks/copy-of/import", json=document))
    again = ok(proxy.admin("GET", f"/skills/{copied['remapped'][skill]}"))
    assert again["history"][-1]["note"] == "too vague"
