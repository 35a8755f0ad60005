"""The console in a real browser (Chromium through Playwright) against real API and worker processes."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.console_env import (
    ADMIN_KEY,
    XSS,
    browser,
    console,
    ledger_path,
    logged_in,
    login,
    needs_chromium,
    screenshot,
    shots,
)
from tests.harness import GatewayProcesses

__all__ = ("browser", "console", "ledger_path", "logged_in", "shots")

pytestmark = [pytest.mark.e2e, needs_chromium]


def _origin(console: GatewayProcesses) -> str:
    return console.base_url.removesuffix("/v1")


def _create_key(page: Page, name: str, models: str = "") -> str:
    page.goto("/console/keys")
    page.fill("form[action='/console/keys'] input[name=name]", name)
    page.fill("form[action='/console/keys'] input[name=models]", models)
    page.click("form[action='/console/keys'] button[type=submit]")
    secret = page.locator("#new-key").inner_text()
    assert secret.startswith("sk-aiapi-")
    return secret


def test_login_and_logout(browser: Browser, console: GatewayProcesses, shots: Path) -> None:
    origin = _origin(console)
    context = browser.new_context(base_url=origin)
    page = context.new_page()
    page.goto("/console/keys")
    expect(page).to_have_url(re.compile(r"/console/login\?next=/console/keys$"))
    screenshot(page, shots, "login")
    login(page, origin, key="not-the-admin-key")
    expect(page.locator("[role=alert]")).to_contain_text("not the admin key")
    login(page, origin, key=ADMIN_KEY)
    # The first attempt's next= was lost with the wrong key; a fresh form goes to the overview.
    expect(page).to_have_url(re.compile(r"/console$"))
    cookie = next(c for c in context.cookies() if c["name"] == "aiapi_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    page.click("text=Log out")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.goto("/console/keys")
    expect(page).to_have_url(re.compile(r"/console/login"))
    context.close()


def test_login_goes_back_to_the_page_asked_for(browser: Browser, console: GatewayProcesses) -> None:
    context = browser.new_context(base_url=_origin(console))
    page = context.new_page()
    page.goto("/console/channels")
    page.fill("input[name=key]", ADMIN_KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console/channels$"))
    context.close()


def test_a_key_made_in_the_console_works_with_the_sdk_until_revoked(logged_in: Page, console: GatewayProcesses) -> None:
    secret = _create_key(logged_in, "sdk-user")
    logged_in.reload()
    expect(logged_in.locator("#new-key")).to_have_count(0)  # shown once only
    with openai.OpenAI(base_url=console.base_url, api_key=secret, max_retries=0, timeout=20) as sdk:
        reply = sdk.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        logged_in.goto("/console/keys")
        row = logged_in.locator("tr.key-row[data-key='sdk-user']")
        expect(row).to_contain_text("enabled")
        row.locator("button", has_text="Revoke").click()
        expect(logged_in.locator("tr.key-row[data-key='sdk-user']")).to_have_count(0)
        with pytest.raises(openai.AuthenticationError):
            sdk.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hi"}])


def test_markup_in_names_and_the_log_is_shown_as_text(logged_in: Page, shots: Path) -> None:
    _create_key(logged_in, "xss-models", models=XSS)
    expect(logged_in.locator("tr.key-row[data-key='xss-models']")).to_contain_text("<script>")
    logged_in.goto("/console/requests/seed0000")
    expect(logged_in.locator("main")).to_contain_text("<script>document.title")
    logged_in.goto("/console/requests/seed0003")
    expect(logged_in.locator(".error")).to_contain_text("<img src=x")
    screenshot(logged_in, shots, "request")
    assert logged_in.title() != "pwned"
    assert logged_in.locator("main script, main img").count() == 0


def test_the_request_log_filters_and_the_overview_shows_spend(logged_in: Page, shots: Path) -> None:
    logged_in.goto("/console/requests?key=seed-key")
    expect(logged_in.locator("#request-log tbody tr")).to_have_count(6)
    screenshot(logged_in, shots, "requests")
    logged_in.select_option("select[name=outcome]", "failed")
    logged_in.click("form.filters button")
    expect(logged_in.locator("#request-log tbody tr")).to_have_count(1)
    expect(logged_in.locator("#request-log")).to_contain_text("upstream_error")
    logged_in.goto("/console/overview")
    # Six seeded requests of $0.004, all in the last hour; the tests' own traffic so far was on unpriced models.
    expect(logged_in.locator("#t-spend")).to_contain_text("$0.0240", timeout=10_000)
    expect(logged_in.locator("table[data-window='day'][data-group='channel']")).to_contain_text("mock-a")
    expect(logged_in.locator("#c-requests canvas")).to_have_count(1)
    screenshot(logged_in, shots, "overview")


def test_disabling_a_channel_moves_its_traffic(logged_in: Page, console: GatewayProcesses, shots: Path) -> None:
    secret = _create_key(logged_in, "traffic")
    with openai.OpenAI(base_url=console.base_url, api_key=secret, max_retries=0, timeout=20) as sdk:

        def reply() -> str | None:
            answer = sdk.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hi"}])
            return answer.choices[0].message.content

        assert reply() == "Reply from A"
        logged_in.goto("/console/channels")
        # The seeded log's three requests on mock-b (the tests' own traffic went to mock-a so far).
        health = logged_in.locator("[data-channel='mock-b'] .health")
        expect(health).to_contain_text("3 requests, 0 failed, first token p50 22 ms / p95 24 ms")
        logged_in.locator("[data-channel='mock-a'] button", has_text="Disable").click()
        expect(logged_in.locator("[data-channel='mock-a']")).to_contain_text("disabled")
        screenshot(logged_in, shots, "channels")
        for _ in range(50):
            if reply() == "Reply from B":
                break
            logged_in.wait_for_timeout(200)
        assert reply() == "Reply from B"
        logged_in.locator("[data-channel='mock-a'] button", has_text="Enable").click()
        expect(logged_in.locator("[data-channel='mock-a']")).to_contain_text("enabled")


def test_adding_a_channel_shows_errors_inline(logged_in: Page) -> None:
    logged_in.goto("/console/channels")
    form = logged_in.locator("#channel-form form")
    form.locator("input[name=name]").fill("upstream-x")
    form.locator("input[name=base_url]").fill("ftp://nowhere")
    form.locator("input[name=models]").fill("x-model")
    form.locator("input[name=api_key]").fill("sk-secret-upstream-key-123456")
    form.locator("button[type=submit]").click()
    expect(logged_in.locator("#channel-error")).to_contain_text("base_url must start with http:// or https://")
    expect(form.locator("input[name=name]")).to_have_value("upstream-x")
    form.locator("input[name=base_url]").fill("http://127.0.0.1:9/v1")
    form.locator("input[name=api_key]").fill("sk-secret-upstream-key-123456")
    form.locator("button[type=submit]").click()
    card = logged_in.locator("[data-channel='upstream-x']")
    expect(card).to_contain_text("x-model")
    assert "sk-secret-upstream-key-123456" not in logged_in.content()
    card.locator("button", has_text="Disable").click()
    expect(logged_in.locator("[data-channel='upstream-x']")).to_contain_text("disabled")


def test_the_playground_streams_a_reply(logged_in: Page, shots: Path) -> None:
    secret = _create_key(logged_in, "playground")
    logged_in.goto("/console/playground")
    logged_in.select_option("#pg-model", "mock-slow")
    logged_in.fill("#pg-key", secret)
    logged_in.fill("#pg-message", "Count for me")
    logged_in.click("#pg-send")
    # Twelve words at 15/s: the reply is visibly partial before it is whole.
    expect(logged_in.locator("#pg-status")).to_have_text("Streaming…")
    expect(logged_in.locator("#pg-reply")).to_contain_text("one")
    partial = logged_in.locator("#pg-reply").inner_text()
    assert "twelve" not in partial
    expect(logged_in.locator("#pg-status")).to_contain_text("Tokens:", timeout=10_000)
    expect(logged_in.locator("#pg-reply")).to_contain_text("eleven twelve")
    expect(logged_in.locator("#pg-events")).to_contain_text("data: [DONE]")
    screenshot(logged_in, shots, "playground")


def test_a_running_conversation_can_be_cancelled(logged_in: Page, console: GatewayProcesses, shots: Path) -> None:
    secret = _create_key(logged_in, "talker")
    ended: list[str] = []

    def talk() -> None:
        # A second turn (it carries a reply), so the conversation has a session and its gate is held.
        history = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "tell me more"},
        ]
        with openai.OpenAI(base_url=console.base_url, api_key=secret, max_retries=0, timeout=30) as sdk:
            try:
                for _ in sdk.chat.completions.create(model="mock-crawl", messages=history, stream=True):
                    pass
                ended.append("finished")
            except openai.APIError as error:
                ended.append(f"stopped: {error}")

    with ThreadPoolExecutor(1) as thread:
        started = time.monotonic()
        done = thread.submit(talk)
        logged_in.goto("/console/sessions")
        for _ in range(20):
            if logged_in.locator("tbody button", has_text="Cancel").count():
                break
            logged_in.wait_for_timeout(250)
            logged_in.reload()
        screenshot(logged_in, shots, "sessions")
        logged_in.locator("tbody button", has_text="Cancel").first.click()
        done.result(timeout=20)
    # Sixty words at four a second would take fifteen seconds; the cancel stopped it well before.
    assert time.monotonic() - started < 12
    assert ended and ended[0].startswith("stopped"), ended
    expect(logged_in.locator("tbody")).to_contain_text("No conversation is running", timeout=10_000)


def test_the_keys_page(logged_in: Page, shots: Path) -> None:
    logged_in.goto("/console/keys")
    expect(logged_in.locator("h1")).to_have_text("API keys")
    screenshot(logged_in, shots, "keys")


def test_a_narrow_screen_gets_no_sideways_scrolling(browser: Browser, console: GatewayProcesses, shots: Path) -> None:
    origin = _origin(console)
    context = browser.new_context(base_url=origin, viewport={"width": 375, "height": 812}, is_mobile=True)
    page = context.new_page()
    login(page, origin)
    for path in ("/console/overview", "/console/keys", "/console/channels", "/console/requests", "/console/playground"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{path} is {width}px wide"
    page.goto("/console/overview")
    expect(page.locator("#t-spend")).to_contain_text("$")
    screenshot(page, shots, "overview-narrow")
    context.close()


def test_a_request_shows_in_the_log_and_its_spend_on_the_overview(logged_in: Page, console: GatewayProcesses) -> None:
    secret = _create_key(logged_in, "ledger-user")
    with openai.OpenAI(base_url=console.base_url, api_key=secret, max_retries=0, timeout=20) as sdk:
        sdk.chat.completions.create(model="mock-slow", messages=[{"role": "user", "content": "hi"}])
    rows = logged_in.locator("#request-log tbody tr")
    for _ in range(50):  # the recorder moves the worker's record into the database within a second or so
        logged_in.goto("/console/requests?key=ledger-user")
        if "mock-slow" in rows.first.inner_text():
            break
        logged_in.wait_for_timeout(200)
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("mock-slow")
    expect(rows).to_contain_text("completed")
    rows.locator("a").click()
    expect(logged_in.locator(".timeline")).to_contain_text("first token")
    expect(logged_in.locator("main")).to_contain_text("ledger-user")
    logged_in.goto("/console/keys")
    logged_in.click("a[href='/console/keys/ledger-user']")
    expect(logged_in.locator("#key-days tbody tr")).to_have_count(1)
    expect(logged_in.locator("#key-days tbody tr td").nth(1)).to_have_text("1")  # its one request today
    expect(logged_in.locator("#key-chart canvas")).to_have_count(1)
    logged_in.goto("/console/overview")
    day = logged_in.locator("table[data-window='day'][data-group='model']")
    # The figures are refreshed in the background: the first answer may predate the record.
    expect(day).to_contain_text("mock-slow", timeout=15_000)
    spend = float(logged_in.locator("#t-spend").inner_text().split("/")[1].strip().lstrip("$"))
    assert spend > 1.0
