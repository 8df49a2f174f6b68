"""`GET /metrics` on a running proxy: scraped before and after real traffic (the openai and
anthropic SDKs, httpx), parsed with prometheus_client's own parser.

Covers proxy/metrics.py, proxy/pipeline_metrics.py and skillproxy/scrape.py."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.config import ConfigError, MetricsConfig, load_config
from proxy.metrics import OTHER, LabelCap, ProxyMetrics, route_label
from proxy.tracing import TraceRecord
from store import open_store
from tests.fakes import replies
from tests.harness import ADMIN_TOKEN, RunningProxy, sink_pid

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(proxy: RunningProxy, **headers: str) -> Samples:
    response = httpx.get(f"{proxy.url}/metrics", headers={**AUTH, **headers})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(key)[label] for sample, key in samples if sample == name and label in dict(key)}


def scrape_until(
    proxy: RunningProxy, done: Callable[[Samples], bool], timeout: float = 10.0
) -> Samples:
    """Scrape until `done` holds (traces are written in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(proxy)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


CHAT = {"route": "chat/completions", "format": "chat", "skillbook": "support"}


def test_counters_move_by_the_traffic_sent_with_its_labels(proxy: RunningProxy) -> None:
    proxy.add_skill("support", "tone", "Answer in one short sentence.")
    before = scrape(proxy)
    client = proxy.openai("support")
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
        assert raw.headers["X-Skills-Injected"] == "1"
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "ok"
    proxy.provider.enqueue(replies.openai_error(429, "slow down", "rate_limit_error"))
    with pytest.raises(Exception, match="slow down"):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert httpx.get(f"{proxy.v1}/models").status_code == 200
    after = scrape_until(proxy, lambda s: value(s, "skillproxy_traces_written_total") >= 6)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {**CHAT, "model": "gpt-4o-mini", "status": "200"}
    assert moved("skillproxy_requests_total", **ok) == 4
    assert moved("skillproxy_requests_total", **{**ok, "status": "429"}) == 1
    models = {"route": "models", "format": "none", "skillbook": "default", "model": "none"}
    assert moved("skillproxy_requests_total", **models, status="200") == 1
    timed = {"route": "chat/completions", "model": "gpt-4o-mini"}
    assert moved("skillproxy_request_duration_seconds_count", **timed, stream="false") == 4
    assert moved("skillproxy_request_duration_seconds_count", **timed, stream="true") == 1
    assert moved("skillproxy_time_to_first_byte_seconds_count", **timed, stream="true") == 1
    assert moved("skillproxy_request_duration_seconds_bucket", **timed, stream="true", le="+Inf")
    assert moved("skillproxy_request_duration_seconds_sum", **timed, stream="false") > 0
    assert moved("skillproxy_injected_skills_total", skillbook="support") == 5  # 429 too
    assert moved("skillproxy_injected_skill_tokens_total", skillbook="support") > 0
    assert moved("skillproxy_request_bytes_total", route="chat/completions", skillbook="support")
    assert moved("skillproxy_response_bytes_total", route="chat/completions", skillbook="support")
    assert moved("skillproxy_traces_written_total") >= 6
    assert moved("skillproxy_traces_queued_total") >= 6
    assert value(after, "skillproxy_traces_dropped_total") == 0
    assert value(after, "skillproxy_traces_lost_total") == 0
    assert value(after, "skillproxy_store_up") == 1
    assert value(after, "skillproxy_store_errors_total", source="traces") == 0
    assert value(after, "skillproxy_feedback_waiting") == 0
    assert value(after, "skillproxy_metrics_errors_total") == 0
    assert ("process_resident_memory_bytes", frozenset()) in after


def test_anthropic_messages_are_counted_under_their_route(proxy: RunningProxy) -> None:
    proxy.anthropic().messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
    )
    samples = scrape_until(
        proxy, lambda s: "messages" in labelled(s, "skillproxy_requests_total", "route")
    )
    labels = {
        "route": "messages",
        "format": "messages",
        "skillbook": "default",
        "model": "claude-haiku-4-5",
        "status": "200",
    }
    assert value(samples, "skillproxy_requests_total", **labels) == 1


def test_skillbooks_and_models_past_the_cap_fold_into_other(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(metrics={"max_models": 3, "max_skillbooks": 2})
    with httpx.Client() as client:
        for i in range(8):
            response = client.post(
                f"{proxy.sb(f'book{i}')}/chat/completions",
                json={"model": f"model-{i}", "messages": [{"role": "user", "content": "Hi"}]},
            )
            assert response.status_code == 200
    samples = scrape(proxy)
    assert labelled(samples, "skillproxy_requests_total", "model") == {
        "model-0", "model-1", "model-2", OTHER,
    }  # fmt: skip
    assert labelled(samples, "skillproxy_requests_total", "skillbook") == {"book0", "book1", OTHER}
    folded = {**CHAT, "skillbook": OTHER, "model": OTHER, "status": "200"}
    assert value(samples, "skillproxy_requests_total", **folded) == 5
    assert labelled(samples, "skillproxy_request_duration_seconds_count", "model") == {
        "model-0", "model-1", "model-2", OTHER,
    }  # fmt: skip
    total = sum(v for (name, _), v in samples.items() if name == "skillproxy_requests_total")
    assert total == 8


def test_no_model_and_the_default_skillbook_take_no_place_under_the_caps(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(metrics={"max_models": 1, "max_skillbooks": 1})
    with httpx.Client() as client:
        assert client.get(f"{proxy.v1}/models").status_code == 200  # no model: "none"
        for model in ("gpt-4o", "gpt-4o-mini"):
            response = client.post(
                f"{proxy.v1}/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "Hi"}]},
            )
            assert response.status_code == 200
        assert client.get(f"{proxy.v1}/models").status_code == 200
        for skillbook in ("made-up-1", "made-up-2"):  # with max_skillbooks = 1
            assert client.get(f"{proxy.sb(skillbook)}/models").status_code == 200
        assert client.get(f"{proxy.v1}/models").status_code == 200
    samples = scrape(proxy)
    assert labelled(samples, "skillproxy_requests_total", "model") == {"none", "gpt-4o", OTHER}
    assert labelled(samples, "skillproxy_requests_total", "skillbook") == {
        "default", "made-up-1", OTHER,
    }  # fmt: skip
    listed = {"route": "models", "format": "none", "skillbook": "default", "status": "200"}
    assert value(samples, "skillproxy_requests_total", **listed, model="none") == 3


def test_a_client_that_leaves_is_counted_once_as_a_disconnect(proxy: RunningProxy) -> None:
    proxy.provider.enqueue(replies.text("late", delay=0.6), replies.text("cut", hang=True))
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{proxy.v1}/chat/completions", json=body, timeout=0.2)
    with httpx.stream("POST", f"{proxy.v1}/chat/completions", json={**body, "stream": True}) as r:
        next(r.iter_bytes())  # the first delta, then hang up
    where = {"route": "chat/completions", "skillbook": "default"}
    samples = scrape_until(
        proxy, lambda s: value(s, "skillproxy_client_disconnects_total", **where) >= 2
    )
    assert value(samples, "skillproxy_client_disconnects_total", **where) == 2
    asked = {**CHAT, "skillbook": "default", "model": "m"}
    assert value(samples, "skillproxy_requests_total", **asked, status="none") == 1
    assert value(samples, "skillproxy_requests_total", **asked, status="200") == 1
    streamed = {"route": "chat/completions", "model": "m", "stream": "true"}
    assert value(samples, "skillproxy_time_to_first_byte_seconds_count", **streamed) == 1


def test_a_request_is_counted_even_if_its_client_leaves_while_its_trace_waits(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    """A full trace queue in block mode holds the handler after the answer went out; the
    client leaving then cancels it (`handler_cancellation`), which must not cost the count."""
    proxy = make_proxy(traces={"queue_size": 1, "on_full": "block", "block_timeout_ms": 1500})
    sink = sink_pid(proxy)
    os.kill(sink, signal.SIGSTOP)  # nothing is committed: the queue stays full
    try:
        body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
        for _ in range(4):
            # held until the trace is queued, or not: the client leaves all the same
            with httpx.Client(timeout=0.3) as client, contextlib.suppress(httpx.ReadTimeout):
                client.post(f"{proxy.v1}/chat/completions", json=body)
    finally:
        os.kill(sink, signal.SIGCONT)
    samples = scrape_until(proxy, lambda s: requests(s) >= 4, timeout=3)
    assert requests(samples) == 4


def requests(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "skillproxy_requests_total")


def test_answers_the_proxy_gives_itself_are_counted_with_their_status(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(server={"client_keys": ["sk-team"], "max_body_bytes": 2000})
    chat = f"{proxy.v1}/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.Client() as client:
        stranger, team = {"Authorization": "Bearer no"}, {"Authorization": "Bearer sk-team"}
        assert client.post(chat, json=body, headers=stranger).status_code == 401
        big = {**body, "messages": [{"role": "user", "content": "x" * 5000}]}
        assert client.post(chat, json=big, headers=team).status_code == 413
        assert client.post(chat, content=b"{", headers=team).status_code == 400
        assert client.post(chat, json=body, headers=team).status_code == 200
    samples = scrape(proxy)
    where = {"route": "chat/completions", "format": "chat", "skillbook": "default"}
    for status, model in (("401", "none"), ("413", "none"), ("400", "none"), ("200", "m")):
        assert value(samples, "skillproxy_requests_total", **where, model=model, status=status) == 1
    assert requests(samples) == 4


def test_the_learners_figures_come_from_the_store(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    """Runs written by another process (here: a store opened beside the proxy) show up, their
    skillbooks capped like the requests'."""
    proxy = make_proxy(metrics={"max_skillbooks": 1})
    store = open_store(proxy.config.store.url)
    try:
        finished = [("support", "done")] * 2 + [("support", "failed"), ("x", "done"), ("y", "done")]
        for skillbook, status in finished:
            run = store.learner.start_run(skillbook)
            store.learner.finish_run(run, status)
        totals = store.learner.totals()
    finally:
        store.close()
    assert [(t.skillbook, t.status, t.runs) for t in totals] == [
        ("support", "done", 2), ("support", "failed", 1), ("x", "done", 1), ("y", "done", 1),
    ]  # fmt: skip
    samples = scrape(proxy)
    assert value(samples, "skillproxy_learner_runs_total", skillbook=OTHER, status="done") == 2
    runs = "skillproxy_learner_runs_total"
    assert value(samples, runs, skillbook="support", status="done") == 2
    assert value(samples, runs, skillbook="support", status="failed") == 1
    tokens = "skillproxy_learner_tokens_total"
    assert value(samples, tokens, skillbook="support", direction="input") == 0
    assert ("skillproxy_learner_cost_usd_total", frozenset({("skillbook", "support")})) in samples
    assert value(samples, "skillproxy_learner_episodes_total", skillbook="support") == 0
    assert value(samples, "skillproxy_store_errors_total", source="metrics") == 0


def test_a_run_under_way_is_a_gauge_so_the_runs_counter_never_goes_down(
    proxy: RunningProxy,
) -> None:
    store = open_store(proxy.config.store.url)
    try:
        run = store.learner.start_run("support")
        samples = scrape(proxy)
        assert value(samples, "skillproxy_learner_runs_running", skillbook="support") == 1
        assert labelled(samples, "skillproxy_learner_runs_total", "status") == set()
        store.learner.finish_run(run, "done")
    finally:
        store.close()
    time.sleep(1.05)  # the figures are read again at most once a second
    samples = scrape(proxy)
    assert value(samples, "skillproxy_learner_runs_running", skillbook="support") == 0
    assert value(samples, "skillproxy_learner_runs_total", skillbook="support", status="done") == 1


def test_the_cost_counter_does_not_dip_when_a_run_ends(proxy: RunningProxy) -> None:
    """The store rounds each (skillbook, status) group's cost to a millionth: two runs of
    0.6 millionths show as 1 + 1 while one runs, and as 1 once both are done."""
    store = open_store(proxy.config.store.url)
    try:
        done, running = store.learner.start_run("s"), store.learner.start_run("s")
        store.learner.finish_run(done, "done")
    finally:
        store.close()
    db = sqlite3.connect(proxy.config.store.url.removeprefix("sqlite:///"))
    with db:
        db.execute("UPDATE learner_runs SET cost_usd = 0.0000006")
    cost = "skillproxy_learner_cost_usd_total"
    assert value(scrape(proxy), cost, skillbook="s") == pytest.approx(2e-6)
    with db:
        db.execute("UPDATE learner_runs SET status = 'done' WHERE seq = ?", [running])
    db.close()
    time.sleep(1.05)  # the figures are read again at most once a second
    assert value(scrape(proxy), cost, skillbook="s") == pytest.approx(2e-6)


def test_store_trouble_shows_in_the_store_metrics(proxy: RunningProxy) -> None:
    """Trace writes refused (a trigger), then the learner's figures unreadable (their table
    renamed away), then the store locked by another connection: a scrape answers throughout."""
    db = proxy.db()
    db.execute(
        "CREATE TRIGGER no_room BEFORE INSERT ON traces "
        "BEGIN SELECT RAISE(ABORT, 'no room for traces'); END"
    )
    try:
        assert httpx.get(f"{proxy.v1}/models").status_code == 200
        failing = scrape_until(
            proxy, lambda s: value(s, "skillproxy_store_errors_total", source="traces") >= 1
        )
        assert value(failing, "skillproxy_store_errors_total", source="traces") >= 1
        assert value(failing, "skillproxy_trace_writer_failing") == 1
        db.execute("ALTER TABLE learner_runs RENAME TO learner_runs_away")
        time.sleep(1.1)  # the learner's figures are read at most once a second
        unread = scrape(proxy)
        assert value(unread, "skillproxy_store_errors_total", source="metrics") == 1
        db.execute("ALTER TABLE learner_runs_away RENAME TO learner_runs")
    finally:
        db.execute("DROP TRIGGER no_room")
    db.conn.execute("BEGIN EXCLUSIVE")
    try:
        locked = scrape_until(proxy, lambda s: value(s, "skillproxy_store_up") == 0)
        assert value(locked, "skillproxy_store_up") == 0
    finally:
        db.conn.execute("ROLLBACK")
        db.conn.close()
    serving = scrape_until(proxy, lambda s: value(s, "skillproxy_store_up") == 1)
    assert value(serving, "skillproxy_store_up") == 1


def test_a_scrape_needs_a_token_when_one_is_set(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(metrics={"token": "scrape-only"})
    url = f"{proxy.url}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": "Bearer scrape-only"}).status_code == 200
    assert httpx.get(url, headers=AUTH).status_code == 200  # the admin token too
    elsewhere = proxy.admin("GET", "/skillbooks", headers={"Authorization": "Bearer scrape-only"})
    assert elsewhere.status_code == 403  # the metrics token reads /metrics only


def test_without_any_token_only_loopback_may_scrape(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(admin={"token": ""})
    url = f"{proxy.url}/metrics"
    assert httpx.get(url).status_code == 200
    forwarded = httpx.get(url, headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403
    assert forwarded.json()["error"]["code"] == "metrics_loopback_only"


def test_openmetrics_is_served_when_asked_for(proxy: RunningProxy) -> None:
    response = httpx.get(
        f"{proxy.url}/metrics",
        headers={**AUTH, "Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_metrics_can_be_turned_off(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(metrics={"enabled": False})
    assert proxy.openai().models.list().data
    response = httpx.get(f"{proxy.url}/metrics", headers=AUTH)
    assert response.status_code == 404
    assert "metrics.enabled" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/chat/completions", "chat/completions"),
        ("/v1/chat/completions?api-version=1", "chat/completions"),
        ("/v1/messages/count_tokens", "messages/count_tokens"),
        ("/v1/messages/batches/x", "messages"),
        ("/v1/responses/resp_123", "responses"),
        ("/v1/models/gpt-4o", "models"),
        ("/v1/files/file-abc/content", "files"),
        ("/v1/made-up/thing", OTHER),
        ("/v1/", OTHER),
        ("/v1/chat", OTHER),
    ],
)
def test_route_labels_are_a_fixed_list(path: str, route: str) -> None:
    assert route_label(path) == route


@pytest.mark.parametrize("key", ["max_models", "max_skillbooks"])
def test_a_cap_below_one_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"metrics\.{key}"):
        load_config(environ={}, overrides={"metrics": {key: 0}})


def test_a_label_cap_keeps_the_first_values_seen() -> None:
    cap = LabelCap(2)
    assert [cap(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]


def test_a_record_the_metrics_cannot_read_is_counted_not_raised() -> None:
    metrics = ProxyMetrics(MetricsConfig())
    broken: Any = TraceRecord(id="t", created_at=0, skillbook="x", method="GET", path=None)  # type: ignore[arg-type]
    metrics.observe(broken)
    assert metrics.failures == 1
