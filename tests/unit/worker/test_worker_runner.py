"""The runner, emitter and lease together on fakeredis, with the mock provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from api.access.store import KeyStore
from shared.access_config import KeyPolicy
from shared.config import MockChannel, Settings, WorkerConfig
from shared.errors import UpstreamError
from shared.events import Envelope, Failed, Finished, Started, TextDelta, Usage, decode_envelope
from shared.generation import GenerationRequest, Message, TextPart
from shared.keys import GenerationKeys, presence_key
from shared.scripts import Scripts
from shared.usage import Billing
from tests.pubsub import next_message
from tests.runners import build_runner
from worker.emitter import EventEmitter
from worker.lease import Acquired, GenerationLease, LeaseLost, StopReason
from worker.metrics import REGISTRY
from worker.providers import Provider, ProviderOutput, UpstreamCall
from worker.registry import ProviderRegistry
from worker.runner import GenerationRunner


def _generations(outcome: str) -> float:
    return REGISTRY.get_sample_value("aiapi_worker_generations_total", {"outcome": outcome}) or 0.0


def _request(generation_id: str, model: str = "mock-1") -> GenerationRequest:
    return GenerationRequest(generation_id, "req", model, [Message("user", [TextPart("hello there")])], "relay", 1)


def _runner(
    redis: fakeredis.FakeAsyncRedis, channel: MockChannel, provider: Provider | None = None, lease_ttl_s: float = 3
) -> GenerationRunner:
    settings = Settings(channels=[channel], worker=WorkerConfig(lease_ttl_s=lease_ttl_s))
    registry = None
    if provider is not None:
        registry = ProviderRegistry()
        registry.register(MockChannel, lambda _: provider)
    return build_runner(redis, settings, registry=registry)


async def _log(redis: fakeredis.FakeAsyncRedis, generation_id: str) -> list[Envelope]:
    return [decode_envelope(fields[b"e"]) for _, fields in await redis.xrange(GenerationKeys(generation_id).events)]


async def test_a_generation_logs_every_event_in_order(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    runner = _runner(fake_redis, MockChannel(name="mock", models=["mock-1"], reply="one two three"))
    await runner.run(_request("g1"))
    log = await _log(fake_redis, "g1")
    assert [e.seq for e in log] == list(range(len(log)))
    finished = log[-1].event
    assert isinstance(finished, Finished) and abs(finished.finished_at - time.time()) < 5
    assert [e.event for e in log] == [
        Started("w1"),
        TextDelta("one"),
        TextDelta(" two"),
        TextDelta(" three"),
        Usage(input_tokens=2, output_tokens=3),
        Finished("stop", finished_at=finished.finished_at),
    ]
    assert not await fake_redis.exists(GenerationKeys("g1").lease)


async def test_unknown_model_fails_with_404(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await _runner(fake_redis, MockChannel(name="mock", models=["mock-1"])).run(_request("g2", model="other"))
    last = (await _log(fake_redis, "g2"))[-1].event
    assert isinstance(last, Failed) and last.error.status == 404


class _Broken:
    async def stream(self, call: UpstreamCall) -> AsyncGenerator[ProviderOutput, None]:
        yield TextDelta("partial")
        raise UpstreamError("boom", code="upstream_500")

    async def aclose(self) -> None:
        return None


async def test_provider_failure_ends_with_its_error(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    channel = MockChannel(name="mock", models=["mock-1"])
    await _runner(fake_redis, channel, _Broken()).run(_request("g3"))
    events = [e.event for e in await _log(fake_redis, "g3")]
    assert events[1] == TextDelta("partial")
    assert isinstance(events[-1], Failed) and (events[-1].error.status, events[-1].error.code) == (502, "upstream_500")


async def test_cancel_stops_the_provider_and_frees_the_lease(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    runner = _runner(fake_redis, MockChannel(name="mock", models=["mock-1"], tokens_per_second=20, reply="a " * 100))
    task = asyncio.create_task(runner.run(_request("g4")))
    await asyncio.sleep(0.2)
    assert runner.cancel("g4")
    await task
    events = [e.event for e in await _log(fake_redis, "g4")]
    assert isinstance(events[-1], Failed) and events[-1].error.status == 499
    assert len(events) < 20
    assert not await fake_redis.exists(GenerationKeys("g4").lease)


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        (StopReason.CANCELLED, (499, "cancelled")),
        (StopReason.SHUTDOWN, (503, "worker_shutdown")),
        (StopReason.SUPERSEDED, (409, "superseded")),
        (StopReason.ORPHANED, (499, "api_gone")),
        (StopReason.LEASE_LOST, None),
    ],
)
async def test_each_stop_reason_ends_the_run_with_its_own_error(
    fake_redis: fakeredis.FakeAsyncRedis, reason: StopReason, error: tuple[int, str] | None
) -> None:
    before = _generations(reason.value)
    runner = _runner(fake_redis, MockChannel(name="mock", models=["mock-1"], tokens_per_second=50, reply="a " * 100))
    task = asyncio.create_task(runner.run(_request("g11")))
    for _ in range(200):  # until it streams
        if any(isinstance(e.event, TextDelta) for e in await _log(fake_redis, "g11")):
            break
        await asyncio.sleep(0.01)
    assert runner.cancel("g11", reason)
    await task
    last = (await _log(fake_redis, "g11"))[-1].event
    if error is None:
        assert not isinstance(last, Failed | Finished), "a lost lease reports nothing: its new holder speaks"
    else:
        assert isinstance(last, Failed) and (last.error.status, last.error.code) == error
    assert _generations(reason.value) == before + 1


async def test_a_generation_runs_once_even_if_delivered_twice(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    runner = _runner(fake_redis, MockChannel(name="mock", models=["mock-1"], tokens_per_second=200, reply="x y z"))
    await asyncio.gather(runner.run(_request("g5")), runner.run(_request("g5")))
    events = [e.event for e in await _log(fake_redis, "g5")]
    assert events.count(Started("w1")) == 1 and sum(isinstance(e, Finished) for e in events) == 1


async def test_a_generation_stops_once_its_api_instance_is_gone(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    slow = MockChannel(name="mock", models=["mock-1"], tokens_per_second=20, reply="a " * 100)
    runner = _runner(fake_redis, slow, lease_ttl_s=0.3)  # a heartbeat every 0.1 s
    alone, watched, background = _request("g8"), _request("g9"), _request("g10")
    alone.reply_to = "aiapi:relay:gone"
    watched.reply_to = "aiapi:relay:here"
    background.reply_to, background.detached = "aiapi:relay:gone", True
    await fake_redis.set(presence_key("aiapi:relay:here"), 1)
    tasks = [asyncio.create_task(runner.run(request)) for request in (alone, watched, background)]
    async with asyncio.timeout(2):
        await tasks[0]
    last = (await _log(fake_redis, "g8"))[-1].event
    assert isinstance(last, Failed) and (last.error.status, last.error.code) == (499, "api_gone")
    assert runner.running == 2, "a generation someone listens to, and a background one, run on"
    for generation_id in ("g9", "g10"):
        runner.cancel(generation_id)
    await asyncio.gather(*tasks[1:])


async def test_emitter_batches_and_reports_fencing(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    keys = GenerationKeys("g6")
    await fake_redis.set(keys.lease, "token")
    pubsub = fake_redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("relay")
    lease = GenerationLease(Scripts(fake_redis), keys, "token", ttl_s=10)
    emitter = EventEmitter(Scripts(fake_redis), keys, generation_id="g6", lease=lease, topic="relay", ttl_s=60)
    for word in ("a", "b", "c"):
        await emitter.send(TextDelta(word))
    await emitter.drain()
    assert [e.seq for e in await _log(fake_redis, "g6")] == [0, 1, 2]
    assert (await next_message(pubsub))["data"].count(b'"type":"text"') == 3  # one publish for the whole batch
    await fake_redis.set(keys.lease, "someone-else")
    await emitter.send(TextDelta("d"))
    try:
        await emitter.drain()
    except LeaseLost:
        pass
    else:
        raise AssertionError("a fenced-out emitter must fail")
    assert await fake_redis.xlen(keys.events) == 3
    await pubsub.aclose()


async def test_emitter_waits_out_a_lost_redis_within_its_grace(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    keys, scripts = GenerationKeys("g11"), Scripts(fake_redis)
    await fake_redis.set(keys.lease, "token")
    lease = GenerationLease(scripts, keys, "token", ttl_s=10)
    real_script, failures = scripts.batcher.script, [RedisConnectionError("gone"), RedisConnectionError("still gone")]

    async def flaky_script(script: Any, keys: Any, args: Any) -> Any:
        if script is scripts.emit and failures:
            raise failures.pop(0)
        return await real_script(script, keys, args)

    scripts.batcher.script = flaky_script  # type: ignore[method-assign]
    patient = EventEmitter(scripts, keys, generation_id="g11", lease=lease, topic="relay", ttl_s=60, outage_grace_s=5)
    await patient.send(TextDelta("a"))
    await patient.drain()
    assert [e.event for e in await _log(fake_redis, "g11")] == [TextDelta("a")]
    failures.append(RedisConnectionError("gone for good"))
    hasty = EventEmitter(scripts, keys, generation_id="g11", lease=lease, topic="relay", ttl_s=60)
    await hasty.send(TextDelta("b"))
    with pytest.raises(RedisConnectionError):
        await hasty.drain()


async def test_emitter_holds_announced_events_and_ends_with_the_lease(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    keys = GenerationKeys("g7")
    scripts = Scripts(fake_redis)
    lease = GenerationLease(scripts, keys, "token", ttl_s=10)
    assert await lease.acquire() is Acquired.TAKEN
    emitter = EventEmitter(scripts, keys, generation_id="g7", lease=lease, topic="relay", ttl_s=60)
    emitter.announce(Started("w1"), within_s=10)
    await asyncio.sleep(0.05)
    assert await fake_redis.xlen(keys.events) == 0, "an announced event waits for the next one"
    await emitter.send(TextDelta("a"))
    emitter.announce(Usage(input_tokens=1, output_tokens=1), within_s=0.01)
    await asyncio.sleep(0.1)
    assert [e.seq for e in await _log(fake_redis, "g7")] == [0, 1, 2], "or goes alone once its time is up"
    await emitter.send(Finished("stop"))
    await emitter.drain()
    assert lease.released and not await fake_redis.exists(keys.lease), "the terminal batch drops the lease"
    await lease.release()  # nothing left to do, no error


async def _billed(redis: fakeredis.FakeAsyncRedis, generation_id: str) -> GenerationRequest:
    """A request admitted for the key "team" with 9 tokens reserved, as the API does."""
    now_ms = int(time.time() * 1000)
    await KeyStore(redis).admit(KeyPolicy(name="team", tpm=1000), now_ms, reserve_tokens=9)
    request = _request(generation_id)
    request.billing = Billing("team", "mock-1", reserved_tokens=9, reserved_at=now_ms // 1000)
    return request


async def test_a_finished_generation_is_charged_its_reported_usage(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    completed = _generations("completed")
    runner = _runner(fake_redis, MockChannel(name="mock", models=["mock-1"], reply="one two three"))
    await runner.run(await _billed(fake_redis, "u1"))
    usage = await KeyStore(fake_redis).usage("team", now_s=int(time.time()))
    assert (usage.total.requests, usage.total.errors, usage.total.estimated) == (1, 0, 0)
    assert (usage.total.input_tokens, usage.total.output_tokens) == (2, 3)
    assert usage.tokens_last_minute == 5, "the 9 tokens reserved were settled to the real 5"
    assert _generations("completed") == completed + 1


async def test_a_cancelled_generation_is_charged_an_estimate(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    cancelled = _generations("cancelled")
    channel = MockChannel(name="mock", models=["mock-1"], tokens_per_second=20, reply="abcdefgh " * 100)
    runner = _runner(fake_redis, channel)
    task = asyncio.create_task(runner.run(await _billed(fake_redis, "u2")))
    await asyncio.sleep(0.3)
    assert runner.cancel("u2")
    await task
    streamed = "".join(e.event.text for e in await _log(fake_redis, "u2") if isinstance(e.event, TextDelta))
    usage = (await KeyStore(fake_redis).usage("team", now_s=int(time.time()))).total
    assert (usage.requests, usage.errors, usage.estimated) == (1, 1, 1)
    # "hello there" is 11 characters: 3 tokens; the output is what had been streamed when it stopped.
    assert usage.input_tokens == 3 and usage.output_tokens == -(-len(streamed) // 4) > 0
    assert _generations("cancelled") == cancelled + 1
