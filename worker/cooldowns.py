"""Which accounts are resting after a failure, as every worker learns it.

A worker that sees an account fail (429, 5xx, timeout, connection error) stops using it for the
channel's cooldown and tells the other workers over pub/sub, so one failure is not paid for once per
worker. The check sits on every generation's path, so it is a local lookup, never a Redis call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError

from shared.keys import ChannelKeys

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ("CooldownNotice", "Cooldowns")


class CooldownNotice(msgspec.Struct, frozen=True):
    channel: str
    account: str
    seconds: float
    reason: str


_notice_decoder = msgspec.json.Decoder(CooldownNotice)


class Cooldowns:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}

    def apply(self, notice: CooldownNotice) -> None:
        key = (notice.channel, notice.account)
        self._until[key] = max(self._until.get(key, 0.0), self._clock() + notice.seconds)

    def apply_encoded(self, data: bytes) -> None:
        """Apply a notice received from another worker; an unreadable one is ignored."""
        try:
            self.apply(_notice_decoder.decode(data))
        except msgspec.DecodeError:
            return

    async def load(self, redis: Redis, accounts: Iterable[tuple[str, str]]) -> None:
        """Take over the cooldowns of ``(channel, account)`` pairs still running in Redis."""
        pairs = list(accounts)
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for channel, account in pairs:
                    pipe.pttl(ChannelKeys.health(channel, account))
                remaining: list[int] = await pipe.execute()
        except RedisError:
            return  # best effort: the next failure teaches it again
        for (channel, account), ttl_ms in zip(pairs, remaining, strict=True):
            if ttl_ms > 0:
                self.apply(CooldownNotice(channel, account, ttl_ms / 1000, "loaded at start"))

    def remaining_s(self, channel: str, account: str) -> float:
        """How long ``account`` of ``channel`` still rests (0 when it does not)."""
        until = self._until.get((channel, account))
        return 0.0 if until is None else max(0.0, until - self._clock())

    def cooling(self, channel: str, account: str) -> bool:
        until = self._until.get((channel, account))
        if until is None:
            return False
        if until <= self._clock():
            del self._until[(channel, account)]
            return False
        return True
