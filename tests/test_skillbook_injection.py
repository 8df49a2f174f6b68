"""Skills reach the system prompt: only approved ones, only their own skillbook, within budget.

Covers proxy/injection.py and proxy/skillbook_cache.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from core import jsonio
from core.formats import CHAT, MESSAGES, RESPONSES, WireFormat
from core.tokens import count_tokens
from proxy.injection import PLACEHOLDER, with_section
from proxy.render import HEADER, section
from tests.harness import ADMIN_TOKEN, RunningProxy

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def admin(proxy: RunningProxy, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, proxy.url + "/admin" + path, headers=AUTH, **kwargs)


def add_skill(
    proxy: RunningProxy, skillbook: str, section: str, content: str, approve: bool = True
) -> str:
    return proxy.add_skill(skillbook, section, content, approve=approve)


def chat(proxy: RunningProxy, skillbook: str, **body: Any) -> openai.types.chat.ChatCompletion:
    client = proxy.openai(skillbook)
    messages = body.pop(
        "messages",
        [
            {"role": "system", "content": "You are a support agent."},
            {"role": "user", "content": "I want to return my shoes."},
        ],
    )
    completion: ChatCompletion = client.chat.completions.create(
        model=body.pop("model", "gpt-4o-mini"), messages=messages, **body
    )
    return completion


RETURN_RULE = (
    "When a customer asks to return an item, verify the return window "
    "before asking for shipping details."
)


def test_approved_skill_is_appended_after_client_system_text_and_nothing_else_changes(
    proxy: RunningProxy,
) -> None:
    skill_id = add_skill(proxy, "support", "returns", RETURN_RULE)
    client = proxy.openai("support")
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "I want to return my shoes."},
    ]
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=messages,
        temperature=0.2,
        tools=[],
    )
    sent = proxy.provider.last.json()
    system = sent["messages"][0]["content"]
    assert system.startswith("You are a support agent.\n\n" + HEADER)
    assert system.endswith("## returns\n- " + RETURN_RULE)
    assert sent["messages"][1:] == messages[1:]
    assert {k: v for k, v in sent.items() if k != "messages"} == {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "tools": [],
    }
    headers = raw.headers
    assert headers["X-Skillbook"] == "support"
    assert headers["X-Skills-Injected"] == "1"
    section = system[len("You are a support agent.\n\n") :]
    assert int(headers["X-Skill-Tokens"]) == count_tokens(section, "o200k_base")
    trace = proxy.trace(headers["X-Trace-Id"])
    assert trace["injected_skill_ids"] == [skill_id]
    assert trace["skillbook_version"] == int(headers["X-Skillbook-Version"]) > 0
    assert trace["request_json"]["messages"] == messages  # the client's body, as sent


def test_a_system_message_is_added_when_the_client_has_none(proxy: RunningProxy) -> None:
    add_skill(proxy, "support", "returns", RETURN_RULE)
    chat(proxy, "support", messages=[{"role": "user", "content": "hi"}])
    sent = proxy.provider.last.json()["messages"]
    assert sent[0]["role"] == "system" and RETURN_RULE in sent[0]["content"]
    assert sent[1] == {"role": "user", "content": "hi"}


def test_the_section_is_byte_identical_across_requests(proxy: RunningProxy) -> None:
    add_skill(proxy, "support", "returns", RETURN_RULE)
    add_skill(
        proxy,
        "support",
        "tone",
        "When the customer is upset, acknowledge the problem before proposing a fix.",
    )
    chat(proxy, "support")
    first = proxy.provider.last.body
    chat(proxy, "support")
    assert proxy.provider.last.body == first


def test_pending_rejected_and_archived_skills_are_never_injected(proxy: RunningProxy) -> None:
    add_skill(
        proxy,
        "support",
        "returns",
        "Pending rule: always ask for the order number first.",
        approve=False,
    )
    rejected = add_skill(
        proxy, "support", "returns", "Rejected rule: offer a refund immediately.", approve=False
    )
    admin(proxy, "POST", f"/skills/{rejected}/reject")
    archived = add_skill(proxy, "support", "returns", "Archived rule: mention the loyalty program.")
    assert admin(proxy, "POST", f"/skills/{archived}/archive").json()["status"] == "archived"
    raw = proxy.openai("support")
    response = raw.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "system", "content": "S"}]
    )
    assert proxy.provider.last.json()["messages"] == [{"role": "system", "content": "S"}]
    assert response.headers["X-Skills-Injected"] == "0"


def test_skills_never_cross_skillbooks(proxy: RunningProxy) -> None:
    add_skill(proxy, "book-a", "returns", RETURN_RULE)
    add_skill(
        proxy,
        "book-b",
        "billing",
        "When an invoice looks wrong, compare it with the order before escalating.",
    )
    chat(proxy, "book-b")
    system = proxy.provider.last.json()["messages"][0]["content"]
    assert "invoice" in system and RETURN_RULE not in system
    chat(proxy, "book-a")
    system = proxy.provider.last.json()["messages"][0]["content"]
    assert RETURN_RULE in system and "invoice" not in system
    chat(proxy, "book-c")
    assert proxy.provider.last.json()["messages"][0]["content"] == "You are a support agent."


def test_opt_out_header_forwards_the_body_untouched(proxy: RunningProxy) -> None:
    add_skill(proxy, "support", "returns", RETURN_RULE)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()
    response = httpx.post(
        proxy.sb("support") + "/chat/completions",
        content=body,
        headers={"X-Skillproxy-Inject": "off", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert proxy.provider.last.body == body
    assert proxy.trace(response.headers["X-Trace-Id"])["injected_skill_ids"] == []


def test_budget_is_respected_exactly_and_most_useful_skills_win(proxy: RunningProxy) -> None:
    ids = [
        add_skill(
            proxy,
            "support",
            "general",
            f"When situation number {i} arises, follow procedure {i} step by step carefully.",
        )
        for i in range(30)
    ]
    db = proxy.db()
    for _ in range(40):  # one skill earned forty helpful votes; one got a single lucky vote
        db.execute("UPDATE skills SET helpful = helpful + 1 WHERE id = ?", [ids[25]])
    db.execute("UPDATE skills SET helpful = 1 WHERE id = ?", [ids[26]])
    db.execute("UPDATE skills SET harmful = 5 WHERE id = ?", [ids[0]])
    db.execute("UPDATE skillbooks SET version = version + 1 WHERE name = 'support'")
    db.conn.close()
    budget = 120
    assert (
        admin(
            proxy, "PATCH", "/skillbooks/support/settings", json={"token_budget": budget}
        ).status_code
        == 200
    )
    raw = proxy.openai("support")
    response = raw.chat.completions.with_raw_response.create(
        model="gpt-4", messages=[{"role": "user", "content": "x"}]
    )
    section = proxy.provider.last.json()["messages"][0]["content"]
    tokens = count_tokens(section, "cl100k_base")
    assert tokens <= budget
    assert tokens == int(response.headers["X-Skill-Tokens"])
    injected = proxy.trace(response.headers["X-Trace-Id"])["injected_skill_ids"]
    assert 1 < len(injected) < 30
    assert injected[0] == ids[25] and injected[1] == ids[26]  # forty votes beat one
    assert ids[0] not in injected  # proven harmful: ranked last, left out


def test_relevance_ranking_prefers_skills_matching_the_user_message(proxy: RunningProxy) -> None:
    add_skill(
        proxy,
        "support",
        "billing",
        "When an invoice total looks wrong, compare it with the order lines first.",
    )
    add_skill(proxy, "support", "returns", RETURN_RULE)
    budget_for_one = 45
    admin(
        proxy,
        "PATCH",
        "/skillbooks/support/settings",
        json={"token_budget": budget_for_one, "ranking": "relevance"},
    )
    chat(proxy, "support", messages=[{"role": "user", "content": "my invoice total is wrong"}])
    assert "invoice" in proxy.provider.last.json()["messages"][0]["content"]
    chat(proxy, "support", messages=[{"role": "user", "content": "can I return this item?"}])
    system = proxy.provider.last.json()["messages"][0]["content"]
    assert "return window" in system and "invoice" not in system


def test_a_change_reaches_another_proxy_sharing_the_database_within_a_second(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    first = make_proxy()
    second = make_proxy()  # same tmp_path: the same database file
    assert first.config.store.url == second.config.store.url
    add_skill(first, "support", "returns", RETURN_RULE)
    started = time.monotonic()
    while True:
        chat(second, "support")
        if RETURN_RULE in second.provider.last.json()["messages"][0]["content"]:
            break
        assert time.monotonic() - started < 1.0, "the second proxy did not see the change in 1 s"
        time.sleep(0.05)


def test_unusual_numbers_survive_injection(proxy: RunningProxy) -> None:
    """NaN and integers past 64 bits were accepted before the fast JSON path; still are."""
    add_skill(proxy, "support", "returns", RETURN_RULE)
    body = (
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
        b'"seed": 123456789012345678901234567890, "logit_bias": {"1": NaN}}'
    )
    response = httpx.post(
        proxy.sb("support") + "/chat/completions",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    sent = proxy.provider.last.body
    assert b"123456789012345678901234567890" in sent and b"NaN" in sent
    assert RETURN_RULE.encode() in sent


SECTION_TEXT = 'Keep "quotes", back\\slashes, a\ttab,\nlines, \x01 control, café, 日本, emoji 🚀.'
CLIENT_TEXT = 'You are "careful".\nNon-ASCII: ü, 😀, and \\ escapes.'


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        (CHAT, {"model": "m", "messages": [{"role": "system", "content": CLIENT_TEXT}]}),
        (CHAT, {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}),
        (CHAT, {"messages": [{"role": "system", "content": [{"type": "text", "text": "a"}]}]}),
        (MESSAGES, {"model": "m", "system": CLIENT_TEXT, "messages": []}),
        (MESSAGES, {"model": "m", "system": [{"type": "text", "text": CLIENT_TEXT}]}),
        (MESSAGES, {"model": "m", "messages": [], "temperature": 0.5}),
        (RESPONSES, {"model": "m", "instructions": CLIENT_TEXT, "input": "hi"}),
        (RESPONSES, {"model": "m", "input": [{"role": "user", "content": "hi"}]}),
    ],
)
def test_the_spliced_section_is_exactly_the_section_serialised_in_place(
    fmt: WireFormat, body: dict[str, Any]
) -> None:
    prepared = section(SECTION_TEXT, 10, ("s1",))
    for raw in (
        jsonio.dumps(body),
        json.dumps(body, ensure_ascii=True).encode(),  # escaped non-ASCII from the client
        jsonio.dumps(body)[:-1] + b',"x":NaN,"big":123456789012345678901234567890}',
    ):
        payload, stdlib = jsonio.parse(raw)
        injected = fmt.inject(payload, SECTION_TEXT)
        assert injected is not None  # bodies that cannot carry one: tests/test_injection_truth.py
        expected = jsonio.dumps(injected, stdlib=stdlib)
        assert with_section(fmt, payload, prepared, stdlib=stdlib) == expected
        assert PLACEHOLDER.encode() not in expected
