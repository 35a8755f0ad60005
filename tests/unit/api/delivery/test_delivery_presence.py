"""An API instance's presence key: kept alive while it runs, withdrawn when it stops."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
from redis.exceptions import ConnectionError as RedisConnectionError

from api.delivery.presence import Presence
from shared.keys import presence_key


async def test_presence_is_kept_and_withdrawn(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    presence = Presence(fake_redis, "aiapi:relay:me", ttl_s=0.3)
    presence.start()
    key = presence_key("aiapi:relay:me")
    for _ in range(200):  # until it has been renewed at least once (its TTL climbs back up)
        first = await fake_redis.pttl(key)
        if first > 0:
            break
        await asyncio.sleep(0.01)
    for _ in range(200):
        renewed = await fake_redis.pttl(key)
        if renewed > first:
            break
        await asyncio.sleep(0.01)
    assert first < renewed <= 300
    await presence.stop()
    assert not await fake_redis.exists(presence_key("aiapi:relay:me"))


async def test_presence_is_said_again_soon_after_redis_failed(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    real_set, failures = fake_redis.set, [RedisConnectionError("restarting")]

    async def flaky_set(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_set(*args, **kwargs)

    fake_redis.set = flaky_set  # type: ignore[method-assign]
    presence = Presence(fake_redis, "aiapi:relay:me", ttl_s=60)  # renewed every 20 s when all is well
    presence.start()
    await asyncio.sleep(0.8)
    assert await fake_redis.exists(presence_key("aiapi:relay:me"))
    await presence.stop()
