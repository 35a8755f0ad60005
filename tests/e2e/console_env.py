"""Fixtures for the console's browser tests: a gateway with the console on, a seeded ledger, and Chromium.

The browser is Debian's Chromium driven by Playwright (a Playwright browser download is not possible
everywhere); without it the tests are skipped with the reason. Set ``AIAPI_CONSOLE_SCREENSHOTS`` to a
folder to keep the screenshots the tests take (``docs/console`` is made that way).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from shared.ledger.database import create_engine, database_url
from shared.ledger.migrate import migrate
from shared.ledger.record import LedgerRecord
from shared.ledger.writer import write_records
from shared.ledger_config import DatabaseConfig
from tests.harness import GatewayProcesses

__all__ = (
    "ADMIN_KEY",
    "CHROMIUM",
    "XSS",
    "browser",
    "console",
    "ledger_path",
    "logged_in",
    "login",
    "needs_chromium",
    "screenshot",
    "shots",
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ADMIN_KEY = "console-admin-key-for-tests-0123456789"
XSS = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium); .ci/run installs it"
)

_CONFIG = """
[access]
mode = "keys"

[prices."mock-slow"]
input = 100000.0
output = 100000.0

[[channels]]
name = "mock-a"
type = "mock"
models = ["mock-1"]
reply = "Reply from A"

[[channels]]
name = "mock-b"
type = "mock"
models = ["mock-1"]
priority = 1
reply = "Reply from B"

[[channels]]
name = "mock-slow"
type = "mock"
models = ["mock-slow"]
tokens_per_second = 15
reply = "one two three four five six seven eight nine ten eleven twelve"

[[channels]]
name = "mock-crawl"
type = "mock"
models = ["mock-crawl"]
tokens_per_second = 4
reply = "{crawl}"
"""


async def _prepare_ledger(path: Path, records: list[LedgerRecord]) -> None:
    engine = create_engine(database_url(DatabaseConfig(url=f"sqlite:///{path}"), str(path.parent)))
    try:
        await migrate(engine)
        await write_records(engine, records)
    finally:
        await engine.dispose()


def _seed(now_ms: int) -> list[LedgerRecord]:
    """A few finished generations, one of them carrying markup in every free-text field."""
    return [
        LedgerRecord(
            id=f"seed{index:04d}",
            request_id=f"req_seed{index}",
            at_ms=now_ms - index * 60_000,
            key="seed-key",
            model="mock-1",
            channel="mock-a" if index % 2 else "mock-b",
            account="default",
            client=XSS if index == 0 else "openai-python",
            outcome="failed" if index == 3 else "completed",
            status=502 if index == 3 else 200,
            error_code="upstream_error" if index == 3 else None,
            error_message=XSS if index == 3 else None,
            input_tokens=1000,
            output_tokens=500,
            cost_usd=0.004,
            ttft_ms=20.0 + index,
            total_ms=80.0 + index,
            attempts=2 if index == 3 else 1,
        )
        for index in range(6)
    ]


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console") / "ledger.db"


@pytest.fixture(scope="module")
def console(redis_url: str, ledger_path: Path) -> Iterator[GatewayProcesses]:
    database = ledger_path
    # pytest-asyncio's loop runs in this thread: the set-up gets a thread and a loop of its own.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, _prepare_ledger(database, _seed(int(time.time() * 1000)))).result()
    config = _CONFIG.format(crawl=" ".join(["word"] * 60))
    env = {"AIAPI_ADMIN_KEY": ADMIN_KEY, "DATABASE_URL": f"sqlite:///{database}"}
    with GatewayProcesses(redis_url=redis_url, config_toml=config, env=env) as gateway:
        gateway.start_recorder()
        yield gateway


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("AIAPI_CONSOLE_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("console-shots")


def screenshot(page: Page, shots: Path, name: str) -> None:
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def login(page: Page, origin: str, key: str = ADMIN_KEY) -> None:
    page.goto(f"{origin}/console/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")


@pytest.fixture
def logged_in(browser: Browser, console: GatewayProcesses) -> Iterator[Page]:
    """A page of a fresh browser context, logged in; a dialog (an alert from injected script) fails the test."""
    origin = console.base_url.removesuffix("/v1")
    context = browser.new_context(base_url=origin, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login(page, origin)
    page.wait_for_url(re.compile(r".*/console$"))
    yield page
    context.close()
    assert not dialogs, f"a script ran from page content: {dialogs}"
