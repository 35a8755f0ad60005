"""A generation's lease: which worker runs it, kept alive by a heartbeat, fenced on loss.

The lease key holds the running worker's token with a TTL. Taking it is what makes a generation run
once even if arq delivers the job twice; renewing it proves the worker alive to the API; every event
write checks it (see ``emit.lua``), so a worker that lost it can no longer publish anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from shared.keys import GenerationKeys
    from shared.scripts import Scripts
    from worker.session_turn import SessionTurn

__all__ = ("Acquired", "GenerationLease", "LeaseLost", "StopReason")

log = logging.getLogger(__name__)

_RENEW_RETRY_S = 0.1


class LeaseLost(Exception):
    """This worker no longer holds the generation's lease; another may run it."""


class Acquired(enum.IntEnum):
    TAKEN = 1
    HELD_ELSEWHERE = 0
    CANCELLED = -1


class StopReason(enum.StrEnum):
    """Why a running generation was stopped from outside its own flow; the value is its ``outcome`` label.

    Typed so that the runner's choice of error for each reason is checked to be exhaustive, instead of a
    new reason raising ``KeyError`` inside the ``CancelledError`` handler that reports it.
    """

    CANCELLED = "cancelled"
    SHUTDOWN = "shutdown"
    SUPERSEDED = "superseded"
    ORPHANED = "orphaned"
    LEASE_LOST = "lease_lost"


class GenerationLease:
    def __init__(self, scripts: Scripts, keys: GenerationKeys, token: str, ttl_s: float) -> None:
        self._scripts = scripts
        self._keys = keys
        self.token = token
        self._ttl_ms = int(ttl_s * 1000)
        self.ending = False
        """The terminal event is on its way and drops the lease with it: nothing is left to keep alive."""
        self.released = False
        self._acquired: Acquired | None = None
        self.acquire_keys = [keys.lease, keys.cancel]
        self.acquire_args: list[str | int] = [token, self._ttl_ms]
        """What ``acquire.lua`` takes; ``claim.lua`` takes the same to acquire the lease with the job."""

    def acquired_with_claim(self, answer: int) -> None:
        """Record the lease taken (or not) by the job's claim, so :meth:`acquire` needs no round trip."""
        self._acquired = Acquired(answer)

    async def acquire(self) -> Acquired:
        if self._acquired is None:
            self._acquired = Acquired(int(await self._scripts.acquire(keys=self.acquire_keys, args=self.acquire_args)))
        return self._acquired

    async def keep(
        self,
        on_stop: Callable[[StopReason], object],
        turn: SessionTurn | None = None,
        listening: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Renew every third of the TTL until cancelled; call ``on_stop(reason)`` if the run must end.

        The session gate of ``turn``, if any, is renewed with the lease: they expire together. ``listening``
        tells whether anyone can still receive the events; two noes in a row (so that a Redis restart
        that lost the answer is not taken for one) stop the run as ``orphaned``. Once the terminal event
        is on its way (``ending``), a lease found gone or cancelled stops nothing.
        """
        unheard = 0
        interval = self._ttl_ms / 3000
        # Renewals fall on one grid for every lease in the process, so that they share round trips.
        delay = interval - asyncio.get_running_loop().time() % interval
        if turn is not None:
            # The API admitted the run with room for its queue wait; running, it lives by the lease's TTL.
            with contextlib.suppress(RedisError):
                await turn.hold(self._ttl_ms)
        while True:
            await asyncio.sleep(delay)
            try:
                state = await self._scripts.batcher.script(
                    self._scripts.renew, [self._keys.lease, self._keys.cancel], [self.token, self._ttl_ms]
                )
                if self.ending:
                    return
                if state == 1 and turn is not None and not await turn.hold(self._ttl_ms):
                    on_stop(StopReason.SUPERSEDED)
                    return
                if state == 1 and listening is not None:
                    unheard = 0 if await listening() else unheard + 1
                    if unheard == 2:
                        on_stop(StopReason.ORPHANED)
                        return
            except RedisError as exc:
                # Keep trying, and soon: the lease outlives a missed renewal, and Redis may be back in a moment.
                if delay == interval:
                    log.warning("lease renewal failed (retrying): %s", exc)
                delay = min(interval, _RENEW_RETRY_S)
                continue
            delay = interval - asyncio.get_running_loop().time() % interval
            if state == 0:
                on_stop(StopReason.LEASE_LOST)
                return
            if state == 2:
                on_stop(StopReason.CANCELLED)
                return

    async def release(self) -> None:
        if not self.released:
            await self._scripts.release(keys=[self._keys.lease], args=[self.token])
            self.released = True
