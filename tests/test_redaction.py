"""core/redaction.py: personal data found and replaced, ordinary numbers left alone; secrets in
query strings and header values masked. And the learner: with `privacy.learner` on, nothing
personal reaches its model (learner/runner.py), through either reflector."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from core.config import PrivacyConfig
from core.redaction import (
    Redactor,
    luhn_valid,
    param_names,
    redact_header,
    redact_json,
    redact_query,
    redact_urls,
    redactor_for,
    valid_iban,
)
from learner.sandbox import sandbox_support
from learner.service import learn_once
from tests.fakes import replies
from tests.harness import RunningProxy
from tests.test_learner_e2e import LESSONS, learner_config, reflection

REDACT = redactor_for(PrivacyConfig())


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        (
            "Hi, I'm Jane (jane.doe+orders@example.co.uk); cc bob_smith@mail.example.com.",
            "Hi, I'm Jane ([EMAIL]); cc [EMAIL].",
            {"email": 2},
        ),
        ("Call me on +44 20 7946 0958 after 5pm.", "Call me on [PHONE] after 5pm.", {"phone": 1}),
        (
            "US office: (415) 555-2671, fax 415.555.2672",
            "US office: [PHONE], fax [PHONE]",
            {"phone": 2},
        ),
        ("Ring +1 415 555 2671 or +14155552671!", "Ring [PHONE] or [PHONE]!", {"phone": 2}),
        (
            "London 020 7946 0958, Paris 06 12 34 56 78",
            "London [PHONE], Paris [PHONE]",
            {"phone": 2},
        ),
        ("Card 4111 1111 1111 1111 exp 12/27", "Card [CARD] exp 12/27", {"card": 1}),
        ("Card 4111-1111-1111-1111.", "Card [CARD].", {"card": 1}),
        ("Amex 378282246310005 ok", "Amex [CARD] ok", {"card": 1}),
        ("Pay to GB82 WEST 1234 5698 7654 32, ref 77", "Pay to [IBAN], ref 77", {"iban": 1}),
        ("DE89370400440532013000 / de89 3704 0044 0532 0130 00", "[IBAN] / [IBAN]", {"iban": 2}),
    ],
)
def test_personal_data_is_replaced_and_counted(
    text: str, expected: str, counts: dict[str, int]
) -> None:
    assert REDACT(text) == (expected, counts)


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111 1111 1111 1112 failed the check",  # not Luhn-valid
        "IBAN GB82 WEST 1234 5698 7654 33 is a typo",  # mod-97 fails
        "Your order 123456789 ships on 2024-05-17.",
        "Order #A-20240517-0042, invoice 2024/0042, tracking 1Z999AA10123456784",
        "Meeting 17/05/2024 at 10:30, or 05.17.2024, or 05-17-2024 10:30:00",
        "Total $1,234.56 for 3 items; id 1700000000123; ts 1715940000",
        "Version 1.2.3, build 20240517.1, port 8080, room 101, ZIP 94103",
        "Order 0123456789 and account 9876543210",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "3+4=7 and 10-2=8",
    ],
)
def test_ordinary_numbers_and_dates_are_left_alone(text: str) -> None:
    assert REDACT(text) == (text, {})


def test_adjacent_numbers_are_each_found() -> None:
    text = (
        "GB82WEST12345698765432 and DE89 3704 0044 0532 0130 00, "
        "4111111111111111 5500 0000 0000 0004"
    )
    assert REDACT(text) == ("[IBAN] and [IBAN], [CARD] [CARD]", {"iban": 2, "card": 2})


def test_checks() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert valid_iban("GB82 WEST 1234 5698 7654 32") and not valid_iban("GB82WEST1234569876543")
    assert not valid_iban("ZZ82WEST12345698765432")  # no such country


def test_only_the_kinds_asked_for_and_the_operators_patterns() -> None:
    redactor = redactor_for(
        PrivacyConfig(detect=("email",), patterns=(r"\bCUST-\d{6}\b", r"(?i)secret word"))
    )
    text = "cust CUST-004211 (a@b.io, +44 20 7946 0958) said the Secret Word"
    assert redactor(text) == (
        "cust [REDACTED] ([EMAIL], +44 20 7946 0958) said the [REDACTED]",
        {"email": 1, "pattern": 2},
    )
    assert redactor_for(PrivacyConfig(detect=(), patterns=())).active is False
    assert redactor_for(PrivacyConfig()) is REDACT  # compiled once per setting


def test_json_strings_are_redacted_and_keys_kept() -> None:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "mail x@y.com"}],
        "x@y.com": {"phone": "+44 20 7946 0958", "n": 4111111111111111, "ok": True},
        "tool_calls": [{"arguments": json.dumps({"email": "x@y.com"})}],
    }
    counts: dict[str, int] = {}
    out = redact_json(body, REDACT, counts)
    assert out == {
        "messages": [{"role": "user", "content": "mail [EMAIL]"}],
        "x@y.com": {"phone": "[PHONE]", "n": 4111111111111111, "ok": True},
        "tool_calls": [{"arguments": json.dumps({"email": "[EMAIL]"})}],
    }
    assert counts == {"email": 2, "phone": 1}
    assert body["messages"][0]["content"] == "mail x@y.com"  # the input is not changed
    deep: Any = "a@b.io"
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    out = redact_json(deep, REDACT)
    for _ in range(5000):
        out = out[0]
    assert out == "[EMAIL]"


def test_a_long_text_without_matches_is_scanned_quickly() -> None:
    import time

    text = ("A" * 5000 + "0123-" * 200 + " ") * 200  # ~1 MB of near misses
    started = time.perf_counter()
    assert Redactor()(text)[0] == text
    assert time.perf_counter() - started < 2.0


NAMES = param_names(["key", "api_key", "Token", "sig"])


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/v1/models?key=AIza123", "/v1/models?key=***"),
        ("/v1/x?alt=sse&KEY=a&b=c&api_key=z", "/v1/x?alt=sse&KEY=***&b=c&api_key=***"),
        ("/v1/x?%6Bey=a&api%5Fkey=b&%256Bey=c", "/v1/x?%6Bey=***&api%5Fkey=***&%256Bey=***"),
        ("/v1/x?sig=abc%3D%3D&token=", "/v1/x?sig=***&token="),  # empty: nothing to hide
        ("/v1/x?keys=a&monkey=b&key", "/v1/x?keys=a&monkey=b&key"),
        ("/v1/x?a=1;token=t", "/v1/x?a=1;token=***"),
        ("/v1/key=x/y", "/v1/key=x/y"),  # the path is not a query
    ],
)
def test_query_parameters_named_are_masked(target: str, expected: str) -> None:
    assert redact_query(target, NAMES) == expected


def test_header_values_and_urls_in_text() -> None:
    assert redact_header("s1; token=abc, sig=x", NAMES) == "s1; token=***, sig=***"
    assert redact_header("https://h/p?key=1&a=2", NAMES) == "https://h/p?key=***&a=2"
    assert redact_header("session-42", NAMES) == "session-42"
    assert (
        redact_urls("GET https://h/v1?key=s3cr3t&x=1 failed: code=500", NAMES)
        == "GET https://h/v1?key=***&x=1 failed: code=500"
    )


# -- the learner -------------------------------------------------------------------------------


PRIVATE = "I'm jane.doe@example.com, call +44 20 7946 0958 about order 123456789."


def personal_conversation(proxy: RunningProxy) -> None:
    client = proxy.openai("support", key="sk-agent")
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": PRIVATE},
    ]
    proxy.provider.enqueue(
        replies.tool_calls(
            [{"name": "lookup", "arguments": json.dumps({"email": "jane.doe@example.com"})}]
        )
    )
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    trace_id = raw.headers["X-Trace-Id"]
    proxy.traces(1)
    feedback = {"trace_id": trace_id, "score": 0.0, "comment": "wrong, mail jane@corp.example"}
    assert httpx.post(proxy.v1 + "/feedback", json=feedback).status_code in (200, 201, 202)


@pytest.mark.parametrize("private", [True, False])
def test_the_reflector_sees_no_personal_data(proxy: RunningProxy, private: bool) -> None:
    personal_conversation(proxy)
    proxy.provider.enqueue(reflection(LESSONS[0]))
    config = learner_config(proxy)
    config = config.model_copy(
        update={"privacy": config.privacy.model_copy(update={"learner": private})}
    )
    [summary] = learn_once(config)
    assert summary.reflections == 1
    prompt = json.dumps(proxy.provider.last.json())
    if private:
        assert "@" not in prompt and "7946" not in prompt
        assert "[EMAIL]" in prompt and "[PHONE]" in prompt and "order 123456789" in prompt
        assert summary.redactions == 4  # two addresses and a phone in messages, one in feedback
    else:
        assert "jane.doe@example.com" in prompt and "jane@corp.example" in prompt
        assert summary.redactions == 0


@pytest.mark.skipif(sandbox_support() is not None, reason="no sandbox here")
def test_the_recursive_reflectors_sandbox_holds_no_personal_data(proxy: RunningProxy) -> None:
    personal_conversation(proxy)
    final = {"what_happened": "Looked up a customer.", "key_insight": "Look up first."}
    proxy.provider.enqueue(
        replies.text(
            json.dumps(
                {
                    "action": "run_code",
                    "code": "import json\nprint(json.dumps([episode, feedback]))",
                }
            )
        ),
        replies.text(json.dumps({"action": "final", "reflection": final})),
    )
    config = learner_config(proxy, recursive=True, recursive_threshold_tokens=1)
    [summary] = learn_once(config)
    assert summary.reflections == 1
    observed = proxy.provider.last.json()["messages"][-1]["content"]
    assert observed.startswith("Output:") and "[EMAIL]" in observed
    assert "@" not in json.dumps(proxy.provider.received[-2].json())
    assert "@" not in observed
