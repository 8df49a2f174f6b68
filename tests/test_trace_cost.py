"""Every trace carries its cost: priced by the trace sink (proxy/trace_sink.py), stored by
store/sqlite/traces.py after migration m006 (store/sqlite/migrations.py), and shown per trace,
per time bucket and per skillbook and day by the admin API (skillproxy/admin/traces.py)."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import store
from proxy.trace_sink import priced
from proxy.tracing import TraceRecord, new_trace_id, row_values
from store.columns import PRICED_COLUMNS, TRACE_COLUMNS
from store.sqlite import migrations
from tests.fakes import replies
from tests.harness import RunningProxy

GPT_IN, GPT_OUT = 1.5e-07, 6e-07
"""gpt-4o-mini's input and output prices per token in litellm's table."""
HAIKU_IN, HAIKU_OUT = 1e-06, 5e-06
"""claude-haiku-4-5's."""


def chat(proxy: RunningProxy, skillbook: str, model: str, usage: replies.Usage) -> str:
    proxy.provider.enqueue(replies.text("four", usage=usage))
    answer = proxy.openai(skillbook).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "2+2?"}]
    )
    trace_id: str = answer.headers["X-Trace-Id"]
    return trace_id


def test_a_proxied_exchange_is_stored_with_its_cost(proxy: RunningProxy) -> None:
    trace_id = chat(proxy, "costs", "gpt-4o-mini", replies.Usage(1200, 340))
    trace = proxy.trace(trace_id)
    assert (trace["input_tokens"], trace["output_tokens"]) == (1200, 340)
    assert trace["cost_usd"] == pytest.approx(1200 * GPT_IN + 340 * GPT_OUT)


def test_an_anthropic_stream_is_priced_from_its_folded_usage(proxy: RunningProxy) -> None:
    proxy.provider.enqueue(replies.text("four", usage=replies.Usage(800, 60)))
    with proxy.anthropic("costs").messages.stream(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "2+2?"}]
    ) as stream:
        stream.get_final_message()
        trace_id = stream.response.headers["X-Trace-Id"]
    assert proxy.trace(trace_id)["cost_usd"] == pytest.approx(800 * HAIKU_IN + 60 * HAIKU_OUT)


def test_an_unknown_model_is_stored_without_a_cost(proxy: RunningProxy) -> None:
    trace_id = chat(proxy, "costs", "house-model-7", replies.Usage(100, 10))
    trace = proxy.trace(trace_id)
    assert trace["input_tokens"] == 100
    assert trace["cost_usd"] is None


def test_the_admin_api_shows_cost_per_trace_bucket_and_day(proxy: RunningProxy) -> None:
    first = chat(proxy, "billing", "gpt-4o-mini", replies.Usage(1000, 100))
    second = chat(proxy, "billing", "openai/gpt-4o-mini", replies.Usage(2000, 200))
    unknown = chat(proxy, "billing", "house-model-7", replies.Usage(50, 5))
    other = chat(proxy, "elsewhere", "gpt-4o-mini", replies.Usage(9000, 900))
    proxy.trace(other)
    costs = {first: 1000 * GPT_IN + 100 * GPT_OUT, second: 2000 * GPT_IN + 200 * GPT_OUT}
    total = sum(costs.values())

    for trace_id, cost in costs.items():
        detail = proxy.admin("GET", f"/traces/{trace_id}").json()
        assert detail["cost_usd"] == pytest.approx(cost)
    listed = proxy.admin("GET", "/traces", params={"skillbook": "billing"}).json()["data"]
    assert {t["id"]: t["cost_usd"] for t in listed} == {
        first: pytest.approx(costs[first]),
        second: pytest.approx(costs[second]),
        unknown: None,
    }

    buckets = proxy.admin(
        "GET", "/traces/activity", params={"skillbook": "billing", "bucket_s": 86400}
    ).json()["data"]
    assert sum(b["requests"] for b in buckets) == 3
    assert sum(b["cost_usd"] for b in buckets) == pytest.approx(total)

    spend = proxy.admin("GET", "/skillbooks/billing/spend", params={"days": 7}).json()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert spend["skillbook"] == "billing"
    assert (spend["requests"], spend["priced"]) == (3, 2)
    assert spend["cost_usd"] == pytest.approx(total)
    [day] = spend["days"]
    assert (day["day"], day["requests"], day["priced"]) == (today, 3, 2)
    assert (day["input_tokens"], day["output_tokens"]) == (3050, 305)
    assert day["cost_usd"] == pytest.approx(total)
    assert spend["since"] == (int(time.time()) // 86400 - 6) * 86400


def test_spend_of_a_skillbook_without_traffic_is_zero(proxy: RunningProxy) -> None:
    spend = proxy.admin("GET", "/skillbooks/quiet/spend").json()
    assert (spend["requests"], spend["priced"], spend["cost_usd"], spend["days"]) == (0, 0, 0, [])


@pytest.mark.parametrize("query", [{"days": "0"}, {"days": "x"}, {"window": "1"}])
def test_spend_refuses_a_bad_query(proxy: RunningProxy, query: dict[str, str]) -> None:
    answer = proxy.admin("GET", "/skillbooks/billing/spend", params=query)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_query"


def test_spend_by_day_splits_at_utc_midnight(tmp_path: Path) -> None:
    midnight = 1_795_564_800.0  # 2026-11-25 00:00 UTC
    opened = store.open_store(str(tmp_path / "s.db"))
    opened.migrate()
    try:
        rows = [
            row(midnight - 1, "gpt-4o-mini", 0.25),
            row(midnight, "gpt-4o-mini", 0.5),
            row(midnight + 60, None, None),
        ]
        opened.traces.insert_values(rows)
        spend = opened.traces.spend("b", since=midnight - 86400)
        assert [(d.day, d.requests, d.priced, d.cost_usd) for d in spend.days] == [
            ("2026-11-24", 1, 1, 0.25), ("2026-11-25", 2, 1, 0.5),
        ]  # fmt: skip
        assert (spend.requests, spend.priced, spend.cost_usd) == (3, 2, 0.75)
        assert opened.traces.spend("b", since=midnight).cost_usd == 0.5
    finally:
        opened.close()


def row(at: float, model: str | None, cost: float | None) -> tuple[Any, ...]:
    values = {
        "id": new_trace_id(), "created_at": at, "skillbook": "b", "method": "POST",
        "path": "/v1/chat/completions", "model": model, "stream": 0, "status": 200,
        "client_disconnected": 0, "input_tokens": 10, "output_tokens": 1, "cost_usd": cost,
    }  # fmt: skip
    return tuple(values.get(column) for column in PRICED_COLUMNS)


def test_the_sink_prices_a_built_row_from_its_model_and_usage() -> None:
    record = TraceRecord(
        id=new_trace_id(), created_at=time.time(), skillbook="b", method="POST",
        path="/v1/chat/completions", format="chat", model="gpt-4o-mini", status=200,
        response_chunks=[json.dumps({"usage": {"prompt_tokens": 10, "completion_tokens": 4}})
                         .encode()],
        response_content_type="application/json",
    )  # fmt: skip
    record.response_bytes = len(record.response_chunks[0])
    built = priced(row_values(record))
    assert len(built) == len(PRICED_COLUMNS)
    assert dict(zip(PRICED_COLUMNS, built, strict=True))["cost_usd"] == pytest.approx(
        10 * GPT_IN + 4 * GPT_OUT
    )
    assert priced(row_values(TraceRecord("t", 0.0, "b", "GET", "/v1/models")))[-1] is None


def test_the_previous_release_upgrades_and_its_traces_read_as_unpriced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database made before m006 (every earlier migration, a trace in it) gains the column;
    the old trace reads `cost_usd` None, and new rows store theirs."""
    path = tmp_path / "previous.db"
    before = migrations.MIGRATIONS[: migrations.MIGRATIONS.index(migrations.m006_trace_cost)]
    monkeypatch.setattr(migrations, "MIGRATIONS", before)
    previous = store.open_store(str(path))
    assert "m006_trace_cost" not in previous.migrate()
    old = tuple(
        {"id": "tr_old", "created_at": 1.0, "skillbook": "b", "method": "POST", "path": "/v1",
         "model": "gpt-4o-mini", "stream": 0, "client_disconnected": 0, "input_tokens": 10,
         "output_tokens": 1}.get(column)
        for column in TRACE_COLUMNS
    )  # fmt: skip
    previous.traces.insert_values([old])  # the previous release's row, before the column
    previous.close()
    monkeypatch.undo()

    upgraded = store.open_store(str(path))
    try:
        assert upgraded.migrate()[0] == "m006_trace_cost"  # and any later ones
        trace = upgraded.traces.get("tr_old")
        assert trace is not None and trace.cost_usd is None
        assert upgraded.traces.newest()[0].cost_usd is None
        upgraded.traces.insert_values([row(2.0, "gpt-4o-mini", 0.125)])
        assert upgraded.traces.spend("b", since=0).cost_usd == 0.125
    finally:
        upgraded.close()
    with closing(sqlite3.connect(path)) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(traces)")]
    assert "cost_usd" in columns  # added by m006, after every column the release had


def test_a_row_of_neither_length_is_refused(tmp_path: Path) -> None:
    opened = store.open_store(str(tmp_path / "s.db"))
    opened.migrate()
    try:
        with pytest.raises(sqlite3.ProgrammingError):
            opened.traces.insert_values([("tr_short", 1.0)])
        assert opened.traces.count() == 0
    finally:
        opened.close()
