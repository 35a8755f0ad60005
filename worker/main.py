"""The worker process: its parts wired together, run until SIGTERM, then drained.

Jobs are claimed and run by :class:`~worker.jobs.JobLoop`; cancellations, cooldowns and channel changes,
which every worker must hear, come over pub/sub, and wake-ups from a list (both in :mod:`worker.wakeups`).
On SIGTERM (or SIGINT) the worker takes no new job, lets running generations finish for up to
``worker.drain_s``, stops the rest with a clean error, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket

import msgspec
from arq.jobs import SerializationError, deserialize_job_raw
from redis.asyncio import Redis

from shared import keys
from shared.channel_store import ChannelStore
from shared.config import Settings
from shared.generation import decode_request
from shared.ledger.prices import PriceBook
from shared.queue import deserialize_job
from shared.redis_client import redis_client
from shared.redis_retry import REDIS_LOST, RETRY_S
from shared.scripts import Scripts
from worker.cooldowns import Cooldowns
from worker.failover import Router
from worker.jobs import JobLoop
from worker.lease import GenerationLease
from worker.metrics import serve_metrics
from worker.provider_pool import ProviderPool
from worker.registry import default_registry
from worker.runner import GenerationRunner
from worker.wakeups import Broadcasts, listen_broadcasts, take_wakeups

__all__ = ("run_worker", "serve_worker")

log = logging.getLogger(__name__)

_CHANNEL_POLL_S = 5.0


async def generate(runner: GenerationRunner, job_id: str, job: bytes, lease: GenerationLease) -> None:
    """Run the generation a job (arq's job format, see :mod:`shared.queue`) carries; report a job that
    cannot be read in the generation's log. A generation runs once: nothing here is retried."""
    try:
        function, args, _, _, _ = deserialize_job_raw(job, deserializer=deserialize_job)
        if function != keys.JOB_FUNCTION or len(args) != 1 or not isinstance(args[0], bytes):
            raise SerializationError(f"not a {keys.JOB_FUNCTION}(request) job: {function}")
        request = decode_request(args[0])
    except (SerializationError, msgspec.DecodeError) as exc:
        await runner.reject(job_id, f"The worker could not read the request ({exc}).", lease)
        return
    if request.id != job_id:
        await runner.reject(job_id, f"The job carried another generation ({request.id}).", lease)
        return
    await runner.run(request, lease)


class _Worker:
    """One worker's parts, from start-up (which reads channels and cooldowns from Redis) to its drain."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"
        self.providers = ProviderPool(default_registry())
        self.tasks: list[asyncio.Task[None]] = []

    async def serve(self, stopping: asyncio.Event) -> None:
        """Run until ``stopping`` is set, then drain; always close what was opened."""
        try:
            await self._serve(stopping)
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.providers.aclose()

    async def _serve(self, stopping: asyncio.Event) -> None:
        settings, redis = self.settings, self.redis
        scripts = Scripts(redis)
        store = ChannelStore(redis, settings.channels)
        await self.providers.replace(await store.effective())
        cooldowns = Cooldowns()
        await cooldowns.load(
            redis,
            (
                (channel.name, account.name)
                for channel in self.providers.catalog.channels()
                for account in channel.credential_configs()
            ),
        )
        router = Router(
            providers=self.providers,
            scripts=scripts,
            routing=settings.routing,
            cooldowns=cooldowns,
            slot_ttl_s=settings.worker.lease_ttl_s,
        )
        prices = PriceBook(redis, settings.prices)
        runner = GenerationRunner(
            scripts=scripts, settings=settings, router=router, worker_id=self.worker_id, prices=prices
        )
        jobs = JobLoop(
            scripts,
            functools.partial(generate, runner),
            runner.new_lease,
            max_jobs=settings.worker.max_jobs,
            poll_delay_s=settings.worker.poll_delay_s,
            job_timeout_s=settings.worker.job_timeout_s,
        )
        broadcasts = Broadcasts(runner, cooldowns)
        # Cancellations are heard until the very end, drain included; new work stops with the loop.
        self.tasks.append(asyncio.create_task(listen_broadcasts(redis, broadcasts)))
        taking = [
            asyncio.create_task(take_wakeups(redis, scripts.batcher, jobs)),
            asyncio.create_task(
                store.follow(self.providers.replace, interval_s=_CHANNEL_POLL_S, wake=broadcasts.channels_changed)
            ),
            asyncio.create_task(prices.follow(interval_s=_CHANNEL_POLL_S)),
            asyncio.create_task(jobs.run()),
        ]
        self.tasks.extend(taking)
        channels = len(self.providers.catalog.channels())
        log.info("worker %s ready: %d channel(s), up to %d jobs", self.worker_id, channels, settings.worker.max_jobs)
        await stopping.wait()
        for task in taking:
            task.cancel()
        await asyncio.gather(*taking, return_exceptions=True)
        await jobs.drain(settings.worker.drain_s)
        log.info("worker %s stopped", self.worker_id)


async def serve_worker(settings: Settings, stopping: asyncio.Event | None = None) -> None:
    """Run a worker until ``stopping`` is set, by default on SIGTERM or SIGINT; then drain and return.

    A Redis that goes away while the worker runs is waited out (running generations for
    ``redis.outage_grace_s``, the queue for as long as it takes). If Redis is not there at start, the
    worker starts over once it answers instead of exiting.
    """
    if stopping is None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
    while not stopping.is_set():
        redis = redis_client(settings.redis)
        try:
            await _Worker(settings, redis).serve(stopping)
            return
        except REDIS_LOST as exc:
            log.warning("worker lost Redis (%s); starting over in %.1f s", exc, RETRY_S)
        finally:
            with contextlib.suppress(*REDIS_LOST):
                await redis.aclose()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RETRY_S):
                await stopping.wait()


def run_worker(settings: Settings) -> None:
    import uvloop

    if settings.worker.metrics_port:
        serve_metrics(settings.worker.metrics_port, settings.server.host)

    uvloop.run(serve_worker(settings))
