"""An API instance's presence key: kept alive while it runs, withdrawn when it stops."""

from __future__ import annotations

import asyncio

import fakeredis

from api.presence import Presence
from shared.keys import presence_key


async def test_presence_is_kept_and_withdrawn(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    presence = Presence(fake_redis, "aiapi:relay:me", ttl_s=0.3)
    presence.start()
    await asyncio.sleep(0.5)  # longer than the TTL: it has been renewed
    assert 0 < await fake_redis.pttl(presence_key("aiapi:relay:me")) <= 300
    await presence.stop()
    assert not await fake_redis.exists(presence_key("aiapi:relay:me"))
