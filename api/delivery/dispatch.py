"""Submitting a generation: subscribe to its events, then queue it; and cancelling one."""

from __future__ import annotations

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

__all__ = ("Dispatcher",)

_WORKER_CHECK_S = 1.0
"""How long a look at the workers' health key is trusted: one Redis read per second, not per request."""
_WORKER_HEALTH_S = 11.0
"""The health key's lifetime: the workers' health interval (10 s) plus one."""


class Dispatcher:
    def __init__(self, redis: Redis, relay: Relay, config: RelayConfig) -> None:
        self._redis = redis
        self._relay = relay
        self._config = config
        self._workers_seen_at = float("-inf")

    @property
    def reply_channel(self) -> str:
        return self._relay.channel

    async def submit(self, request: GenerationRequest, *, queue_timeout_s: float | None = None) -> Subscription:
        """Queue ``request`` and return the subscription to its events (taken before the job exists)."""
        await self._relay.wait_ready(timeout_s=1.0)
        await self._require_workers()
        timeout = self._config.queue_timeout_s if queue_timeout_s is None else queue_timeout_s
        subscription = self._relay.subscribe(request.id, queue_timeout_s=timeout)
        try:
            await self.enqueue(request, queue_timeout_s=timeout)
        except BaseException:
            subscription.close()
            raise
        return subscription

    async def workers_seen(self) -> bool:
        """Whether this process saw a live worker within the last health interval.

        Every live worker refreshes :data:`keys.WORKER_HEALTH`, which expires a second after its interval;
        a worker stopping cleanly deletes it even while others run, so a key seen moments ago still
        counts: during a rolling restart requests wait in the queue for the workers coming back.
        Raises ``RedisError``.
        """
        now = time.monotonic()
        if now - self._workers_seen_at < _WORKER_CHECK_S:
            return True
        if await self._redis.exists(keys.WORKER_HEALTH):
            self._workers_seen_at = now
            return True
        return now - self._workers_seen_at < _WORKER_HEALTH_S

    async def _require_workers(self) -> None:
        """Fail at once, rather than after the queue timeout, when no worker is there to take the job."""
        try:
            seen = await self.workers_seen()
        except RedisError:
            return  # the enqueue that follows reports Redis
        if not seen:
            raise ServiceUnavailable("No worker is running to take the request.", code="no_worker_available")

    async def enqueue(self, request: GenerationRequest, *, queue_timeout_s: float) -> None:
        """Queue ``request`` with nobody following it (background work)."""
        if tracing.enabled:
            # The worker's spans join the request's trace.
            tracing.annotate({"gen_ai.request.model": request.model, "gen_ai.operation.name": "chat"})
            request.traceparent = tracing.traceparent()
        try:
            await enqueue_generation(self._redis, request, expires_s=queue_timeout_s)
        except RedisError as exc:
            raise RedisUnavailable("The gateway cannot reach its queue.") from exc

    async def cancel(self, generation_id: str, *, remember_s: int | None = None) -> None:
        """Ask whichever worker runs (or will pick up) the generation to stop it.

        The request is remembered for ``remember_s`` (default: as long as event logs live).
        """
        ttl = self._config.event_ttl_s if remember_s is None else remember_s
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.GenerationKeys(generation_id).cancel, b"1", ex=ttl)
            pipe.publish(keys.CANCEL_CHANNEL, generation_id)
            await pipe.execute()
