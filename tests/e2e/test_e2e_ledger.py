"""The ledger through real processes: the request log and its reports over the admin API, dollar budgets
held across two API processes, and a database outage under load that loses no record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import distinct, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from shared.ledger.database import create_engine
from shared.ledger.schema import request_log
from tests.harness import GatewayProcesses
from tests.ledger_databases import postgres_database
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

ADMIN_KEY = "admin-secret-key-ledger"
KEY = "sk-e2e-ledger-key"
BUDGET_KEY = "sk-e2e-ledger-budget"
WORDS = "one two three four"

CONFIG = f"""
[access]
mode = "keys"

[[access.keys]]
name = "ledger"
key_env = "AIAPI_E2E_LEDGER_KEY"

[[access.keys]]
name = "budget"
key_env = "AIAPI_E2E_BUDGET_KEY"
budget_usd = 20

[ledger]
claim_idle_s = 2

[prices."mock-1"]
input = 0
output = 1000000

[[channels]]
name = "mock"
type = "mock"
models = ["mock-1"]
reply = "{WORDS}"
tokens_per_second = 40
"""
_ENV = {"AIAPI_ADMIN_KEY": ADMIN_KEY, "AIAPI_E2E_LEDGER_KEY": KEY, "AIAPI_E2E_BUDGET_KEY": BUDGET_KEY}
_COST = 4.0
"""Each request: four output tokens at $1 each."""


def _admin(gateway: GatewayProcesses, base_url: str | None = None) -> httpx.Client:
    root = (base_url or gateway.base_url).removesuffix("/v1")
    return httpx.Client(base_url=root, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)


def _ask(base_url: str, key: str) -> str:
    """One chat request; its outcome as ``ok`` or the error's code."""
    with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20) as client:
        try:
            client.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hi"}])
        except openai.APIStatusError as error:
            body: Any = error.body
            return str(body.get("code") if isinstance(body, dict) else error.status_code)
    return "ok"


def _wait_for_rows(admin: httpx.Client, count: int, timeout_s: float = 30, **filters: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows, cursor = [], None
        while True:
            page = admin.get(
                "/admin/requests", params={**filters, "limit": 1000, **({"cursor": cursor} if cursor else {})}
            )
            if page.status_code == 503:  # the recorder has not migrated the database yet
                break
            assert page.status_code == 200, page.text
            rows += page.json()["data"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        if len(rows) >= count:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"{len(rows)} of {count} rows in the log")


@pytest.fixture(scope="module")
def gateway(redis_url: str) -> Iterator[GatewayProcesses]:
    with GatewayProcesses(redis_url=redis_url, config_toml=CONFIG, workers=2, env=_ENV) as processes:
        processes.start_recorder()
        yield processes


def test_the_log_and_the_reports(gateway: GatewayProcesses) -> None:
    assert [_ask(gateway.base_url, KEY) for _ in range(3)] == ["ok"] * 3
    with _admin(gateway) as admin:
        rows = _wait_for_rows(admin, 3, key="ledger")
        assert {(row["outcome"], row["status"], row["channel"], row["cost_usd"]) for row in rows} == {
            ("completed", 200, "mock", _COST)
        }
        assert all(row["ttft_ms"] > 0 and row["total_ms"] >= row["ttft_ms"] for row in rows)
        one = admin.get(f"/admin/requests/{rows[0]['id']}")
        assert one.status_code == 200 and one.json()["request_id"] == rows[0]["request_id"]
        assert admin.get("/admin/requests/nope").status_code == 404
        usage = admin.get("/admin/usage", params={"group_by": "key", "key": "ledger"}).json()["data"]
        assert [(u["group"], u["requests"], u["errors"], u["cost_usd"]) for u in usage] == [("ledger", 3, 0, 3 * _COST)]
        assert usage[0]["ttft_p50_ms"] > 0
        csv = admin.get("/admin/requests.csv", params={"key": "ledger"})
        assert csv.headers["content-type"].startswith("text/csv")
        assert len(csv.text.strip().splitlines()) == 4
        bad = admin.get("/admin/requests", params={"since": "yesterday"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
        assert admin.get("/admin/usage", params={"group_by": "week"}).status_code == 400
        ready = httpx.get(f"{gateway.base_url.removesuffix('/v1')}/readyz").json()
        assert ready["ledger"]["records"] >= 0


def test_prices_are_overridden_at_runtime(gateway: GatewayProcesses) -> None:
    with _admin(gateway) as admin:
        [configured] = admin.get("/admin/prices").json()["data"]
        assert (configured["model"], configured["output"], configured["source"]) == ("mock-1", 1e6, "config")
        assert admin.put("/admin/prices/mock-1", json={"output": -1}).status_code == 400
        unknown = admin.put("/admin/prices/gpt-9", json={"output": 1})
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "model"
        # The same price as configured: the other tests' costs do not change.
        assert admin.put("/admin/prices/mock-1", json={"output": 1e6}).json()["source"] == "admin"
        assert admin.get("/admin/prices").json()["data"][0]["source"] == "admin"
        assert admin.delete("/admin/prices/mock-1").status_code == 200
        assert admin.delete("/admin/prices/mock-1").status_code == 404


def test_a_dollar_budget_holds_across_two_api_processes(gateway: GatewayProcesses) -> None:
    second = gateway.add_api()
    concurrency = 6
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(lambda i: _ask((gateway.base_url, second)[i % 2], BUDGET_KEY), range(40)))
    admitted = outcomes.count("ok")
    # $20 at $4 a request: five fit; at most the requests already running when the fifth ended overshoot.
    assert 5 <= admitted <= 4 + concurrency, outcomes
    assert set(outcomes) == {"ok", "insufficient_quota"}
    with _admin(gateway, second) as admin:
        usage = admin.get("/admin/keys/budget/usage").json()
        assert usage["spent_usd"] == admitted * _COST


def test_a_database_outage_under_load_loses_no_record(redis_url: str) -> None:
    """The recorder's PostgreSQL goes away mid-load, the recorder holding a batch is killed, another one
    starts; once the database is back, every generation is in the log, once."""
    asyncio.run(_drill(redis_url))


async def _count_rows(url: str) -> int:
    engine = create_engine(make_url(url))
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(select(func.count(distinct(request_log.c.id))))).scalar_one())
    except (SQLAlchemyError, OSError):
        return -1
    finally:
        await engine.dispose()


async def _wait_for_count(url: str, count: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    found = await _count_rows(url)
    while found < count and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        found = await _count_rows(url)
    return found


async def _readiness(gateway: GatewayProcesses) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"{gateway.base_url.removesuffix('/v1')}/readyz")
    ready: dict[str, Any] = reply.json()
    return ready


async def _drill(redis_url: str) -> None:
    count = 80
    async with postgres_database() as url:
        server = make_url(url)
        with TcpProxy((server.host or "127.0.0.1", server.port or 5432)) as proxy:
            proxied = server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            env = {**_ENV, "DATABASE_URL": proxied}
            with GatewayProcesses(redis_url=redis_url, config_toml=CONFIG, workers=2, env=env) as gateway:
                first = gateway.start_recorder()
                assert await _wait_for_count(url, 0, 20) == 0, gateway.logs()  # migrated
                with ThreadPoolExecutor(4) as pool:
                    load = pool.map(lambda _: _ask(gateway.base_url, KEY), range(count))
                    await asyncio.sleep(0.5)
                    proxy.cut()
                    outcomes = await asyncio.to_thread(list, load)
                assert outcomes == ["ok"] * count
                ready = await _readiness(gateway)
                assert ready["ledger"]["records"] > 0, ready
                first.kill()  # dies holding what it read
                gateway.start_recorder()
                await asyncio.sleep(1.0)
                proxy.restore()
                assert await _wait_for_count(url, count, 60) == count, gateway.logs()
                ready = await _readiness(gateway)
                assert ready["ledger"]["records"] == 0, ready
