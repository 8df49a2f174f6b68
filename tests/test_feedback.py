"""`POST /v1/feedback`: recorded when it names a real exchange, a clear 4xx when it does not.

Which skillbook feedback is filed under, labels and reading feedback back: test_feedback_trust.py.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.harness import RunningProxy


def test_feedback_on_a_fresh_trace_is_recorded_even_before_the_trace_is_written(
    proxy: RunningProxy,
) -> None:
    answer = httpx.post(proxy.v1 + "/chat/completions", json={"model": "m", "messages": []})
    trace_id = answer.headers["X-Trace-Id"]
    response = httpx.post(
        proxy.v1 + "/feedback", json={"trace_id": trace_id, "score": 0.0, "comment": "wrong"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "recorded"
    db = proxy.db()
    row = db.execute("SELECT trace_id, score, comment, skillbook FROM feedback").fetchone()
    db.conn.close()
    assert row == (trace_id, 0.0, "wrong", "default")


def test_feedback_by_session_and_label_under_a_skillbook(proxy: RunningProxy) -> None:
    httpx.post(
        proxy.sb("bot") + "/chat/completions",
        json={"model": "m", "messages": []},
        headers={"X-Session-Id": "sess-42"},
    )
    proxy.traces(1)
    response = httpx.post(
        proxy.sb("bot") + "/feedback", json={"session_id": "sess-42", "label": "thumbs_down"}
    )
    assert response.status_code == 201
    db = proxy.db()
    assert db.execute("SELECT skillbook, label FROM feedback").fetchone() == ("bot", "thumbs_down")
    db.conn.close()


def test_bad_feedback_gets_clear_errors(proxy: RunningProxy) -> None:
    def post(body: object) -> httpx.Response:
        return httpx.post(proxy.v1 + "/feedback", json=body)

    unknown = post({"trace_id": "tr_nope", "score": 1})
    assert unknown.status_code == 404 and "tr_nope" in unknown.json()["error"]["message"]
    assert unknown.json()["error"]["param"] == "trace_id"
    never = post({"session_id": "never-seen", "score": 1})
    assert never.status_code == 404 and never.json()["error"]["param"] == "session_id"
    for body, fragment, param in [
        ({"score": 1}, "exactly one of trace_id or session_id", None),
        ({"trace_id": "a", "session_id": "b", "score": 1}, "exactly one", None),
        ({"trace_id": "a"}, "score (0..1) or a label", None),
        ({"trace_id": "a", "score": 3}, "less than or equal to 1", "score"),
        ({"trace_id": "a", "score": 1, "stars": 5}, "stars", "stars"),
        ({"trace_id": "a", "label": "so-so"}, "label: 'so-so' is not one of", "label"),
        ([1], "body", None),
    ]:
        response = post(body)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert error["code"] == "invalid_feedback" and fragment in error["message"], error
        assert error["param"] == param, error
    garbage = httpx.post(
        proxy.v1 + "/feedback", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_json"


def test_deeply_nested_feedback_is_a_json_400(proxy: RunningProxy) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = httpx.post(proxy.v1 + "/feedback", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_feedback_wants_a_client_key_when_keys_are_configured(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(server={"client_keys": ["sk-team"]})
    answer = httpx.post(
        proxy.v1 + "/chat/completions",
        json={"model": "m", "messages": []},
        headers={"Authorization": "Bearer sk-team"},
    )
    verdict = {"trace_id": answer.headers["X-Trace-Id"], "score": 1.0}
    refused = httpx.post(proxy.v1 + "/feedback", json=verdict)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    allowed = httpx.post(proxy.v1 + "/feedback", json=verdict, headers={"x-api-key": "sk-team"})
    assert allowed.status_code == 201, allowed.text
