"""Submitting with no worker alive: an answer at once, not a wait for the queue timeout."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from api.delivery.queueing import Dispatcher
from api.delivery.relay import Relay
from shared.config import RelayConfig
from shared.errors import ServiceUnavailable
from shared.generation import GenerationRequest, Message, TextPart
from shared.keys import QUEUE, WORKER_HEALTH

CONFIG = RelayConfig(idle_check_s=0.05, queue_timeout_s=5)


def _request(generation_id: str) -> GenerationRequest:
    return GenerationRequest(generation_id, "req", "m", [Message("user", [TextPart("hi")])], "reply", 1)


async def test_no_worker_seen_for_a_health_interval_is_503_at_once(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    relay = Relay(fake_redis, instance_id="test", config=CONFIG)
    await relay.start()
    dispatcher = Dispatcher(fake_redis, relay, CONFIG, worker_health_s=0.3)
    await dispatcher.check_workers()
    starting = await dispatcher.submit(_request("g0"))  # workers may be starting beside this process
    starting.close()
    await asyncio.sleep(0.3)
    with pytest.raises(ServiceUnavailable) as caught:
        await dispatcher.submit(_request("g1"))
    assert caught.value.status == 503 and caught.value.code == "no_worker_available"
    assert await fake_redis.zcard(QUEUE) == 1, "only the first request was queued"

    await fake_redis.set(WORKER_HEALTH, b"worker", px=11_000)
    await dispatcher.check_workers()
    await fake_redis.delete(WORKER_HEALTH)  # a worker stopping deletes the key while others may run
    await dispatcher.check_workers()
    assert dispatcher.workers_seen()
    subscription = await dispatcher.submit(_request("g2"))
    assert await fake_redis.zcard(QUEUE) == 2, "a worker seen moments ago: the request queues and waits"
    subscription.close()
    await asyncio.sleep(0.3)
    assert not dispatcher.workers_seen()
    await relay.stop()
