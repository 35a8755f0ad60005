"""Submitting a generation: subscribe to its events, then queue it; and cancelling one."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from shared import keys
from shared.errors import RedisUnavailable, ServiceUnavailable
from shared.queue import enqueue_generation
from shared.tracing import tracing

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from api.delivery.relay import Relay, Subscription
    from shared.config import RelayConfig
    from shared.generation import GenerationRequest

__all__ = ("WORKER_HEALTH_S", "Dispatcher")

_WORKER_CHECK_S = 1.0
"""How often each API process looks at the workers' health key (off the request path)."""
WORKER_HEALTH_S = 11.0
"""The health key's lifetime: the workers' health interval (10 s) plus one."""


class Dispatcher:
    def __init__(
        self, redis: Redis, relay: Relay, config: RelayConfig, *, worker_health_s: float = WORKER_HEALTH_S
    ) -> None:
        self._redis = redis
        self._worker_health_s = worker_health_s
        self._started_at = time.monotonic()
        self._relay = relay
        self._config = config
        self._workers_seen_at = float("-inf")
        self._workers_known = False
        """Whether the last look at the health key got an answer (Redis may be down)."""

    @property
    def reply_topic(self) -> str:
        return self._relay.topic

    async def submit(self, request: GenerationRequest, *, queue_timeout_s: float | None = None) -> Subscription:
        """Queue ``request`` and return the subscription to its events (taken before the job exists)."""
        await self._relay.wait_ready(timeout_s=1.0)
        if self._no_workers():
            raise ServiceUnavailable("No worker is running to take the request.", code="no_worker_available")
        timeout = self._config.queue_timeout_s if queue_timeout_s is None else queue_timeout_s
        subscription = self._relay.subscribe(request.id, queue_timeout_s=timeout)
        try:
            await self.enqueue(request, queue_timeout_s=timeout)
        except BaseException:
            subscription.close()
            raise
        return subscription

    def workers_seen(self) -> bool:
        """Whether this process saw a live worker within the last health interval.

        Every live worker refreshes :data:`keys.WORKER_HEALTH`, which expires a second after its interval;
        a worker stopping cleanly deletes it even while others run, so a key seen moments ago still
        counts: during a rolling restart requests wait in the queue for the workers coming back.
        """
        return time.monotonic() - self._workers_seen_at < self._worker_health_s

    def _no_workers(self) -> bool:
        """Whether Redis says no worker has been alive for a whole health interval, this process's first
        included (workers starting beside it may not have announced themselves yet)."""
        since = max(self._workers_seen_at, self._started_at)
        return self._workers_known and time.monotonic() - since >= self._worker_health_s

    async def check_workers(self) -> None:
        """Look at the workers' health key once; :meth:`watch_workers` does it every second."""
        try:
            alive = await self._redis.exists(keys.WORKER_HEALTH)
        except (RedisError, OSError):
            self._workers_known = False  # an unreachable Redis is reported as such by the enqueue
            return
        self._workers_known = True
        if alive:
            self._workers_seen_at = time.monotonic()

    async def watch_workers(self) -> None:
        """Keep :meth:`workers_seen` current for the life of the process."""
        while True:
            await asyncio.sleep(_WORKER_CHECK_S)
            await self.check_workers()

    async def enqueue(self, request: GenerationRequest, *, queue_timeout_s: float) -> None:
        """Queue ``request`` with nobody following it (background work)."""
        if tracing.enabled:
            # The worker's spans join the request's trace.
            tracing.annotate({"gen_ai.request.model": request.model, "gen_ai.operation.name": "chat"})
            request.traceparent = tracing.traceparent()
        try:
            await enqueue_generation(self._relay.batcher, request, expires_s=queue_timeout_s)
        except RedisError as exc:
            raise RedisUnavailable("The gateway cannot reach its queue.") from exc

    async def cancel(self, generation_id: str, *, remember_s: int | None = None) -> None:
        """Ask whichever worker runs (or will pick up) the generation to stop it.

        The request is remembered for ``remember_s`` (default: as long as event logs live).
        """
        ttl = self._config.event_ttl_s if remember_s is None else remember_s
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.GenerationKeys(generation_id).cancel, b"1", ex=ttl)
            pipe.publish(keys.CANCEL_TOPIC, generation_id)
            await pipe.execute()
