"""The admin API: auth on every route, the skill lifecycle, history, errors that say why.

Covers skillproxy/admin/guard.py, skillproxy/admin/routes.py, skillproxy/admin/skills.py,
skillproxy/admin/traces.py, skillproxy/admin/transfer.py, and the status each store/errors.py
error maps to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from skillproxy.admin.routes import ROUTES
from tests.harness import ADMIN_TOKEN, RunningProxy

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RULE = (
    "When a customer asks to return an item, verify the return window "
    "before asking for shipping details."
)


def admin(proxy: RunningProxy, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return httpx.request(method, proxy.url + "/admin" + path, headers=headers, **kwargs)


def create(
    proxy: RunningProxy, content: str = RULE, skillbook: str = "support", **extra: Any
) -> dict[str, Any]:
    response = admin(
        proxy,
        "POST",
        f"/skillbooks/{skillbook}/skills",
        json={"section": "Returns", "content": content, **extra},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def concrete(path: str) -> str:
    return (
        path.replace("{skillbook}", "support")
        .replace("{skill_id}", "returns-00001")
        .replace("{trace_id}", "tr_x")
        .replace("{action:approve|reject|archive|restore}", "approve")
    )


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_admin_route_refuses_a_missing_or_wrong_token(
    proxy: RunningProxy, route: Any
) -> None:
    url = proxy.url + "/admin" + concrete(route.path)
    missing = httpx.request(route.method, url, json={})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_token"
    wrong = httpx.request(route.method, url, json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "invalid_token"
    openapi = httpx.get(proxy.url + "/admin/openapi.json")
    assert openapi.status_code == 401


def test_without_a_token_only_loopback_is_served(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(admin={"token": ""})
    assert httpx.get(proxy.url + "/admin/skillbooks").status_code == 200  # we are on loopback


def test_unknown_admin_paths_and_methods_are_json_errors_behind_the_token(
    proxy: RunningProxy,
) -> None:
    unknown = admin(proxy, "GET", "/nothing/here")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    wrong_method = admin(proxy, "DELETE", "/skillbooks")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert httpx.get(proxy.url + "/admin/nothing/here").status_code == 401
    assert admin(proxy, "GET", "/skillbooks").status_code == 200  # the catch-all is last


def test_skill_lifecycle_with_history_and_evidence(proxy: RunningProxy) -> None:
    skill = create(proxy, evidence=[{"trace_id": "tr_1", "reason": "customer asked twice"}])
    assert skill["status"] == "pending" and skill["section"] == "returns"
    assert skill["id"] == "returns-00001"
    assert skill["evidence"][0]["trace_id"] == "tr_1"
    sid = skill["id"]
    assert (
        admin(proxy, "POST", f"/skills/{sid}/approve", headers={"X-Admin-Actor": "ana"}).json()[
            "status"
        ]
        == "active"
    )
    edited = admin(proxy, "PATCH", f"/skills/{sid}", json={"content": RULE + " Always."}).json()
    assert edited["content"].endswith("Always.") and edited["status"] == "active"
    shown = admin(proxy, "GET", f"/skills/{sid}").json()
    assert [h["action"] for h in shown["history"]] == ["create", "approve", "edit"]
    assert shown["history"][1]["actor"] == "ana"
    assert shown["history"][2]["before"]["content"] == RULE
    rolled = admin(proxy, "POST", f"/skills/{sid}/rollback", json={"revision": 1}).json()
    assert rolled["content"] == RULE and rolled["status"] == "pending"
    assert rolled["revision"] == 4
    assert (
        admin(proxy, "POST", f"/skills/{sid}/rollback", json={"revision": 3})
        .json()["content"]
        .endswith("Always.")
    )


def test_rollback_restores_the_text_and_moves_the_version(proxy: RunningProxy) -> None:
    sid = create(proxy)["id"]
    admin(proxy, "POST", f"/skills/{sid}/approve")
    v1 = admin(proxy, "GET", "/skillbooks/support/prompt").json()
    admin(
        proxy,
        "PATCH",
        f"/skills/{sid}",
        json={"content": "When asked about returns, say no politely."},
    )
    v2 = admin(proxy, "GET", "/skillbooks/support/prompt").json()
    assert "say no politely" in v2["text"] and v2["version"] > v1["version"]
    admin(proxy, "POST", f"/skills/{sid}/rollback", json={"revision": 2})
    v3 = admin(proxy, "GET", "/skillbooks/support/prompt").json()
    assert v3["text"] == v1["text"] and v3["version"] > v2["version"]


def test_transitions_that_make_no_sense_are_409(proxy: RunningProxy) -> None:
    sid = create(proxy)["id"]
    assert admin(proxy, "POST", f"/skills/{sid}/restore").status_code == 409
    admin(proxy, "POST", f"/skills/{sid}/archive")
    response = admin(proxy, "POST", f"/skills/{sid}/approve")
    assert response.status_code == 409
    assert "archived" in response.json()["error"]["message"]
    assert admin(proxy, "POST", f"/skills/{sid}/restore").json()["status"] == "pending"


def test_bad_inputs_get_clear_errors(proxy: RunningProxy) -> None:
    assert admin(proxy, "GET", "/skills/nope-00009").status_code == 404
    assert admin(proxy, "POST", "/skills/nope-00009/approve").status_code == 404
    too_long = admin(
        proxy, "POST", "/skillbooks/support/skills", json={"section": "x", "content": "y" * 500}
    )
    assert too_long.status_code == 422 and "at most 400" in too_long.json()["error"]["message"]
    two_lines = admin(
        proxy,
        "POST",
        "/skillbooks/support/skills",
        json={"section": "x", "content": "line one\nline two"},
    )
    assert two_lines.status_code == 422
    missing = admin(proxy, "POST", "/skillbooks/support/skills", json={"content": RULE})
    assert missing.status_code == 422 and "section" in missing.json()["error"]["message"]
    unknown = admin(
        proxy,
        "POST",
        "/skillbooks/support/skills",
        json={"section": "x", "content": RULE, "extra": 1},
    )
    assert unknown.status_code == 422 and "extra" in unknown.json()["error"]["message"]
    not_json = admin(proxy, "POST", "/skillbooks/support/skills", content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    sid = create(proxy)["id"]
    assert admin(proxy, "POST", f"/skills/{sid}/rollback", json={"revision": 99}).status_code == 404
    assert admin(proxy, "PATCH", f"/skills/{sid}", json={}).status_code == 422
    assert (
        admin(
            proxy, "PATCH", "/skillbooks/support/settings", json={"ranking": "random"}
        ).status_code
        == 422
    )
    assert (
        admin(proxy, "PATCH", "/skillbooks/support/settings", json={"token_budget": -1}).status_code
        == 422
    )
    assert admin(proxy, "GET", "/skillbooks/bad name/skills").status_code == 400
    assert admin(proxy, "GET", "/no/such/thing").status_code == 404
    assert admin(proxy, "GET", "/traces?limit=0").status_code == 400


def test_listing_filters_and_settings(proxy: RunningProxy) -> None:
    a = create(proxy)["id"]
    create(proxy, "When billing is disputed, quote the invoice line before answering.")
    admin(proxy, "POST", f"/skills/{a}/approve")
    listed = admin(proxy, "GET", "/skillbooks/support/skills", params={"status": "active"}).json()[
        "data"
    ]
    assert [s["id"] for s in listed] == [a]
    found = admin(proxy, "GET", "/skillbooks/support/skills", params={"q": "invoice"}).json()[
        "data"
    ]
    assert len(found) == 1 and "invoice" in found[0]["content"]
    books = admin(proxy, "GET", "/skillbooks").json()["data"]
    assert books[0]["name"] == "support" and books[0]["skills"]["active"] == 1
    settings = admin(
        proxy, "PATCH", "/skillbooks/support/settings", json={"auto_approve": True}
    ).json()
    assert settings["auto_approve"] is True and settings["effective"]["token_budget"] == 800
    reset = admin(
        proxy, "PATCH", "/skillbooks/support/settings", json={"auto_approve": None}
    ).json()
    assert reset["auto_approve"] is None and reset["effective"]["auto_approve"] is False


def test_traces_are_listed_newest_first_and_paged(proxy: RunningProxy) -> None:
    ids = [
        httpx.post(
            proxy.sb("support") + "/chat/completions", json={"model": "m", "messages": []}
        ).headers["X-Trace-Id"]
        for _ in range(3)
    ]
    httpx.post(proxy.sb("other") + "/chat/completions", json={"model": "m", "messages": []})
    proxy.traces(4)
    page = admin(proxy, "GET", "/traces", params={"skillbook": "support", "limit": 2}).json()
    assert [t["id"] for t in page["data"]] == ids[::-1][:2]
    assert "request_json" not in page["data"][0]
    rest = admin(
        proxy, "GET", "/traces", params={"skillbook": "support", "before": page["next_before"]}
    ).json()
    assert [t["id"] for t in rest["data"]] == [ids[0]] and rest["next_before"] is None
    one = admin(proxy, "GET", f"/traces/{ids[0]}").json()
    assert one["request_json"] == {"model": "m", "messages": []}
    assert admin(proxy, "GET", "/traces/tr_missing").status_code == 404


def test_openapi_document_lists_every_route(proxy: RunningProxy) -> None:
    document = admin(proxy, "GET", "/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert "/admin/skills/{skill_id}/{action}" in document["paths"]
    admin_paths = [item for path, item in document["paths"].items() if path.startswith("/admin/")]
    assert len([op for item in admin_paths for op in item]) == len(ROUTES)
    body = document["paths"]["/admin/skillbooks/{skillbook}/skills"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    assert "section" in document["components"]["schemas"][ref.rpartition("/")[2]]["properties"]


def test_export_import_round_trip(proxy: RunningProxy) -> None:
    sid = create(proxy, evidence=[{"trace_id": "tr_9", "reason": "seen"}])["id"]
    admin(proxy, "POST", f"/skills/{sid}/approve")
    create(proxy, "When billing is disputed, quote the invoice line before answering.")
    exported = admin(proxy, "GET", "/skillbooks/support/export").json()
    markdown = admin(proxy, "GET", "/skillbooks/support/export", params={"format": "markdown"})
    assert markdown.headers["Content-Type"].startswith("text/markdown")
    assert RULE in markdown.text
    again = admin(proxy, "POST", "/skillbooks/support/import", json=exported).json()
    assert again["unchanged"] == 2 and again["created"] == 0
    assert admin(proxy, "GET", "/skillbooks/support/export").json() == exported
    copied = admin(proxy, "POST", "/skillbooks/elsewhere/import", json=exported).json()
    assert copied["created"] == 2
    assert set(copied["remapped"]) == {s["id"] for s in exported["skills"]}
    elsewhere = admin(proxy, "GET", "/skillbooks/elsewhere/skills").json()["data"]
    assert sorted(s["id"] for s in elsewhere) == sorted(copied["remapped"].values())
    bad = admin(proxy, "POST", "/skillbooks/support/import", json={"format": "nope"})
    assert bad.status_code == 422
