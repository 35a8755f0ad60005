"""Dollar budgets: the worker's settlement adds each generation's cost, admission refuses a spent key."""

from __future__ import annotations

import calendar

import fakeredis
import pytest

from api.access.keys import Access
from api.access.store import KeyStore, Verdict
from shared.access_config import AccessConfig, KeyPolicy
from shared.errors import RateLimited
from shared.events import Usage
from shared.usage import Billing, UsageLedger

JAN = calendar.timegm((2026, 1, 31, 23, 0, 0))
FEB = calendar.timegm((2026, 2, 1, 1, 0, 0))


async def _spend(ledger: UsageLedger, dollars: float, now_s: int) -> None:
    await ledger.record(Billing("d", "m"), Usage(1, 1), failed=False, estimated=False, now_s=now_s, cost_usd=dollars)


async def test_a_lifetime_budget_refuses_once_spent(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store, ledger = KeyStore(fake_redis), UsageLedger(fake_redis)
    key = KeyPolicy(name="d", budget_usd=1.0)
    await _spend(ledger, 0.6, JAN)
    assert await store.admit(key, JAN * 1000) == (Verdict.ADMITTED, 0)
    await _spend(ledger, 0.4, JAN)
    assert await store.admit(key, JAN * 1000) == (Verdict.BUDGET_USD, 0)
    usage = await store.usage("d", JAN)
    assert (usage.spent_usd, usage.spent_usd_month) == (1.0, 1.0)


async def test_a_monthly_budget_starts_over_with_the_month(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store, ledger = KeyStore(fake_redis), UsageLedger(fake_redis)
    key = KeyPolicy(name="d", budget_usd_monthly=2.0)
    await _spend(ledger, 2.5, JAN)
    assert await store.admit(key, JAN * 1000) == (Verdict.BUDGET_USD_MONTHLY, 0)
    assert await store.admit(key, FEB * 1000) == (Verdict.ADMITTED, 0)
    assert (await store.usage("d", FEB)).spent_usd_month == 0.0


async def test_an_over_budget_key_gets_insufficient_quota(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    access = Access(AccessConfig(), fake_redis)
    await _spend(access.ledger, 5.0, JAN)
    with pytest.raises(RateLimited) as refused:
        await access.limit(KeyPolicy(name="d", budget_usd=5.0), "m", 100)
    assert refused.value.code == "insufficient_quota" and "$5" in refused.value.message
