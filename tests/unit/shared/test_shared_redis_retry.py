"""Waiting out a lost Redis: a call tried again within its grace, an outage's clock, a subscription held."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.redis_retry import REDIS_UNREACHABLE, Outage, subscribe_forever


class _Flaky:
    """An operation that fails with each of ``failures`` in turn, then answers ``"ok"``."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def _within(grace_s: float, op: _Flaky) -> str:
    """A caller's loop, as the emitter writes it: the outage is made on the first failure only."""
    outage = None
    while True:
        try:
            return await op()
        except REDIS_UNREACHABLE as exc:
            outage = outage or Outage(grace_s)
            await outage.wait_to_retry(exc)


async def test_a_call_is_sent_again_while_redis_is_unreachable_within_the_grace() -> None:
    op = _Flaky(RedisConnectionError("restarting"), RedisTimeoutError("slow"), RedisConnectionError("still"))
    started = time.monotonic()
    assert await _within(5.0, op) == "ok"
    assert op.calls == 4
    assert time.monotonic() - started >= 0.34  # 0.05 + 0.1 + 0.2 s: the pause doubles


async def test_past_the_grace_the_last_error_is_raised() -> None:
    op = _Flaky(*(RedisConnectionError(f"gone {n}") for n in range(100)))
    with pytest.raises(RedisConnectionError) as raised:
        await _within(0.5, op)  # tries at 0, 0.05, 0.15 and 0.35 s; the next would come at 0.75 s
    assert 2 <= op.calls <= 4  # fewer on a loaded machine, whose pauses run long
    assert str(raised.value) == f"gone {op.calls - 1}"
    no_grace = _Flaky(RedisConnectionError("gone"))
    with pytest.raises(RedisConnectionError):
        await _within(0.0, no_grace)
    assert no_grace.calls == 1


async def test_the_pause_stops_growing_at_half_a_second() -> None:
    outage = Outage(60.0)
    for _ in range(4):  # 0.05, 0.1, 0.2, 0.4 s
        await outage.wait_to_retry(RedisConnectionError())
    started = time.monotonic()
    await outage.wait_to_retry(RedisConnectionError())
    await outage.wait_to_retry(RedisConnectionError())
    assert 0.99 <= time.monotonic() - started < 2.0  # uncapped, they would take 0.8 + 1.6 s


def test_an_outage_counts_from_its_first_failure_and_ends_when_redis_answers() -> None:
    outage = Outage(0.2)
    assert not outage.ongoing
    assert not outage.outlasts_grace()
    assert outage.ongoing
    assert outage.outlasts_grace(within_s=0.25)  # the next try would come past the grace
    time.sleep(0.2)
    assert outage.outlasts_grace()
    outage.ended()
    assert not outage.ongoing
    assert not outage.outlasts_grace()
    assert Outage(0.0).outlasts_grace()


class _DroppingRedis:
    """A Redis whose first subscription loses its connection once subscribed; later ones are real."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis) -> None:
        self.redis = redis
        self.subscriptions = 0

    def pubsub(self, **kwargs: Any) -> Any:
        self.subscriptions += 1
        pubsub = self.redis.pubsub(**kwargs)
        if self.subscriptions == 1:

            async def dropped() -> Any:
                raise RedisConnectionError("Connection closed by server.")
                yield  # an async generator, as listen() is

            pubsub.listen = dropped
        return pubsub


async def test_a_subscription_is_made_again_after_redis_dropped_it(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    redis = _DroppingRedis(fake_redis)
    received: list[tuple[bytes, bytes]] = []
    events: list[str] = []
    task = asyncio.create_task(
        subscribe_forever(
            redis,  # type: ignore[arg-type]
            ["a", "b"],
            lambda topic, data: received.append((topic, data)),
            name="test topics",
            on_subscribed=lambda: events.append("subscribed"),
            on_lost=lambda: events.append("lost"),
            retry_s=0.01,
        )
    )
    try:
        for _ in range(200):
            if events == ["subscribed", "lost", "subscribed"]:
                break
            await asyncio.sleep(0.01)
        assert events == ["subscribed", "lost", "subscribed"]
        await fake_redis.publish("b", b"2")
        await fake_redis.publish("a", b"1")
        for _ in range(200):
            if len(received) == 2:
                break
            await asyncio.sleep(0.01)
        assert received == [(b"b", b"2"), (b"a", b"1")]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert redis.subscriptions == 2
