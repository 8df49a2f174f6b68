"""The injection headers and the trace name exactly the skills whose text the provider got.

A body whose system container is the wrong JSON type cannot take the section without losing or
retyping what the client sent: it goes out as the client's bytes, and nothing claims a skill
was shown. Covers each format's `inject` and proxy/injection.py."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from core.formats import CHAT, MESSAGES, RESPONSES, WireFormat
from proxy.injection import with_section
from proxy.render import section
from tests.harness import RunningProxy

SKILLBOOK = "truth"
RULES = {
    "returns": "When a customer asks to return an item, check the return window first.",
    "tone": "When the customer is upset, acknowledge the problem before proposing a fix.",
}
JSON = {"Content-Type": "application/json"}
USER = '[{"role": "user", "content": "hi"}]'

CANNOT_CARRY: dict[str, list[bytes]] = {
    "/chat/completions": [
        b'{"model": "m", "messages": "hello"}',
        b'{"model": "m", "messages": {"role": "system", "content": "x"}}',
        b'{"model": "m", "messages": [{"role": "system", "content": 42}, '
        b'{"role": "user", "content": "hi"}]}',
        b'{"model": "m", "messages": [{"role": "system", "content": "Be brief."}, '
        b'{"role": "developer", "content": {"text": "x"}}, {"role": "user", "content": "hi"}]}',
    ],
    "/messages": [
        b'{"model": "c", "max_tokens": 5, "system": %s, "messages": %s}' % (value, USER.encode())
        for value in (b"42", b"0", b"false", b"{}", b'{"type": "text", "text": "x"}')
    ],
    "/responses": [
        b'{"model": "m", "instructions": %s, "input": "hi"}' % value
        for value in (b"42", b"0", b"false", b"{}", b"[]", b'["x"]')
    ],
}
CAN_CARRY: dict[str, list[dict[str, Any]]] = {
    "/chat/completions": [
        {"model": "m", "messages": [{"role": "system", "content": "Be brief."}, *json.loads(USER)]},
        {"model": "m", "messages": [{"role": "system", "content": None}, *json.loads(USER)]},
        {
            "model": "m",
            "messages": [{"role": "developer", "content": [{"type": "text", "text": "B"}]}],
        },
        {"model": "m", "messages": json.loads(USER)},
        {"model": "m"},
    ],
    "/messages": [
        {"model": "c", "max_tokens": 5, "system": system, "messages": json.loads(USER)}
        for system in ("Be brief.", "", None, [], [{"type": "text", "text": "Be brief."}])
    ]
    + [{"model": "c", "max_tokens": 5, "messages": json.loads(USER)}],
    "/responses": [
        {"model": "m", "instructions": instructions, "input": "hi"}
        for instructions in ("Be brief.", "", None)
    ]
    + [{"model": "m", "input": "hi"}],
}


def add_skills(proxy: RunningProxy) -> dict[str, str]:
    """Every rule, approved in the skillbook; skill id to its text."""
    return {proxy.add_skill(SKILLBOOK, name, rule): rule for name, rule in RULES.items()}


def system_of(tail: str, sent: dict[str, Any]) -> str:
    """The forwarded text the section belongs in, for the route `tail`."""
    if tail == "/chat/completions":
        content = sent["messages"][0]["content"]
        return content if isinstance(content, str) else "\n".join(p["text"] for p in content)
    if tail == "/messages":
        system = sent["system"]
        return system if isinstance(system, str) else "\n".join(b["text"] for b in system)
    return str(sent["instructions"])


# --------------------------------------------------------------------------- through the proxy


@pytest.mark.parametrize("tail", list(CANNOT_CARRY))
def test_a_body_that_cannot_carry_the_section_goes_out_untouched_and_says_so(
    proxy: RunningProxy, tail: str
) -> None:
    add_skills(proxy)
    for raw in CANNOT_CARRY[tail]:
        response = httpx.post(proxy.sb(SKILLBOOK) + tail, content=raw, headers=JSON)
        assert proxy.provider.last.body == raw
        assert response.headers["X-Skills-Injected"] == "0", raw
        assert response.headers["X-Skill-Tokens"] == "0", raw
        assert int(response.headers["X-Skillbook-Version"]) > 0  # the skills were there to add
        trace = proxy.trace(response.headers["X-Trace-Id"])
        assert trace["injected_skill_ids"] == [], raw
        assert trace["skill_tokens"] is None, raw
        assert trace["skillbook_version"] == int(response.headers["X-Skillbook-Version"])


@pytest.mark.parametrize("tail", list(CAN_CARRY))
def test_a_body_that_can_carry_the_section_gets_every_skill_it_reports(
    proxy: RunningProxy, tail: str
) -> None:
    rules = add_skills(proxy)
    for body in CAN_CARRY[tail]:
        response = httpx.post(proxy.sb(SKILLBOOK) + tail, json=body)
        trace = proxy.trace(response.headers["X-Trace-Id"])
        injected = trace["injected_skill_ids"]
        assert sorted(injected) == sorted(rules), body
        assert int(response.headers["X-Skills-Injected"]) == len(injected)
        assert int(response.headers["X-Skill-Tokens"]) == trace["skill_tokens"] > 0
        system = system_of(tail, proxy.provider.last.json())
        for skill_id in injected:
            assert rules[skill_id] in system, body


# --------------------------------------------------------------------------- the adapters

NO_ROOM: list[tuple[WireFormat, dict[str, Any]]] = [
    *((CHAT, {"messages": value}) for value in ("hello", 42, 0, False, {}, {"role": "system"})),
    *(
        (CHAT, {"messages": [{"role": role, "content": value}, {"role": "user", "content": "x"}]})
        for role in ("system", "developer")
        for value in (42, 0, False, True, {}, {"type": "text", "text": "x"})
    ),
    (
        CHAT,
        {"messages": [{"role": "system", "content": "ok"}, {"role": "developer", "content": 1}]},
    ),
    *((MESSAGES, {"system": value}) for value in (42, 0, False, True, {}, {"text": "x"})),
    *((RESPONSES, {"instructions": v}) for v in (42, 0, False, True, {}, [], ["x"], {"a": 1})),
]


@pytest.mark.parametrize(
    ("fmt", "body"), NO_ROOM, ids=[f"{f.name}:{json.dumps(b)}" for f, b in NO_ROOM]
)
def test_inject_is_none_for_a_container_of_the_wrong_type(
    fmt: WireFormat, body: dict[str, Any]
) -> None:
    before = copy.deepcopy(body)
    assert fmt.inject(body, "S") is None
    assert with_section(fmt, body, section("S", 1, ("s1",))) is None
    assert body == before  # the client's, unchanged


ROOM: list[tuple[WireFormat, dict[str, Any], dict[str, Any]]] = [
    (CHAT, {}, {"messages": [{"role": "system", "content": "S"}]}),
    (CHAT, {"messages": None}, {"messages": [{"role": "system", "content": "S"}]}),
    (CHAT, {"messages": []}, {"messages": [{"role": "system", "content": "S"}]}),
    (
        CHAT,
        {"messages": [{"role": "system"}]},
        {"messages": [{"role": "system", "content": "S"}]},
    ),
    (
        CHAT,
        {"messages": [{"role": "developer", "content": ""}]},
        {"messages": [{"role": "developer", "content": "S"}]},
    ),
    (
        CHAT,
        {"messages": [{"role": "system", "content": []}]},
        {"messages": [{"role": "system", "content": [{"type": "text", "text": "S"}]}]},
    ),
    (MESSAGES, {}, {"system": "S"}),
    (MESSAGES, {"system": None}, {"system": "S"}),
    (MESSAGES, {"system": ""}, {"system": "S"}),
    (MESSAGES, {"system": []}, {"system": [{"type": "text", "text": "S"}]}),
    (RESPONSES, {}, {"instructions": "S"}),
    (RESPONSES, {"instructions": None}, {"instructions": "S"}),
    (RESPONSES, {"instructions": ""}, {"instructions": "S"}),
]


@pytest.mark.parametrize(
    ("fmt", "body", "expected"), ROOM, ids=[f"{f.name}:{json.dumps(b)}" for f, b, _ in ROOM]
)
def test_inject_fills_an_empty_or_absent_container(
    fmt: WireFormat, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert fmt.inject(body, "S") == expected
