"""Runner and relay together on a real Redis: many generations at once, and pub/sub dropped mid-run."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from api.delivery.queueing import Dispatcher
from api.delivery.relay import Relay
from shared.config import MockChannel, RelayConfig, Settings, WorkerConfig
from shared.events import Failed, Finished, GenerationEvent, TextDelta
from shared.generation import GenerationRequest, Message, TextPart
from tests.runners import build_runner
from worker.runner import GenerationRunner

pytestmark = pytest.mark.integration

WORDS = 40


def _setup(redis: Redis, tokens_per_second: float, lease_ttl_s: float = 5) -> tuple[Relay, GenerationRunner]:
    channel = MockChannel(
        name="mock",
        models=["mock-1"],
        reply=" ".join(f"w{i}" for i in range(WORDS)),
        tokens_per_second=tokens_per_second,
    )
    settings = Settings(channels=[channel], worker=WorkerConfig(lease_ttl_s=lease_ttl_s))
    runner = build_runner(redis, settings, worker_id="itest")
    relay = Relay(redis, instance_id="itest", config=RelayConfig(idle_check_s=0.2))
    return relay, runner


async def _run_one(relay: Relay, runner: GenerationRunner, number: int) -> list[GenerationEvent]:
    generation_id = f"gen{number:04d}"
    request = GenerationRequest(generation_id, "r", "mock-1", [Message("user", [TextPart("x")])], relay.topic, 1)
    subscription = relay.subscribe(generation_id)
    work = asyncio.create_task(runner.run(request))
    events = [event async for event in subscription.events() if event is not None]
    subscription.close()
    await work
    return events


def _complete(events: list[GenerationEvent]) -> bool:
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return text == " ".join(f"w{i}" for i in range(WORDS)) and isinstance(events[-1], Finished)


async def test_many_concurrent_generations_arrive_complete_and_in_order(redis: Redis) -> None:
    relay, runner = _setup(redis, tokens_per_second=0)
    await relay.start()
    results = await asyncio.gather(*(_run_one(relay, runner, n) for n in range(200)))
    await relay.stop()
    assert all(_complete(events) for events in results)
    assert all(len(events) == WORDS + 3 for events in results)  # started + words + usage + finished


async def test_dropped_pubsub_connection_loses_nothing(redis: Redis, redis_url: str) -> None:
    relay, runner = _setup(redis, tokens_per_second=200)
    await relay.start()
    runs = [asyncio.create_task(_run_one(relay, runner, n)) for n in range(20)]
    await asyncio.sleep(0.05)
    killer = Redis.from_url(redis_url)
    assert await killer.client_kill_filter(_type="pubsub") >= 1
    await killer.aclose()
    results = await asyncio.gather(*runs)
    await relay.stop()
    assert all(_complete(events) for events in results)


async def test_durable_cancel_flag_stops_a_running_generation(redis: Redis) -> None:
    # No worker process listens for the pub/sub nudge here: the lease heartbeat must find the flag.
    relay, runner = _setup(redis, tokens_per_second=20, lease_ttl_s=1)
    await relay.start()
    task = asyncio.create_task(_run_one(relay, runner, 999))
    await asyncio.sleep(0.3)
    await Dispatcher(redis, relay, RelayConfig()).cancel("gen0999")
    cancelled_at = asyncio.get_running_loop().time()
    events = await task
    await relay.stop()
    last = events[-1]
    assert isinstance(last, Failed) and last.error.status == 499
    assert asyncio.get_running_loop().time() - cancelled_at < 1.0
    assert sum(isinstance(e, TextDelta) for e in events) < WORDS


async def test_a_log_tail_follows_a_generation_published_to_another_instance(redis: Redis) -> None:
    relay, runner = _setup(redis, tokens_per_second=200)
    other = Relay(redis, instance_id="elsewhere", config=RelayConfig(idle_check_s=0.2))
    await other.start()
    try:
        request = GenerationRequest("tailed", "r", "mock-1", [Message("user", [TextPart("x")])], other.topic, 1)
        work = asyncio.create_task(runner.run(request))
        await asyncio.sleep(0.05)  # the tail starts mid-run: it must still see everything from seq 0
        tail = relay.tail("tailed")
        started = asyncio.get_running_loop().time()
        events = [event async for event in tail.events() if event is not None]
        await work
    finally:
        await other.stop()
    texts = [event.text for event in events if isinstance(event, TextDelta)]
    assert texts == ["w0", *(f" w{i}" for i in range(1, WORDS))]
    assert isinstance(events[-1], Finished)
    # Blocking reads, not the idle poll: the tail ends as soon as the run does.
    assert asyncio.get_running_loop().time() - started < 0.2 * WORDS / 200 + 1
