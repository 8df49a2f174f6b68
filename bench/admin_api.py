"""Talking to a running skillproxy the way an operator would: seed skills, check, time reads.

The skillbook is seeded through the admin API (propose, then approve), so the benchmark pays the
same path as production and the proxy's cache sees each change at once.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from typing import Any

from loadgen import chat_body

TOKEN = "bench"
SKILLBOOK = "bench"
SECTIONS = ("orders", "refunds", "shipping", "tone", "tools")
TRIGGERS = (
    "the order id matches no record",
    "the customer asks for a refund after thirty days",
    "a parcel shows delivered but the customer has nothing",
    "the customer writes in capitals or sounds upset",
    "a tool call returns an empty list",
    "the customer gives two different order numbers",
    "the delivery address is outside the shipping zones",
    "a payment was taken twice",
    "the customer asks about a book that is not yet published",
    "the lookup tool times out",
)
ACTIONS = (
    "ask for the email on the order instead of asking to re-enter the id",
    "quote the policy line and offer store credit before escalating",
    "open a carrier trace and promise an answer within two working days",
    "acknowledge the frustration in one sentence, then give the next concrete step",
    "retry once with a wider date range before telling the customer nothing was found",
)


def skill_text(i: int) -> tuple[str, str]:
    """A realistic skill (one trigger, one action, 15-50 words), distinct for each `i`."""
    trigger, action = TRIGGERS[i % len(TRIGGERS)], ACTIONS[(i // len(TRIGGERS)) % len(ACTIONS)]
    return SECTIONS[i % len(SECTIONS)], f"When {trigger} (case {i + 1}), {action}."


class Admin:
    """One keep-alive connection to a proxy's admin API."""

    def __init__(self, port: int, token: str = TOKEN) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, "/admin" + path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        payload = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} /admin{path}: HTTP {resp.status}: {payload[:300]!r}")
        return json.loads(payload)

    def get_ms(self, path: str) -> float:
        started = time.perf_counter()
        self.call("GET", path)
        return (time.perf_counter() - started) * 1000

    def p50_ms(self, path: str, times: int, warmup: int = 3) -> float:
        for _ in range(warmup):
            self.get_ms(path)
        return statistics.median(self.get_ms(path) for _ in range(times))

    def close(self) -> None:
        self.conn.close()


def seed_skills(port: int, count: int, skillbook: str = SKILLBOOK) -> list[str]:
    """Propose and approve `count` skills; return their ids."""
    admin = Admin(port)
    ids: list[str] = []
    try:
        for i in range(count):
            section, content = skill_text(i)
            body = {"section": section, "content": content}
            created = admin.call("POST", f"/skillbooks/{skillbook}/skills", body)
            admin.call("POST", f"/skills/{created['id']}/approve")
            ids.append(str(created["id"]))
    finally:
        admin.close()
    return ids


def injected(port: int, skillbook: str = SKILLBOOK) -> tuple[int, int]:
    """Send one chat request through the skillbook path; return (skills, tokens) injected."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
        conn.request("POST", f"/sb/{skillbook}/v1/chat/completions", chat_body(False), headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"chat request through skillproxy: HTTP {resp.status}")
        return int(resp.getheader("X-Skills-Injected", "0")), int(
            resp.getheader("X-Skill-Tokens", "0")
        )
    finally:
        conn.close()
