"""Wake-ups on a real Redis: each enqueued job wakes one worker, and a busy worker leaves them to others."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from shared import keys
from shared.batching import RedisBatcher
from shared.generation import GenerationRequest, Message, TextPart
from shared.queue import enqueue_generation
from worker.wakeups import take_wakeups

pytestmark = pytest.mark.integration


class _Worker:
    """Takes every job it is woken for and keeps it: ``slots`` is how many it can hold."""

    def __init__(self, slots: int, arrived: asyncio.Event) -> None:
        self.slots = slots
        self.wake = asyncio.Event()
        self.taken: list[bytes] = []
        self.freed = asyncio.Event()
        self._arrived = arrived

    def wake_for(self, job_id: bytes) -> None:
        self.taken.append(job_id)
        self._arrived.set()

    async def free_slot(self) -> int:
        while len(self.taken) >= self.slots:
            self.freed.clear()
            await self.freed.wait()
        return self.slots - len(self.taken)


async def _enqueue(redis: Redis, count: int) -> set[bytes]:
    for number in range(count):
        request = GenerationRequest(f"g{number}", "r", "m", [Message("user", [TextPart("hi")])], "reply", 1)
        await enqueue_generation(RedisBatcher(redis), request, expires_s=30)
    return {f"g{number}".encode() for number in range(count)}


async def _until(arrived: asyncio.Event, done: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not done():
            arrived.clear()
            await arrived.wait()


async def test_each_job_wakes_one_worker_and_a_full_one_takes_no_more(redis: Redis) -> None:
    arrived = asyncio.Event()
    roomy, small = _Worker(100, arrived), _Worker(2, arrived)
    tasks = [asyncio.create_task(take_wakeups(redis, RedisBatcher(redis), worker)) for worker in (small, roomy)]
    try:
        await asyncio.sleep(0.1)
        jobs = await _enqueue(redis, 20)
        await _until(arrived, lambda: len(roomy.taken) + len(small.taken) == len(jobs))
        assert sorted(roomy.taken + small.taken) == sorted(jobs), "every job woke exactly one worker"
        assert len(small.taken) == 2
        small.taken.clear()
        small.freed.set()
        more = await _enqueue(redis, 1)
        await _until(arrived, lambda: set(roomy.taken + small.taken) >= more)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert await redis.llen(keys.READY) == 0


async def test_a_backlog_is_taken_up_to_the_free_slots_in_one_pop(redis: Redis) -> None:
    arrived = asyncio.Event()
    worker = _Worker(4, arrived)
    jobs = await _enqueue(redis, 10)
    popped: list[tuple[object, ...]] = []
    batcher = RedisBatcher(redis)
    command = batcher.command

    def counted(*args: object) -> asyncio.Future[object]:
        popped.append(args)
        return command(*args)  # type: ignore[arg-type]

    batcher.command = counted  # type: ignore[method-assign]
    task = asyncio.create_task(take_wakeups(redis, batcher, worker))
    try:
        await _until(arrived, lambda: len(worker.taken) == 4)
        await asyncio.sleep(0.05)
        assert set(worker.taken) <= jobs and len(worker.taken) == 4
        assert popped[0] == ("LPOP", keys.READY, 4), "four ids in one pop, not one blocking pop each"
        assert await redis.llen(keys.READY) == 6, "the rest are left for other workers"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await redis.delete(keys.READY)
