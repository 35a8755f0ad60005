"""The relay on fakeredis: ordering, gap filling from the log, liveness."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import fakeredis
import pytest

from api.delivery.relay import Relay
from shared.config import RelayConfig
from shared.errors import GenerationLost, ServiceUnavailable, WorkerLost
from shared.events import Envelope, Finished, GenerationEvent, Started, TextDelta, encode_envelope
from shared.keys import GenerationKeys

CONFIG = RelayConfig(idle_check_s=0.05, queue_timeout_s=0.3)


async def _relay(redis: fakeredis.FakeAsyncRedis) -> Relay:
    relay = Relay(redis, instance_id="test", config=CONFIG)
    await relay.start()
    return relay


async def _log(redis: fakeredis.FakeAsyncRedis, generation_id: str, seq: int, event: GenerationEvent) -> bytes:
    data = encode_envelope(Envelope(generation_id, seq, event))
    await redis.xadd(GenerationKeys(generation_id).events, {"e": data}, id=f"0-{seq + 1}")
    return data


async def _collect(events: object) -> list[GenerationEvent | None]:
    return [event async for event in events]  # type: ignore[attr-defined]


async def test_published_events_arrive_in_order(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    relay = await _relay(fake_redis)
    subscription = relay.subscribe("g1")
    events: list[GenerationEvent] = [Started("w"), TextDelta("a"), TextDelta("b"), Finished("stop")]
    frames = [await _log(fake_redis, "g1", seq, event) for seq, event in enumerate(events)]
    collecting = asyncio.create_task(_collect(subscription.events()))
    await fake_redis.publish(relay.topic, b"[" + b",".join(frames[2:]) + b"]")
    await fake_redis.publish(relay.topic, b"[" + b",".join(frames[:2]) + b"]")
    assert [e for e in await collecting if e is not None] == events
    subscription.close()
    await relay.stop()


async def test_events_lost_by_pubsub_are_read_from_the_log(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    relay = await _relay(fake_redis)
    subscription = relay.subscribe("g2")
    events: list[GenerationEvent] = [Started("w"), *(TextDelta(str(i)) for i in range(5)), Finished("stop")]
    frames = [await _log(fake_redis, "g2", seq, event) for seq, event in enumerate(events)]
    await fake_redis.publish(relay.topic, b"[" + frames[-1] + b"]")  # only the last one is published
    received = await asyncio.wait_for(_collect(subscription.events()), 2)
    assert [e for e in received if e is not None] == events
    await relay.stop()


async def test_no_worker_is_503_after_the_queue_timeout(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    relay = await _relay(fake_redis)
    ticks = 0
    with pytest.raises(ServiceUnavailable) as caught:
        async for event in relay.subscribe("g3").events():
            assert event is None
            ticks += 1
    assert caught.value.code == "no_worker_available" and ticks >= 1
    await relay.stop()


async def test_started_generation_without_lease_is_worker_lost(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    relay = await _relay(fake_redis)
    await _log(fake_redis, "g4", 0, Started("w"))
    with pytest.raises(WorkerLost):
        await _collect(relay.subscribe("g4").events())
    await relay.stop()


async def test_a_generation_whose_lease_and_log_vanished_was_lost_by_redis(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    """Redis restarted empty: the worker is alive but can no longer write; the client is told so."""
    relay = await _relay(fake_redis)
    await fake_redis.set(GenerationKeys("g6").lease, "w")
    await _log(fake_redis, "g6", 0, Started("w"))
    events = relay.subscribe("g6").events()
    assert await anext(events) == Started("w")
    await fake_redis.flushall()
    with pytest.raises(GenerationLost) as caught:
        await _collect(events)
    assert caught.value.code == "generation_lost" and "Redis restarted" in caught.value.message
    await relay.stop()


async def test_live_lease_keeps_waiting(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    relay = await _relay(fake_redis)
    await fake_redis.set(GenerationKeys("g5").lease, "w")
    await _log(fake_redis, "g5", 0, Started("w"))
    events = relay.subscribe("g5").events()
    assert await anext(events) == Started("w")
    assert await anext(events) is None  # idle, but the worker is alive
    await _log(fake_redis, "g5", 1, Finished("stop"))
    assert await anext(events) == Finished("stop")
    await relay.stop()


async def test_a_slow_reader_holds_a_bounded_buffer_and_loses_nothing(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    relay = Relay(fake_redis, instance_id="test", config=RelayConfig(idle_check_s=0.05, max_buffered_events=16))
    await relay.start()
    subscription = relay.subscribe("g9")
    events: list[GenerationEvent] = [Started("w"), *(TextDelta(str(i)) for i in range(500)), Finished("stop")]
    frames = [await _log(fake_redis, "g9", seq, event) for seq, event in enumerate(events)]
    for start in range(0, len(frames), 50):
        await fake_redis.publish(relay.topic, b"[" + b",".join(frames[start : start + 50]) + b"]")
    await asyncio.sleep(0.1)  # everything has been published and dispatched; nobody has read yet
    assert subscription.buffered == 16
    received, most_held = [], 0
    async for event in subscription.events():
        most_held = max(most_held, subscription.buffered)
        if event is not None:
            received.append(event)
    assert received == events and most_held <= 16
    subscription.close()
    await relay.stop()


async def _idle_ticks(subscription: object, seconds: float) -> list[float]:
    """When each idle tick (``None``) came, over ``seconds``, from the start."""
    ticks: list[float] = []
    start = asyncio.get_running_loop().time()

    async def follow() -> None:
        async for event in subscription.events():  # type: ignore[attr-defined]
            if event is None:
                ticks.append(asyncio.get_running_loop().time() - start)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(follow(), seconds)
    return ticks


async def test_a_quiet_healthy_stream_is_checked_less_and_less_often(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    relay = await _relay(fake_redis)
    await fake_redis.set(GenerationKeys("g9").lease, "worker")
    await _log(fake_redis, "g9", 0, Started("w"))
    ticks = await _idle_ticks(relay.subscribe("g9"), 1.0)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    # 0.05 s, then 0.1, then 0.2 s (four times the base) from there on: about 6 checks, not 20.
    assert 3 <= len(ticks) <= 8, ticks
    assert min(gaps[2:]) >= 0.15, gaps
    await relay.stop()


async def test_an_alarm_checks_at_once_and_brings_back_the_base_interval(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    relay = await _relay(fake_redis)
    await fake_redis.set(GenerationKeys("g10").lease, "worker")
    await _log(fake_redis, "g10", 0, Started("w"))
    subscription = relay.subscribe("g10")
    loop = asyncio.get_running_loop()
    ticks: list[float] = []

    async def follow() -> None:
        async for event in subscription.events():
            if event is None:
                ticks.append(loop.time())

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.5)  # the interval has grown to 0.2 s
    alarmed_at = loop.time()
    subscription.alarm()
    await asyncio.sleep(0.2)
    following.cancel()
    after = [tick - alarmed_at for tick in ticks if tick >= alarmed_at]
    assert after and after[0] < 0.1, after  # at once, not after the 0.2 s it had grown to
    assert len(after) >= 2, after  # and again at the base interval, growing afresh
    await relay.stop()
