"""This API instance's presence: a key with a TTL that workers check to tell whether anyone is still
there to receive a generation's events (an instance that crashed cannot cancel what it started)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from shared.keys import presence_key
from shared.redis_retry import REDIS_LOST, RETRY_S

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ("Presence",)

log = logging.getLogger(__name__)


class Presence:
    def __init__(self, redis: Redis, reply_topic: str, *, ttl_s: float) -> None:
        self._redis = redis
        self._key = presence_key(reply_topic)
        self._ttl_ms = int(ttl_s * 1000)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._announce())

    async def stop(self) -> None:
        """Withdraw: a graceful stop has closed its streams, so what still runs for them can stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(*REDIS_LOST):
            await self._redis.delete(self._key)

    async def _announce(self) -> None:
        while True:
            interval = self._ttl_ms / 3000
            try:
                await self._redis.set(self._key, b"1", px=self._ttl_ms)
            except REDIS_LOST as exc:
                # Redis may be back (and have lost the key) in a moment: say so again soon.
                log.debug("presence not renewed: %s", exc)
                interval = min(interval, RETRY_S)
            await asyncio.sleep(interval)
