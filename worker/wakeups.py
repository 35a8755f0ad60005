"""How a worker learns what to do: wake-ups for jobs, each taken by one worker from a list, and what
every worker must hear (cancellations, cooldowns, channel changes) over one pub/sub connection."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, NoReturn, Protocol

from shared import keys
from shared.redis_retry import REDIS_LOST, RETRY_S, subscribe_forever

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from shared.batching import RedisBatcher
    from worker.cooldowns import Cooldowns
    from worker.runner import GenerationRunner

__all__ = ("Broadcasts", "Wakeable", "listen_broadcasts", "take_wakeups")

log = logging.getLogger(__name__)

_READY_WAIT_S = 5


class Wakeable(Protocol):
    wake: asyncio.Event
    """Set to make the worker poll its queue."""

    def wake_for(self, job_id: bytes) -> None:
        """Have the worker claim this job now."""

    async def free_slot(self) -> int:
        """Return once the worker can start a job: how many it can start now."""


async def take_wakeups(redis: Redis, batcher: RedisBatcher, worker: Wakeable) -> None:
    """Pop the ids of enqueued jobs while ``worker`` has a free slot, and hand each to it; a busy worker
    leaves them to the others. Reconnect whenever Redis drops us, polling meanwhile.

    Ids waiting in the list (under load) are taken up to the free slots at once, in the batcher's round
    trip that the claims share; only an empty list costs a blocking pop, on a connection of its own."""
    while True:
        free = await worker.free_slot()
        try:
            popped: list[bytes] | None = await batcher.command("LPOP", keys.READY, free)
            if not popped:
                waited = await redis.blpop([keys.READY], timeout=_READY_WAIT_S)  # type: ignore[misc]
                popped = [waited[1]] if waited is not None else []
        except REDIS_LOST as exc:
            log.warning("worker lost its wake-ups (%s); polling until they are back", exc)
            worker.wake.set()
            await asyncio.sleep(RETRY_S)
            continue
        for job_id in popped:
            worker.wake_for(job_id)


class Broadcasts:
    """What the broadcast topics act on."""

    def __init__(self, runner: GenerationRunner, cooldowns: Cooldowns) -> None:
        self.runner = runner
        self.cooldowns = cooldowns
        self.channels_changed = asyncio.Event()

    def handle(self, topic: bytes, data: bytes) -> None:
        if topic == _CANCEL:
            self.runner.cancel(data.decode())
        elif topic == _COOLDOWN:
            self.cooldowns.apply_encoded(data)
        else:
            self.channels_changed.set()


_CANCEL, _COOLDOWN = (name.encode() for name in (keys.CANCEL_TOPIC, keys.COOLDOWN_TOPIC))


async def listen_broadcasts(redis: Redis, broadcasts: Broadcasts) -> NoReturn:
    """Turn cancellations, cooldowns and channel changes on pub/sub into actions; subscribe again whenever
    Redis drops us. (A cancellation missed meanwhile is still found: the lease heartbeat reads its flag.)"""
    await subscribe_forever(
        redis,
        (keys.CANCEL_TOPIC, keys.COOLDOWN_TOPIC, keys.CHANNELS_CHANGED),
        broadcasts.handle,
        name="worker broadcasts",
    )
