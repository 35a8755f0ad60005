"""The worker's claims on a real Redis: a job runs once, its id leaves the queue, and an id whose job is
gone (expired, or taken by another worker) is dropped from the queue too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from shared import keys
from shared.batching import RedisBatcher
from shared.generation import GenerationRequest, Message, TextPart
from shared.queue import enqueue_generation
from shared.scripts import Scripts
from worker.jobs import JobLoop
from worker.lease import GenerationLease
from worker.main import generate

pytestmark = pytest.mark.integration


class _Runner:
    """What ``generate`` calls of the runner: records the generations it is asked to run."""

    def __init__(self, ran: list[str]) -> None:
        self._ran = ran

    async def run(self, request: GenerationRequest, lease: GenerationLease) -> None:
        self._ran.append(request.id)

    async def reject(self, generation_id: str, message: str, lease: GenerationLease) -> None:
        raise AssertionError(message)


def _leases(scripts: Scripts) -> Callable[[str], GenerationLease]:
    def new_lease(generation_id: str) -> GenerationLease:
        return GenerationLease(scripts, keys.GenerationKeys(generation_id), f"token-{generation_id}", 10)

    return new_lease


@pytest.fixture
async def worker(redis: Redis) -> AsyncIterator[tuple[JobLoop, list[str]]]:
    ran: list[str] = []

    async def run_job(job_id: str, job: bytes, lease: GenerationLease) -> None:
        await generate(_Runner(ran), job_id, job, lease)  # type: ignore[arg-type]

    scripts = Scripts(redis)
    yield JobLoop(scripts, run_job, _leases(scripts), max_jobs=10, poll_delay_s=0.5, job_timeout_s=5), ran


async def _enqueue(redis: Redis, generation_id: str) -> None:
    request = GenerationRequest(generation_id, "r", "m", [Message("user", [TextPart("hi")])], "reply", 1)
    await enqueue_generation(RedisBatcher(redis), request, expires_s=30)


async def _until(check: Any) -> None:
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


async def test_a_claimed_job_runs_once_and_leaves_the_queue(redis: Redis, worker: tuple[JobLoop, list[str]]) -> None:
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


async def test_a_drain_lets_jobs_finish_within_its_grace_cancels_the_rest_and_claims_nothing(redis: Redis) -> None:
    scripts = Scripts(redis)
    finished: list[str] = []
    cancelled: list[str] = []

    async def run_job(job_id: str, job: bytes, lease: GenerationLease) -> None:
        try:
            await asyncio.sleep(0.3 if job_id == "quick" else 60)
        except asyncio.CancelledError:
            cancelled.append(job_id)
            raise
        finished.append(job_id)

    jobs = JobLoop(scripts, run_job, _leases(scripts), max_jobs=10, poll_delay_s=0.05, job_timeout_s=60)
    looping = asyncio.create_task(jobs.run())
    await _enqueue(redis, "quick")
    await _enqueue(redis, "slow")

    async def both_running() -> bool:
        return len(jobs.tasks) == 2

    await _until(both_running)
    async with asyncio.timeout(2):
        await jobs.drain(0.5)
        await looping
    assert (finished, cancelled) == (["quick"], ["slow"])
    await _enqueue(redis, "late")
    await jobs.start_jobs([b"late"])
    assert not jobs.tasks and await redis.exists(keys.GenerationKeys("late").job), "a drained loop claims nothing"
