"""The review page in a real headless Chromium against a live proxy: every action goes through
the page as a person would take it, and its effect is checked where it matters (the next
proxied request, the admin API).

Covers skillproxy/ui/__init__.py (serving the page under its Content-Security-Policy) and the
page itself, skillproxy/ui/static/: a page error or a CSP violation fails the test that caused
it. One test also saves a screenshot of each page (`SKILLPROXY_UI_SHOTS=docs/ui` to refresh
the ones in docs/ui/).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fakes import replies
from tests.harness import ADMIN_TOKEN, RunningProxy
from tests.ui_helpers import LESSON, chromium, conversation, learn, reflection, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

SHOTS = Path(
    os.environ.get("SKILLPROXY_UI_SHOTS") or Path(tempfile.gettempdir()) / "skillproxy-ui-shots"
)
"""Where the page screenshots go: `SKILLPROXY_UI_SHOTS=docs/ui` refreshes the ones in the docs;
by default a temporary folder, so a test run leaves the tree as it was."""
IGNORED_CONSOLE = ("Failed to load resource",)
"""Chrome logs every 4xx answer to fetch; the page handles those itself."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(5000)
    page = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(IGNORED_CONSOLE):
            problems.append(f"console: {message.text}")

    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", console)
    yield page
    context.close()
    assert problems == [], problems


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def skill(proxy: RunningProxy, skill_id: str) -> dict[str, Any]:
    found: dict[str, Any] = proxy.admin("GET", f"/skills/{skill_id}").json()
    return found


def system_text(proxy: RunningProxy, skillbook: str) -> str:
    proxy.openai(skillbook).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    )
    text: str = proxy.provider.last.json()["messages"][0]["content"]
    return text


def test_the_queue_shows_a_learned_proposal_and_approving_it_there_injects_it(
    proxy: RunningProxy, page: Page
) -> None:
    trace_id = conversation(proxy, "support")
    proxy.traces(2)
    learn(proxy, "support", reflection())

    sign_in(page, proxy, "/queue/support")
    card = page.locator(".skill-card")
    expect(card).to_have_count(1)
    expect(card.locator(".content")).to_have_text(LESSON)
    expect(card.locator(".badge.section")).to_have_text("returns")
    expect(card.locator(".evidence-count")).to_have_text("1")
    expect(card.locator(f".evidence a[href='#/trace/{trace_id}']")).to_be_visible()
    expect(card.locator(".diagnosis")).to_contain_text("Eligibility was not checked first.")
    expect(card.locator(".diagnosis")).to_contain_text("Check the return window first.")
    assert LESSON not in system_text(proxy, "support")

    card.locator("button[name=approve]").click()
    expect(page.locator(".empty")).to_contain_text("Nothing waiting for review in support")
    [active] = proxy.admin("GET", "/skillbooks/support/skills?status=active").json()["data"]
    assert active["content"] == LESSON
    assert LESSON in system_text(proxy, "support")


def test_an_edit_shows_in_the_history_diff_and_rolling_back_there_restores_it(
    proxy: RunningProxy, page: Page
) -> None:
    original = "When a customer is angry, apologise once and then offer a concrete fix."
    edited = "When a customer is upset, apologise once and then offer a refund or a fix."
    skill_id = proxy.add_skill("support", "tone", original, approve=False)

    sign_in(page, proxy, "/queue/support")
    expect(page.locator(".skill-card .content")).to_have_text(original)
    page.keyboard.press("e")  # the keyboard: the first card has the focus
    page.fill(".skill-card textarea[name=content]", edited)
    page.click(".skill-card button[name=save-approve]")
    expect(page.locator(".empty")).to_be_visible()
    assert (skill(proxy, skill_id)["content"], skill(proxy, skill_id)["status"]) == (
        edited,
        "active",
    )

    page.goto(f"{proxy.url}/ui/#/skill/{skill_id}")
    edit = page.locator(".revision[data-revision='2']")
    expect(edit.locator("del")).to_have_text(["angry,", "concrete"])
    expect(edit.locator("ins")).to_have_text(["upset,", "refund or a"])
    expect(page.locator(".revision[data-revision='3'] .change")).to_contain_text(
        "status: pending → active"
    )

    page.click(".revision[data-revision='1'] button[name=rollback]")
    expect(page.locator(".skill-text")).to_have_text(original)
    expect(page.locator(".revision[data-revision='4'] .badge.action")).to_have_text("rollback to 1")
    assert (skill(proxy, skill_id)["content"], skill(proxy, skill_id)["status"]) == (
        original,
        "pending",
    )


def test_a_wrong_token_is_refused_with_the_apis_message_and_the_right_one_kept_for_the_tab(
    proxy: RunningProxy, page: Page
) -> None:
    page.goto(f"{proxy.url}/ui/")
    page.fill("#token", "not-the-token")
    page.click("form.login button[type=submit]")
    expect(page.locator("form.login .error")).to_have_text("The admin token is not valid.")

    page.fill("#token", ADMIN_TOKEN)
    page.click("form.login button[type=submit]")
    expect(page.locator("h1")).to_have_text("Review queue")
    assert page.evaluate("Object.keys(sessionStorage)") == ["skillproxy.admin-token"]
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    page.reload()  # the tab keeps it
    expect(page.locator("h1")).to_have_text("Review queue")


def test_the_conversation_view_draws_tool_calls_their_results_and_untrusted_text_as_text(
    proxy: RunningProxy, page: Page
) -> None:
    skill_id = proxy.add_skill("ops", "orders", "When asked about an order, look it up first.")
    hostile = '<img src=x onerror="document.title=1"> where is order 41?'
    proxy.provider.enqueue(
        replies.tool_calls([{"name": "lookup_order", "arguments": '{"order": 42}', "id": "c2"}])
    )
    raw = proxy.openai("ops").chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        tools=[{"type": "function", "function": {"name": "lookup_order", "parameters": {}}}],
        messages=[
            {"role": "user", "content": hostile},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": '{"order": 41}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "order 41: shipped"},
            {"role": "user", "content": "And order 42?"},
        ],
    )
    trace_id = raw.headers["X-Trace-Id"]
    proxy.trace(trace_id)

    sign_in(page, proxy, f"/trace/{trace_id}")
    asked = page.locator(".request-turns")
    expect(asked.locator(".turn.role-user .text").first).to_have_text(hostile)
    expect(asked.locator(".tool-call .tool-name")).to_have_text("lookup_order")
    expect(asked.locator(".tool-call .tool-args")).to_contain_text('"order": 41')
    expect(asked.locator(".tool-result")).to_contain_text("for c1")
    expect(asked.locator(".tool-result .tool-output")).to_have_text("order 41: shipped")
    answer = page.locator(".response-turns")
    expect(answer.locator(".tool-call .tool-name")).to_have_text("lookup_order")
    expect(answer.locator(".tool-call .tool-args")).to_contain_text('"order": 42')
    expect(answer.locator(".finish")).to_have_text("finish: tool_calls")
    expect(page.locator(f".injected a[href='#/skill/{skill_id}']")).to_have_text(skill_id)
    expect(page.locator("dd[data-fact=status]")).to_have_text("200")
    assert page.locator(".conversation img").count() == 0
    assert page.title() == "skillproxy review"


def test_the_conversation_view_draws_anthropic_blocks_and_responses_items(
    proxy: RunningProxy, page: Page
) -> None:
    lookup = [{"name": "lookup_order", "arguments": '{"order": 7}'}]
    proxy.provider.enqueue(replies.tool_calls(lookup), replies.tool_calls(lookup))
    claude = proxy.anthropic("ops").messages.with_raw_response.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system="You look orders up.",
        messages=[
            {"role": "user", "content": "Where is order 6?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "tu1", "name": "lookup", "input": {"n": 6}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "lost"}],
            },
        ],
    )
    gpt = proxy.openai("ops").responses.with_raw_response.create(
        model="gpt-4o-mini",
        instructions="You look orders up.",
        input=[
            {"role": "user", "content": "Where is order 6?"},
            {"type": "function_call", "call_id": "fc1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "fc1", "output": "lost"},
        ],
    )

    for answered in (claude, gpt):
        proxy.trace(answered.headers["X-Trace-Id"])  # stored

    sign_in(page, proxy, f"/trace/{claude.headers['X-Trace-Id']}")
    expect(page.locator(".request-turns .turn.role-system")).to_contain_text("You look orders up.")
    expect(page.locator(".request-turns .tool-call .tool-name")).to_have_text("lookup")
    expect(page.locator(".request-turns .tool-result")).to_contain_text("for tu1")
    expect(page.locator(".request-turns .tool-output")).to_have_text("lost")
    expect(page.locator(".response-turns .tool-call .tool-name")).to_have_text("lookup_order")
    expect(page.locator(".response-turns .finish")).to_have_text("stop: tool_use")

    page.goto(f"{proxy.url}/ui/#/trace/{gpt.headers['X-Trace-Id']}")
    expect(page.locator(".turn.role-instructions")).to_contain_text("You look orders up.")
    expect(page.locator(".request-turns .tool-call .tool-name")).to_have_text("lookup")
    expect(page.locator(".request-turns .tool-result")).to_contain_text("for fc1")
    expect(page.locator(".response-turns .tool-call .tool-name")).to_have_text("lookup_order")
    expect(page.locator(".response-turns .tool-args")).to_contain_text('"order": 7')


def test_bulk_approve_changes_the_whole_selection_or_names_each_id_it_refused(
    proxy: RunningProxy, page: Page
) -> None:
    texts = [
        "When a customer asks for an invoice, send it as a PDF attachment.",
        "When a customer changes address, confirm the new one back to them.",
        "When a parcel is late, give the tracking link before anything else.",
    ]
    ids = [proxy.add_skill("support", f"s{n}", text, approve=False) for n, text in enumerate(texts)]

    sign_in(page, proxy, "/queue/support")
    expect(page.locator(".skill-card")).to_have_count(3)
    page.check("input[name=select-page]")
    expect(page.locator(".selected-count")).to_have_text("3 selected")
    assert proxy.admin("POST", f"/skills/{ids[2]}/archive").status_code == 200  # meanwhile
    page.click("button[name=bulk-approve]")
    refused = page.locator(".error .refused li")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text(ids[2])
    assert [skill(proxy, i)["status"] for i in ids] == ["pending", "pending", "archived"]

    expect(page.locator(".skill-card")).to_have_count(2)  # reloaded: the archived one left
    expect(page.locator(".selected-count")).to_have_text("2 selected")
    page.click("button[name=bulk-approve]")
    expect(page.locator(".empty")).to_be_visible()
    assert [skill(proxy, i)["status"] for i in ids] == ["active", "active", "archived"]


def test_the_keyboard_moves_through_the_queue_approves_and_rejects(
    proxy: RunningProxy, page: Page
) -> None:
    texts = [
        "When a customer asks for an invoice, send it as a PDF attachment.",
        "When a customer changes address, confirm the new one back to them.",
        "When a parcel is late, give the tracking link before anything else.",
    ]
    oldest, middle, newest = (
        proxy.add_skill("support", "s", text, approve=False) for text in texts
    )

    sign_in(page, proxy, "/queue/support")
    cards = page.locator(".skill-card")
    expect(cards).to_have_count(3)
    assert cards.evaluate_all("cards => cards.map(c => c.dataset.id)") == [newest, middle, oldest]
    expect(page.locator(".skill-card.focused")).to_have_attribute("data-id", newest)
    page.keyboard.press("j")
    expect(page.locator(".skill-card.focused")).to_have_attribute("data-id", middle)
    page.keyboard.press("a")
    expect(cards).to_have_count(2)
    expect(page.locator(".skill-card.focused")).to_have_attribute("data-id", oldest)
    page.keyboard.press("r")
    expect(cards).to_have_count(1)
    page.keyboard.press("k")
    expect(page.locator(".skill-card.focused")).to_have_attribute("data-id", newest)
    statuses = [skill(proxy, i)["status"] for i in (oldest, middle, newest)]
    assert statuses == ["rejected", "active", "pending"]


def test_a_rejection_with_a_note_keeps_the_note_in_the_history_and_shows_it(
    proxy: RunningProxy, page: Page
) -> None:
    doomed = proxy.add_skill(
        "support", "s", "When a customer is angry, offer a voucher at once.", approve=False
    )
    sign_in(page, proxy, "/queue/support")
    card = page.locator(f".skill-card[data-id='{doomed}']")
    card.locator("input[name=note]").fill("vouchers are not ours to give")
    card.locator("button[name=reject]").click()
    expect(page.locator(".skill-card")).to_have_count(0)
    last = skill(proxy, doomed)["history"][-1]
    assert (last["action"], last["note"]) == ("reject", "vouchers are not ours to give")
    page.goto(f"{proxy.url}/ui/#/skill/{doomed}")
    expect(page.locator(".history .note").first).to_contain_text("vouchers are not ours to give")


def test_a_long_queue_is_paged_fifty_at_a_time(proxy: RunningProxy, page: Page) -> None:
    ids = [
        proxy.add_skill(
            "support", "s", f"When case {n} comes up, handle it carefully.", approve=False
        )
        for n in range(51)
    ]

    sign_in(page, proxy, "/queue/support")
    expect(page.locator(".skill-card")).to_have_count(50)
    expect(page.locator(".pager")).to_contain_text("Page 1 of 2")
    page.click(".pager button[name=older]")
    expect(page.locator(".skill-card")).to_have_count(1)
    expect(page.locator(".skill-card")).to_have_attribute("data-id", ids[0])  # the oldest


def screenshot(page: Page, name: str) -> None:
    page.evaluate("document.getElementById('toast').replaceChildren()")
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def test_every_page_shows_its_data_and_is_saved_as_a_screenshot(
    proxy: RunningProxy, page: Page, tmp_path: Path
) -> None:
    greeting = proxy.add_skill(
        "support", "tone", "When a customer greets you, greet them back by their first name."
    )
    refunds = "When a customer asks for a refund, check the order date first."
    proxy.add_skill("support", "returns", refunds)
    trace_id = conversation(proxy, "support")
    conversation(proxy, "ops", 2)
    proxy.traces(4)
    removal = [{"skill_id": greeting, "reason": "greeting by name annoys people"}]
    learn(proxy, "support", reflection(LESSON, removals=removal))
    learn(proxy, "ops", replies.openai_error(500, "down"), retries=0, max_attempts=1)
    proxy.provider.enqueue(replies.openai_error(500, "upstream broke"))
    with pytest.raises(Exception, match="upstream broke"):
        proxy.openai("support").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello?"}]
        )
    proxy.traces(5)
    SHOTS.mkdir(parents=True, exist_ok=True)

    sign_in(page, proxy, "/queue/support")
    expect(page.locator(".skill-card .content").first).to_have_text(LESSON)
    expect(page.locator(".skill-card .similar").first).to_contain_text(refunds)
    expect(page.locator(".retire-card")).to_contain_text("greeting by name annoys people")
    screenshot(page, "queue")

    [pending] = proxy.admin("GET", "/skillbooks/support/skills?status=pending").json()["data"]
    page.goto(f"{proxy.url}/ui/#/skill/{pending['id']}")
    expect(page.locator(".outcomes .note")).to_contain_text("no data")
    page.click(f".evidence-list a[href='#/trace/{trace_id}']")
    expect(page.locator(".request-turns .turn")).to_have_count(4)
    screenshot(page, "conversation")
    page.go_back()
    expect(page.locator(".history .revision")).to_have_count(1)
    screenshot(page, "skill")

    page.goto(f"{proxy.url}/ui/#/book/support")
    prompt = proxy.admin("GET", "/skillbooks/support/prompt").json()
    expect(page.locator(".prompt-text")).to_have_text(prompt["text"])
    expect(page.locator(".tokens")).to_have_text(f"{prompt['tokens']} / 800 tokens")
    expect(page.locator(".prompt-ids li")).to_have_text(prompt["skill_ids"])
    page.fill("input[name=token_budget]", "600")
    page.click("button[name=save-settings]")
    expect(page.locator(".tokens")).to_contain_text("/ 600 tokens")
    assert proxy.admin("GET", "/skillbooks/support/settings").json()["token_budget"] == 600
    with page.expect_download() as downloading:
        page.click("button[name=export-json]")
    exported = tmp_path / "support.json"
    downloading.value.save_as(exported)
    assert json.loads(exported.read_text())["skillbook"] == "support"
    page.set_input_files("input[name=import-file]", exported)
    page.click("button[name=import]")
    expect(page.locator(".import-summary")).to_contain_text("0 created")
    screenshot(page, "skillbook")

    page.goto(f"{proxy.url}/ui/#/traffic")
    expect(page.locator(".chart-activity svg rect.bar.errors")).to_have_count(1)
    expect(page.locator(".chart-activity figcaption")).to_contain_text("5 requests, 1 errors")
    failed = page.locator("tr:has(button[name=retry])")
    expect(failed).to_have_count(1)
    screenshot(page, "traffic")
    failed.locator("a[href^='#/episode/']").click()  # its page offers the same retry
    expect(page.locator("dd[data-fact=status]")).to_have_text("failed")
    expect(page.locator(".page-head button[name=retry]")).to_be_visible()
    page.go_back()
    failed.locator("button[name=retry]").click()
    expect(page.locator("tr:has(button[name=retry])")).to_have_count(0)
    [episode] = proxy.admin("GET", "/episodes?skillbook=ops").json()["data"]
    assert episode["status"] == "open"


def trace_rows(page: Page) -> Any:
    return page.locator("tr:has(a[href^='#/trace/'])")


def test_the_traffic_charts_draw_the_servers_counts_and_the_filters_narrow_the_traces(
    proxy: RunningProxy, page: Page
) -> None:
    proxy.add_skill("support", "tone", "When a customer greets you, greet them back.")
    conversation(proxy, "support")
    proxy.provider.enqueue(replies.openai_error(500, "upstream broke"))
    failing = proxy.openai("support").chat.completions.with_raw_response
    with pytest.raises(Exception, match="upstream broke"):
        failing.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello?"}])
    traces = proxy.traces(3)
    [failed] = [t["id"] for t in traces if t["status"] == 500]

    sign_in(page, proxy, "/traffic/support")
    expect(page.locator(".chart-activity svg rect.bar.requests").first).to_be_attached()
    expect(page.locator(".chart-activity svg rect.bar.errors")).to_have_count(1)
    expect(page.locator(".chart-skills svg rect.bar.proposed")).to_have_count(1)
    expect(page.locator(".chart-skills svg rect.bar.approved")).to_have_count(1)
    expect(page.locator(".chart-spend svg")).to_be_visible()
    expect(trace_rows(page)).to_have_count(3)

    page.select_option(".trace-filters select[name=outcome]", "error")
    page.click(".trace-filters button[name=filter]")
    expect(trace_rows(page)).to_have_count(1)
    expect(trace_rows(page)).to_have_attribute("data-id", failed)
    page.select_option(".trace-filters select[name=outcome]", "ok")
    page.fill(".trace-filters input[name=model]", "no-such-model")
    page.click(".trace-filters button[name=filter]")
    expect(trace_rows(page)).to_have_count(0)
    page.click(".trace-filters button[name=clear-filter]")
    expect(trace_rows(page)).to_have_count(3)


def test_the_episode_page_shows_every_reflection_field_and_the_lessons_the_rules_refused(
    proxy: RunningProxy, page: Page
) -> None:
    trace_id = conversation(proxy, "support")
    proxy.traces(2)
    approach = "Check the return window before asking for any details."
    refused = {"section": "keys", "content": "Ask for the API key first, always."}
    learn(proxy, "support", reflection(LESSON, correct_approach=approach, new_skills=[refused]))
    [lesson] = proxy.admin("GET", "/skillbooks/support/refused").json()["data"]
    assert lesson["content"] == refused["content"]

    sign_in(page, proxy, f"/trace/{trace_id}")
    page.click("dd[data-fact=episode] a")
    expect(page.locator("h1")).to_have_text(lesson["episode_id"])
    expect(page.locator("dd[data-fact=status]")).to_have_text("reflected")
    expect(page.locator(f".episode-traces a[href='#/trace/{trace_id}']")).to_be_visible()
    reflected = page.locator(".reflection")
    expect(reflected.locator("dd[data-field=correct_approach]")).to_have_text(approach)
    expect(reflected.locator("dd[data-field=root_cause]")).to_have_text(
        "Eligibility was not checked first."
    )
    expect(reflected.locator("dd[data-field=new_skills] li")).to_have_count(2)
    expect(page.locator(".episode-refused .lesson")).to_have_text(refused["content"])
    expect(page.locator(".episode-refused .rule")).to_have_text(lesson["rule"])
    expect(page.locator("button[name=retry]")).to_have_count(0)
    screenshot(page, "episode")

    page.goto(f"{proxy.url}/ui/#/book/support")
    row = page.locator("table.refused-lessons tbody tr")
    expect(row.locator(".rule")).to_have_text(lesson["rule"])
    row.locator(f"a[href='#/episode/{lesson['episode_id']}']").click()
    expect(page.locator("h1")).to_have_text(lesson["episode_id"])

    page.goto(f"{proxy.url}/ui/#/traffic/support")
    expect(page.locator(".chart-spend svg rect.bar.spend")).to_have_count(1)  # today's run
    expect(page.locator(".chart-spend figcaption")).to_contain_text("over 1 LLM calls")


def test_a_skill_is_approved_as_a_canary_and_its_panel_shows_the_arms(
    proxy: RunningProxy, page: Page
) -> None:
    rule = "When a customer asks for a refund, check the order date before promising anything."
    skill_id = proxy.add_skill("support", "refunds", rule, approve=False)
    sign_in(page, proxy, f"/skill/{skill_id}")
    page.fill("input[name=canary-share]", "30")
    page.click("button[name=canary]")
    panel = page.locator(".canary-panel")
    expect(panel).to_contain_text("30% of sessions")
    expect(page.locator(".badge.canary")).to_have_text("canary 30%")
    expect(panel.locator("tbody tr")).to_have_count(2)
    expect(panel.locator(".verdict")).to_have_text("no data")
    expect(panel.locator(".canary-limits")).to_contain_text("without feedback there is no verdict")
    expect(panel).to_contain_text("Howard")
    assert skill(proxy, skill_id)["canary"]["status"] == "running"
    assert skill(proxy, skill_id)["canary"]["share"] == 30

    page.click("button[name=stop-canary]")
    expect(page.locator(".canary-panel")).to_have_attribute("data-status", "stopped")
    assert skill(proxy, skill_id)["canary"]["status"] == "stopped"
    expect(page.locator("button[name=canary]")).to_be_visible()  # it may run again


def test_the_queue_has_a_canary_button_beside_approve(proxy: RunningProxy, page: Page) -> None:
    rule = "When a customer asks for a refund, check the order date before promising anything."
    skill_id = proxy.add_skill("support", "refunds", rule, approve=False)
    sign_in(page, proxy, "/queue/support")
    card = page.locator(".skill-card")
    expect(
        card.locator("button[name=approve] + .canary-control button[name=canary]")
    ).to_be_visible()
    card.locator("input[name=canary-share]").fill("15")
    card.locator("button[name=canary]").click()
    expect(page.locator(".skill-card .badge.canary")).to_have_text("canary 15%")
    assert skill(proxy, skill_id)["canary"]["share"] == 15
    assert skill(proxy, skill_id)["status"] == "pending"  # still in the queue, for a person
