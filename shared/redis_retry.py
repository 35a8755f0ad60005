"""Waiting out a Redis that went away (a restart, a failover), written once for every caller.

Two shapes: an :class:`Outage` measures how long Redis has failed one caller against its grace period,
and paces its tries (the emitter's writes, a relayed stream's reads); :func:`subscribe_forever` holds a
pub/sub subscription and subscribes again whenever the connection drops (the relay, the workers'
broadcasts). Loops that only try again later (presence, wake-ups, the job loop) share
:data:`REDIS_LOST` and :data:`RETRY_S`.

The caller keeps its own ``try`` around each call and holds its :class:`Outage` (made at its first
failure, or once per stream): a ``retrying(op, *args)`` wrapper would cost every batch of events
written a bound method and a tuple (0.4 µs, measured).

redis-py's own ``Retry`` retries one command on one connection; it knows no grace measured across
calls and no re-subscription, which is what these callers need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NoReturn

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = (
    "BACKOFF_FIRST_S",
    "BACKOFF_MAX_S",
    "REDIS_LOST",
    "REDIS_UNREACHABLE",
    "RESUBSCRIBE_S",
    "RETRY_S",
    "Outage",
    "subscribe_forever",
)

log = logging.getLogger(__name__)

REDIS_LOST = (RedisError, OSError)
"""What a background loop treats as Redis gone for now: it tries again after :data:`RETRY_S`."""
REDIS_UNREACHABLE = (RedisConnectionError, RedisTimeoutError)
"""What a call with a grace tries again (:meth:`Outage.wait_to_retry`): no answer at all. An error Redis
answered with would only recur."""

RETRY_S = 0.5
"""How long a background loop (presence, wake-ups, the job loop, broadcasts) waits before it tries again."""
RESUBSCRIBE_S = 0.2
"""How long the relay waits before it subscribes again: streams in flight idle meanwhile."""
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.05, 0.5
"""The first and the longest pause of :meth:`Outage.wait_to_retry`."""


class Outage:
    """How long Redis has been unreachable for one caller, measured against its grace period."""

    __slots__ = ("_delay", "_since", "grace_s")

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._since = 0.0
        """When Redis stopped answering (0: it answers)."""
        self._delay = BACKOFF_FIRST_S

    @property
    def ongoing(self) -> bool:
        """Whether the last try failed (Redis has not answered since)."""
        return self._since != 0.0

    def ended(self) -> None:
        """Redis answered: the next failure starts a new outage."""
        self._since, self._delay = 0.0, BACKOFF_FIRST_S

    def outlasts_grace(self, *, within_s: float = 0.0) -> bool:
        """Note a failure now; say whether the outage will have lasted the grace ``within_s`` from now."""
        now = time.monotonic()
        self._since = self._since or now
        return now - self._since + within_s >= self.grace_s

    async def wait_to_retry(self, error: BaseException) -> None:
        """A try failed with ``error``: pause before the next (0.05 s, then twice as long each time up
        to 0.5 s), or raise ``error`` if the next would come past the grace."""
        if self.outlasts_grace(within_s=self._delay):
            raise error
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, BACKOFF_MAX_S)


async def subscribe_forever(
    redis: Redis,
    topics: Iterable[str],
    on_message: Callable[[bytes, bytes], None],
    *,
    name: str,
    on_subscribed: Callable[[], None] | None = None,
    on_lost: Callable[[], None] | None = None,
    retry_s: float = RETRY_S,
) -> NoReturn:
    """Subscribe to ``topics`` and hand every message to ``on_message(topic, data)``, until cancelled.

    Whenever Redis drops the connection, ``on_lost`` is called, a warning naming ``name`` logged, and the
    subscription made again after ``retry_s``; ``on_subscribed`` runs each time it is in place (what was
    published meanwhile is lost: a caller that must not lose it reads it elsewhere then).
    """
    topics = list(topics)
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*topics)
            if on_subscribed is not None:
                on_subscribed()
            async for message in pubsub.listen():
                on_message(message["channel"], message["data"])
        except REDIS_LOST as exc:
            if on_lost is not None:
                on_lost()
            log.warning("%s lost (%s); subscribing again", name, exc)
            await asyncio.sleep(retry_s)
        finally:
            with contextlib.suppress(*REDIS_LOST):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
