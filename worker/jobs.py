"""The worker's job loop: claim queued generations the moment they are enqueued, run up to ``max_jobs`` at
once, and drain on shutdown.

This replaces arq's ``Worker``, of which only the loop was left (the project has its own enqueue, claim and
job runner) and which could only be extended through its private members. Each enqueue pushes the job id
on :data:`~shared.keys.READY`; :func:`worker.wakeups.take_wakeups` pops it (``BLPOP``) while a slot is free
and hands it here, so each job wakes exactly one worker, which claims it, reads it and takes its lease with
one Lua call (``claim.lua``) and then takes its id off the queue. A timer poll of the queue stays as the
fallback (a lost wake-up costs at most ``poll_delay_s``) and records the health key arq users know.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared import keys
from shared.keys import GenerationKeys
from shared.redis_retry import REDIS_LOST, RETRY_S

if TYPE_CHECKING:
    from shared.scripts import Scripts
    from worker.lease import GenerationLease

__all__ = ("JobLoop", "RunJob")

log = logging.getLogger(__name__)

RunJob = Callable[[str, bytes, "GenerationLease"], Awaitable[None]]
"""Runs one claimed job: its id, its payload as enqueued, and the lease taken with the claim."""


class JobLoop:
    """Claims and runs jobs until :meth:`drain`; what :func:`~worker.wakeups.take_wakeups` feeds."""

    def __init__(
        self,
        scripts: Scripts,
        run_job: RunJob,
        new_lease: Callable[[str], GenerationLease],
        *,
        max_jobs: int,
        poll_delay_s: float,
        job_timeout_s: float,
        health_interval_s: float = 10.0,
    ) -> None:
        self._redis = scripts.redis
        self._batcher = scripts.batcher
        self._claim = scripts.claim
        self._run_job = run_job
        self._new_lease = new_lease
        self._max_jobs = max_jobs
        self._poll_delay_s = poll_delay_s
        self._job_timeout_s = job_timeout_s
        self._health_interval_s = health_interval_s
        self.wake = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._woken: list[bytes] = []
        self._accepting = True
        self._left_queued = False
        """Wake-ups were dropped for want of a free slot: poll the queue as soon as one frees."""
        self._slot_freed = asyncio.Event()
        self._dequeued: list[str] = []
        """Ids of jobs claimed, or found gone, that are still to be taken off the queue."""
        self._dequeuing: asyncio.Task[None] | None = None
        self._last_health = 0.0
        self.complete = 0
        self.failed = 0

    def wake_for(self, job_id: bytes) -> None:
        """Claim this job at the next turn of the loop."""
        self._woken.append(job_id)
        self.wake.set()

    async def free_slot(self) -> int:
        """Return once this worker can start a job (never, once it drains): how many it can start now."""
        while (free := self._max_jobs - len(self.tasks) - len(self._woken)) <= 0 or not self._accepting:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        return free

    async def run(self) -> None:
        """Start woken jobs at once and poll the queue every ``poll_delay_s``, until :meth:`drain`."""
        last_poll = 0.0
        while self._accepting:
            self.wake.clear()
            woken, self._woken = self._woken, []
            try:
                if woken:
                    await self.start_jobs(woken)
                    self._slot_freed.set()  # claims that failed left their slots free
                if not woken or time.monotonic() - last_poll >= self._poll_delay_s:
                    last_poll = time.monotonic()
                    await self._poll()
            except REDIS_LOST as exc:
                # Running generations wait Redis out on their own; jobs not claimed stay in the queue.
                log.warning("worker lost Redis (%s); trying again in %.1f s", exc, RETRY_S)
                self._slot_freed.set()
                await asyncio.sleep(RETRY_S)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_delay_s):
                    await self.wake.wait()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim each job (reading it and taking its lease in one script call) and start the claimed ones.
        The claims share a round trip, with each other and with what running generations send."""
        claims: list[tuple[str, GenerationLease, asyncio.Future[Any]]] = []
        for job_id_bytes in job_ids:
            if not self._accepting or len(self.tasks) + len(claims) >= self._max_jobs:
                self._left_queued = True
                break
            job_id = job_id_bytes.decode()
            if job_id in self.tasks or any(job_id == claimed for claimed, _, _ in claims):
                continue  # a wake-up and a timer poll both saw it
            lease = self._new_lease(job_id)
            claim_keys = [GenerationKeys(job_id).job, *lease.acquire_keys]
            claims.append((job_id, lease, self._batcher.script(self._claim, claim_keys, lease.acquire_args)))
        answers = await asyncio.gather(*(claim for _, _, claim in claims), return_exceptions=True)
        for (job_id, lease, _), claimed in zip(claims, answers, strict=True):
            if isinstance(claimed, BaseException):
                continue  # left queued: the next poll claims it
            if claimed is not None:
                payload, answer = claimed
                lease.acquired_with_claim(int(answer))
                task = asyncio.create_task(self._run(job_id, payload, lease))
                self.tasks[job_id] = task
                task.add_done_callback(functools.partial(self._finished, job_id))
            self._dequeue(job_id)
        if failed := next((answer for answer in answers if isinstance(answer, BaseException)), None):
            raise failed

    async def drain(self, grace_s: float) -> None:
        """Take no new job; let running ones finish for up to ``grace_s``, then cancel the rest (each ends
        its stream with a ``worker_shutdown`` error and releases its lease) and wait for them."""
        self._accepting = False
        self.wake.set()
        self._slot_freed.set()
        running = list(self.tasks.values())
        if running:
            log.info("worker draining: %d generation(s) running, up to %g s", len(running), grace_s)
            _, late = await asyncio.wait(running, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        if self._dequeuing is not None:
            await self._dequeuing

    async def _poll(self) -> None:
        """The fallback for lost wake-ups, and the health record."""
        free = self._max_jobs - len(self.tasks)
        if free > 0:
            now_ms = int(time.time() * 1000)
            job_ids: list[bytes] = await self._redis.zrangebyscore(keys.QUEUE, "-inf", now_ms, start=0, num=free)
            await self.start_jobs(job_ids)
        await self._record_health()

    async def _record_health(self) -> None:
        """arq's health key and format, so that ``arq --check`` style probes keep working."""
        now = time.monotonic()
        if now - self._last_health < self._health_interval_s:
            return
        self._last_health = now
        queued = await self._redis.zcard(keys.QUEUE)
        info = (
            f"{datetime.now():%b-%d %H:%M:%S} j_complete={self.complete} j_failed={self.failed} "
            f"j_retried=0 j_ongoing={len(self.tasks)} queued={queued}"
        )
        await self._redis.psetex(keys.WORKER_HEALTH, int((self._health_interval_s + 1) * 1000), info.encode())

    async def _run(self, job_id: str, payload: bytes, lease: GenerationLease) -> None:
        try:
            async with asyncio.timeout(self._job_timeout_s):
                await self._run_job(job_id, payload, lease)
        except TimeoutError:
            self.failed += 1
            log.warning("job %s stopped after its timeout of %g s", job_id, self._job_timeout_s)
        except Exception:
            self.failed += 1
            log.exception("job %s failed", job_id)
        else:
            self.complete += 1

    def _finished(self, job_id: str, _: object) -> None:
        self.tasks.pop(job_id, None)
        self._slot_freed.set()
        if self._left_queued and self._accepting:
            # Jobs wait in the queue for this slot: look for them now, not at the next timer tick.
            self._left_queued = False
            self.wake.set()

    def _dequeue(self, job_id: str) -> None:
        """Take the id of a job claimed (or found gone) off the queue, after the job has started: the
        queue is in another cluster slot than the job, and only timer polls read it."""
        self._dequeued.append(job_id)
        if self._dequeuing is None or self._dequeuing.done():
            self._dequeuing = asyncio.create_task(self._flush_dequeued())

    async def _flush_dequeued(self) -> None:
        while self._dequeued:
            ids, self._dequeued = self._dequeued, []
            # Lost with Redis, the ids stay queued: the next poll finds their jobs gone and tries again.
            with contextlib.suppress(*REDIS_LOST):
                await self._batcher.command("ZREM", keys.QUEUE, *ids)
