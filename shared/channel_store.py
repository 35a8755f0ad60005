"""Channels changed at runtime: stored in Redis by the admin API, laid over the config file's.

The config file is the source; the store holds only differences: a channel added or replaced (by name)
and a file channel removed (a tombstone). Every process computes the same effective list from both.
Each change bumps a version counter in the same transaction and is announced on
:data:`~shared.keys.CHANNELS_CHANGED`; processes also poll the version, so a lost announcement
delays a change by one poll at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError

from shared.config import ChannelConfig
from shared.keys import CHANNELS_CHANGED, ChannelKeys

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from redis.asyncio import Redis

__all__ = ("ChannelStore", "StoredChannel")

log = logging.getLogger(__name__)


class StoredChannel(msgspec.Struct, frozen=True):
    channel: ChannelConfig | None
    """``None``: the config file's channel of this name is removed."""
    updated_at: int


_stored_decoder = msgspec.json.Decoder(StoredChannel)


class ChannelStore:
    def __init__(self, redis: Redis, configured: Sequence[ChannelConfig]) -> None:
        self._redis = redis
        self._configured = list(configured)

    def configured(self, name: str) -> bool:
        return any(channel.name == name for channel in self._configured)

    async def version(self) -> int:
        return int(await self._redis.get(ChannelKeys.version) or 0)

    async def stored(self) -> dict[str, StoredChannel]:
        raw: dict[bytes, bytes] = await self._redis.hgetall(ChannelKeys.book)  # type: ignore[misc]
        out: dict[str, StoredChannel] = {}
        for name, value in raw.items():
            try:
                out[name.decode()] = _stored_decoder.decode(value)
            except msgspec.ValidationError:
                # Written by a newer gateway (a channel type this one lacks): leave it to that version.
                continue
        return out

    async def effective(self) -> list[ChannelConfig]:
        """The channels in force: the file's, with stored changes applied, in file order then new ones."""
        stored = await self.stored()
        channels: list[ChannelConfig] = []
        for channel in self._configured:
            change = stored.pop(channel.name, None)
            if change is None:
                channels.append(channel)
            elif change.channel is not None:
                channels.append(change.channel)
        channels.extend(change.channel for change in stored.values() if change.channel is not None)
        return channels

    async def put(self, channel: ChannelConfig) -> None:
        await self._write(channel.name, StoredChannel(channel, int(time.time())))

    async def remove(self, name: str) -> None:
        if self.configured(name):
            await self._write(name, StoredChannel(None, int(time.time())))
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(ChannelKeys.book, name)
            pipe.incr(ChannelKeys.version)
            await pipe.execute()
        await self._redis.publish(CHANNELS_CHANGED, name)

    async def _write(self, name: str, change: StoredChannel) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(ChannelKeys.book, name, msgspec.json.encode(change).decode())
            pipe.incr(ChannelKeys.version)
            await pipe.execute()
        await self._redis.publish(CHANNELS_CHANGED, name)

    async def follow(
        self,
        apply: Callable[[list[ChannelConfig]], Awaitable[None]],
        *,
        interval_s: float,
        wake: asyncio.Event | None = None,
    ) -> None:
        """Call ``apply`` with the effective channels now and after every change, until cancelled.

        Changes are noticed by polling the version every ``interval_s``, or at once when ``wake`` is set.
        """
        wake = wake or asyncio.Event()
        seen = None
        while True:
            wake.clear()
            try:
                version = await self.version()
                if version != seen:
                    await apply(await self.effective())
                    seen = version
            except RedisError as exc:
                log.warning("could not check the stored channels: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await wake.wait()
