"""What the browser tests share: the browser itself (Debian's Chromium driven by Playwright,
failing with the install commands when either is missing), signing in through the page, and
traffic and learner runs that give the pages something real to show."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from learner.service import learn_once
from tests.fakes import replies
from tests.harness import ADMIN_TOKEN, RunningProxy

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

INSTALL = (
    "The browser tests need Chromium and Playwright for Python. Install them with:\n"
    "    apt-get install -y chromium          # Debian's package, as root (about 460 MB)\n"
    "    .venv/bin/pip install playwright     # the driver (about 170 MB)\n"
    "and never `playwright install`: the tests use the system Chromium, not a download."
)
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LESSON = (
    "When a customer asks to return an item, check the return window "
    "before asking for the shipping address."
)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium from the system, or a failure that says how to install it."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Playwright is not installed.\n{INSTALL}", pytrace=False)
    if executable is None:
        pytest.fail(f"No chromium executable on PATH.\n{INSTALL}", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, proxy: RunningProxy, route: str, token: str = ADMIN_TOKEN) -> None:
    """Open `#<route>`, answer the login form, and wait for the page to leave it."""
    page.goto(f"{proxy.url}/ui/#{route}")
    page.fill("#token", token)
    page.click("form.login button[type=submit]")
    page.wait_for_selector("form.login", state="detached")


def conversation(proxy: RunningProxy, skillbook: str, n: int = 1) -> str:
    """Two turns of a support chat that went wrong; the last turn's trace id."""
    client = proxy.openai(skillbook, key="sk-agent")
    messages: list[Any] = [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": f"I want to return my shoes, order {n}."},
    ]
    proxy.provider.enqueue(replies.text("Sure! What is your shipping address?"))
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "It was delivered 60 days ago, is that still ok?"},
    ]
    proxy.provider.enqueue(replies.text("Sorry, returns are only accepted within 30 days."))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    return raw.headers["X-Trace-Id"]


def reflection(content: str | None = LESSON, **extra: Any) -> replies.Reply:
    """The reflector model's answer: a diagnosis and, when given, one new lesson."""
    answer = {
        "what_happened": "The agent asked for a shipping address before checking eligibility.",
        "what_went_wrong": "The return window had passed; the customer gave details for nothing.",
        "root_cause": "Eligibility was not checked first.",
        "key_insight": "Check the return window first.",
        "skill_tags": [],
        "new_skill": {"section": "returns", "content": content, "reason": "saves a wasted turn"}
        if content
        else None,
        **extra,
    }
    return replies.text("```json\n" + json.dumps(answer) + "\n```")


def learn(proxy: RunningProxy, skillbook: str, *answers: replies.Reply, **learner: Any) -> None:
    """One learner run over `skillbook`, the reflector model answering `answers` in turn."""
    settings = {
        "model": "openai/reflector-model",
        "api_base": proxy.provider_url + "/v1",
        "settle_s": 0,
        "episode_idle_s": 0,
        "judge_pairs": False,
        "similarity": "lexical",
        "pattern_every": 0,
        **learner,
    }
    config = proxy.config.model_copy(
        update={"learner": proxy.config.learner.model_copy(update=settings)}
    )
    proxy.provider.enqueue(*answers)
    learn_once(config, skillbook=skillbook)
