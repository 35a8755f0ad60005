"""Which accounts are resting after a failure, as every worker learns it.

A worker that sees an account fail (429, 5xx, timeout, connection error) stops using it for the
channel's cooldown and tells the other workers over pub/sub, so one failure is not paid for once per
worker. The check sits on every generation's path, so it is a local lookup, never a Redis call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

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

    def cooling(self, channel: str, account: str) -> bool:
        until = self._until.get((channel, account))
        if until is None:
            return False
        if until <= self._clock():
            del self._until[(channel, account)]
            return False
        return True
