"""The worker's claims on a real Redis: a job runs once, its id leaves the queue, and an id whose job is
gone (expired, or taken by another worker) is dropped from the queue too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.worker import func
from redis.asyncio import Redis

from shared import keys
from shared.generation import GenerationRequest, Message, TextPart, decode_request
from shared.queue import deserialize_job, enqueue_generation, serialize_job_envelope
from shared.scripts import Scripts
from worker.lease import GenerationLease
from worker.main import GatewayWorker

pytestmark = pytest.mark.integration


class _Runner:
    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts

    def new_lease(self, generation_id: str) -> GenerationLease:
        return GenerationLease(self._scripts, keys.GenerationKeys(generation_id), f"token-{generation_id}", 10)


@pytest.fixture
async def worker(redis: Redis) -> AsyncIterator[tuple[GatewayWorker, list[str]]]:
    ran: list[str] = []

    async def generate(ctx: dict[str, Any], payload: bytes) -> None:
        ran.append(decode_request(payload).id)

    pool = ArqRedis(connection_pool=redis.connection_pool)
    made = GatewayWorker(
        functions=[func(generate, name=keys.JOB_FUNCTION)],  # type: ignore[arg-type]
        queue_name=keys.QUEUE,
        redis_pool=pool,
        handle_signals=False,
        job_serializer=serialize_job_envelope,
        job_deserializer=deserialize_job,
    )
    made.ctx["runner"] = _Runner(Scripts(pool))
    made._claim = Scripts(pool).claim
    yield made, ran


async def _enqueue(redis: Redis, generation_id: str) -> None:
    request = GenerationRequest(generation_id, "r", "m", [Message("user", [TextPart("hi")])], "reply", 1)
    await enqueue_generation(redis, request, expires_s=30)


async def _until(check: Any) -> None:
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


async def test_a_claimed_job_runs_once_and_leaves_the_queue(
    redis: Redis, worker: tuple[GatewayWorker, list[str]]
) -> None:
    gateway_worker, ran = worker
    await _enqueue(redis, "g-ok")
    await _enqueue(redis, "g-gone")
    await redis.delete(keys.GenerationKeys("g-gone").job)  # expired, or claimed by another worker
    await gateway_worker.start_jobs([b"g-ok", b"g-gone"])
    await _until(lambda: _empty(redis))
    await asyncio.gather(*gateway_worker.tasks.values())
    assert ran == ["g-ok"]
    assert await redis.get(keys.GenerationKeys("g-ok").lease) == b"token-g-ok"
    assert not await redis.exists(keys.GenerationKeys("g-ok").job)
    await gateway_worker.start_jobs([b"g-ok"])  # a wake-up and a timer poll both saw it
    assert ran == ["g-ok"], "a job runs once"


async def _empty(redis: Redis) -> bool:
    return await redis.zcard(keys.QUEUE) == 0
