"""Shutting down: ``/readyz`` turns 503 at once, and relayed generations end after the drain period."""

from __future__ import annotations

import time

import fakeredis
import pytest
import redis
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.delivery.relay import Relay
from api.draining import Drain, ShuttingDown
from shared.config import RedisConfig, RelayConfig, Settings
from shared.keys import WORKER_HEALTH


async def test_readyz_is_503_once_draining_begins(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as sync:
        sync.set(WORKER_HEALTH, b"w", px=60_000)
    drain = Drain()
    app = create_app(Settings(redis=RedisConfig(url=redis_url)), drain=drain)
    async with AsyncTestClient(app) as client:
        assert (await client.get("/readyz")).json()["status"] == "ready"
        drain.begin(30)
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert {k: v for k, v in ready.json().items() if k != "ledger"} == {
            "status": "shutting down",
            "redis": "ok",
            "workers": "ok",
        }


async def test_a_subscription_ends_once_the_drain_period_is_over(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    drain = Drain()
    relay = Relay(fake_redis, instance_id="t", config=RelayConfig(idle_check_s=0.05, queue_timeout_s=60), drain=drain)
    await relay.start()
    events = relay.subscribe("g1").events()
    assert await anext(events) is None  # idle, waiting for a worker
    drain.begin(0.2)
    assert await anext(events) is None  # still within the drain period
    began = time.monotonic()
    with pytest.raises(ShuttingDown) as caught:
        while True:
            await anext(events)
    assert caught.value.status == 503 and caught.value.code == "server_shutting_down"
    assert time.monotonic() - began < 0.5
    await relay.stop()
