"""The worker process: an arq worker that starts jobs the moment they are enqueued.

arq alone polls its queue every ``poll_delay``; measured, that adds ~270 ms at the default. Here each
enqueue also pushes the job id on :data:`~shared.keys.READY`. A worker with a free slot waits on that
list (``BLPOP``), so each job wakes exactly one worker, which at once claims it, reads it and takes its
lease with one Lua call (``claim.lua``; arq needs five round trips to claim, read and finish a job), and
then takes its id off the queue. Polling stays as the fallback, so a lost wake-up costs at most
``poll_delay``. Cancellations, cooldowns
and channel changes, which every worker must hear, come over pub/sub (both in :mod:`worker.control`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import msgspec
from arq.connections import ArqRedis
from arq.jobs import SerializationError, deserialize_job_raw
from arq.worker import Worker, func
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from shared import keys
from shared.channel_store import ChannelStore
from shared.config import Settings
from shared.generation import decode_request
from shared.keys import GenerationKeys
from shared.ledger.prices import PriceBook
from shared.queue import deserialize_job, serialize_job_envelope
from shared.redis_client import connection_pool
from shared.scripts import Scripts
from worker.control import Control, listen, take_wakeups
from worker.cooldowns import Cooldowns
from worker.lease import GenerationLease
from worker.metrics import serve_metrics
from worker.registry import default_registry
from worker.routing import Router
from worker.runner import GenerationRunner
from worker.upstreams import Upstreams

__all__ = ("GatewayWorker", "run_worker", "serve_worker")

log = logging.getLogger(__name__)

_REDIS_RETRY_S = 0.5
_CHANNEL_POLL_S = 5.0


async def generate(ctx: dict[str, Any], payload: bytes) -> None:
    """The arq job: run one generation. It never raises, so arq never retries it."""
    runner: GenerationRunner = ctx["runner"]
    lease: GenerationLease | None = ctx.get("lease")
    try:
        request = decode_request(payload)
    except msgspec.DecodeError as exc:
        await runner.reject(ctx["job_id"], f"The worker could not read the request ({exc}).", lease)
        return
    if request.id != ctx["job_id"]:
        await runner.reject(ctx["job_id"], f"The job carried another generation ({request.id}).", lease)
        return
    await runner.run(request, lease)


class GatewayWorker(Worker):
    """An arq ``Worker`` that polls when woken instead of only on a timer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wake = asyncio.Event()
        self._woken: list[bytes] = []
        self._left_queued = False
        """Wake-ups were dropped for want of a free slot: poll the queue as soon as one frees."""
        self._slot_freed = asyncio.Event()
        self._claim: AsyncScript | None = None
        self._dequeued: list[str] = []
        """Ids of jobs claimed, or found gone, that are still to be taken off the queue."""
        self._dequeuing: asyncio.Task[None] | None = None

    def wake_for(self, job_id: bytes) -> None:
        self._woken.append(job_id)
        self.wake.set()

    async def free_slot(self) -> None:
        """Return once this worker can start a job."""
        while self.job_counter + len(self._woken) >= self.max_jobs or not self.allow_pick_jobs:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    async def main(self) -> None:
        self.ctx["redis"] = self.pool
        self._claim = Scripts(self.pool).claim
        if self.on_startup:
            await self.on_startup(self.ctx)
        last_poll = 0.0
        while True:
            self.wake.clear()
            woken, self._woken = self._woken, []
            try:
                if woken and self.allow_pick_jobs:
                    await self.start_jobs(woken)
                    self._slot_freed.set()  # claims that failed left their slots free
                if not woken or time.monotonic() - last_poll >= self.poll_delay_s:
                    # The full iteration also reaps finished tasks and records health: keep it regular.
                    last_poll = time.monotonic()
                    await self._poll_iteration()
            except (RedisError, OSError) as exc:
                # Running generations wait Redis out on their own; jobs not claimed stay in the queue.
                log.warning("worker lost Redis (%s); trying again in %.1f s", exc, _REDIS_RETRY_S)
                self._slot_freed.set()
                await asyncio.sleep(_REDIS_RETRY_S)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_delay_s):
                    await self.wake.wait()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's ``start_jobs``, claiming each job, reading it and taking its lease with one script call
        (arq needs five round trips for its part alone)."""
        assert self._claim is not None
        for job_id_bytes in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                self._left_queued = True
                return
            self.job_counter += 1
            job_id = job_id_bytes.decode()
            lease = self.runner.new_lease(job_id)
            claimed = None
            try:
                claimed = await self._claim(
                    keys=[GenerationKeys(job_id).job, *lease.acquire_keys], args=lease.acquire_args
                )
            finally:
                if claimed is None:
                    self.job_counter -= 1
                    self.sem.release()
            if claimed is not None:
                payload, answer = claimed
                lease.acquired_with_claim(int(answer))
                task = self.loop.create_task(self.run_claimed(job_id, payload, lease))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task
            self._dequeue(job_id)

    def _dequeue(self, job_id: str) -> None:
        """Take the id of a job claimed (or found gone) off the queue, after the job has started: the
        queue is in another cluster slot than the job, and only timer polls read it."""
        self._dequeued.append(job_id)
        if self._dequeuing is None or self._dequeuing.done():
            self._dequeuing = self.loop.create_task(self._flush_dequeued())

    async def _flush_dequeued(self) -> None:
        while self._dequeued:
            ids, self._dequeued = self._dequeued, []
            # Lost with Redis, the ids stay queued: the next poll finds their jobs gone and tries again.
            with contextlib.suppress(RedisError, OSError):
                await self.pool.zrem(self.queue_name, *ids)

    @property
    def runner(self) -> GenerationRunner:
        runner: GenerationRunner = self.ctx["runner"]
        return runner

    async def run_claimed(self, job_id: str, payload: bytes, lease: GenerationLease) -> None:
        """arq's ``run_job`` for a claimed job, without its fetch, retry and result bookkeeping: a
        generation runs once, returns nothing and reports its own failures in its event log."""
        try:
            name, args, kwargs, _, _ = deserialize_job_raw(payload, deserializer=self.job_deserializer)
            function = self.functions[name]
        except (SerializationError, KeyError) as exc:
            self.jobs_failed += 1
            log.error("job %s cannot be run: %r", job_id, exc)
            return
        try:
            async with asyncio.timeout(self.job_timeout_s):
                await function.coroutine({**self.ctx, "job_id": job_id, "lease": lease}, *args, **kwargs)
        except TimeoutError:
            self.jobs_failed += 1
            log.warning("job %s stopped after its timeout of %g s", job_id, self.job_timeout_s)
        else:
            self.jobs_complete += 1

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()
        if self._left_queued:
            # Jobs wait in the queue for this slot: look for them now, not at the next timer tick.
            self._left_queued = False
            self.wake.set()


def build_worker(settings: Settings, *, handle_signals: bool = True) -> GatewayWorker:
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    upstreams = Upstreams(default_registry())
    tasks: list[asyncio.Task[None]] = []

    async def startup(ctx: dict[str, Any]) -> None:
        redis: ArqRedis = ctx["redis"]
        scripts = Scripts(redis)
        store = ChannelStore(redis, settings.channels)
        await upstreams.replace(await store.effective())
        cooldowns = Cooldowns()
        await cooldowns.load(
            redis,
            (
                (channel.name, account.name)
                for channel in upstreams.catalog.channels()
                for account in channel.credential_configs()
            ),
        )
        router = Router(
            upstreams=upstreams,
            scripts=scripts,
            routing=settings.routing,
            cooldowns=cooldowns,
            slot_ttl_s=settings.worker.lease_ttl_s,
        )
        prices = PriceBook(redis, settings.prices)
        runner = GenerationRunner(scripts=scripts, settings=settings, router=router, worker_id=worker_id, prices=prices)
        ctx["runner"] = runner
        control = Control(runner, cooldowns)
        tasks.append(asyncio.create_task(listen(redis, control)))
        tasks.append(asyncio.create_task(take_wakeups(redis, worker)))
        tasks.append(asyncio.create_task(prices.follow(interval_s=_CHANNEL_POLL_S)))
        tasks.append(
            asyncio.create_task(
                store.follow(upstreams.replace, interval_s=_CHANNEL_POLL_S, wake=control.channels_changed)
            )
        )
        channels = len(upstreams.catalog.channels())
        log.info("worker %s ready: %d channel(s), up to %d jobs", worker_id, channels, settings.worker.max_jobs)

    async def shutdown(ctx: dict[str, Any]) -> None:
        for task in tasks:
            task.cancel()
        await upstreams.aclose()

    worker = GatewayWorker(
        functions=[func(generate, name=keys.JOB_FUNCTION, max_tries=1, keep_result=0)],
        queue_name=keys.QUEUE,
        redis_pool=ArqRedis(
            connection_pool=connection_pool(settings.redis),
            job_serializer=serialize_job_envelope,
            job_deserializer=deserialize_job,
            default_queue_name=keys.QUEUE,
        ),
        on_startup=startup,
        on_shutdown=shutdown,
        handle_signals=handle_signals,
        job_completion_wait=settings.worker.shutdown_grace_s,
        max_jobs=settings.worker.max_jobs,
        job_timeout=settings.worker.job_timeout_s,
        keep_result=0,
        poll_delay=settings.worker.poll_delay_s,
        max_tries=1,
        retry_jobs=False,
        health_check_interval=10,
        health_check_key=keys.WORKER_HEALTH,
        job_serializer=serialize_job_envelope,
        job_deserializer=deserialize_job,
        log_results=False,
    )
    return worker


async def serve_worker(settings: Settings) -> None:
    """Run a worker until it is stopped by a signal (SIGTERM drains running generations first).

    A Redis that goes away while the worker runs is waited out (running generations for
    ``redis.outage_grace_s``, the queue for as long as it takes). If arq's loop stops on it anyway (or
    Redis is not there at start), the worker starts over once Redis answers instead of exiting.
    """
    while True:
        worker = build_worker(settings)
        try:
            await worker.async_run()
            return
        except asyncio.CancelledError:
            return
        except (RedisError, OSError) as exc:
            log.warning("worker lost Redis (%s); starting over in %.1f s", exc, _REDIS_RETRY_S)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await worker.close()
        await asyncio.sleep(_REDIS_RETRY_S)


def run_worker(settings: Settings) -> None:
    import uvloop

    # arq logs every job with its arguments at INFO: that is the user's prompt, and a cost per job.
    logging.getLogger("arq.worker").setLevel(logging.WARNING)
    if settings.worker.metrics_port:
        serve_metrics(settings.worker.metrics_port, settings.server.host)

    uvloop.run(serve_worker(settings))
