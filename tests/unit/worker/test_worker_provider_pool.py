"""Swapping a worker's channels while generations run, and cooldowns expiring."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import fakeredis
import msgspec
import pytest

from shared.config import MockChannel
from shared.errors import UpstreamError
from shared.events import Finished
from shared.keys import ChannelKeys
from worker.cooldowns import CooldownNotice, Cooldowns
from worker.provider_pool import ProviderPool
from worker.providers import ProviderOutput, UpstreamCall
from worker.registry import ProviderRegistry


class _Tracked:
    def __init__(self) -> None:
        self.closed = False

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[ProviderOutput, None]:
        yield Finished("stop")

    async def aclose(self) -> None:
        self.closed = True


def _pool(created: list[_Tracked], channels: list[MockChannel]) -> ProviderPool:
    def create(_: MockChannel) -> _Tracked:
        created.append(_Tracked())
        return created[-1]

    registry = ProviderRegistry()
    registry.register(MockChannel, create)
    return ProviderPool(registry, channels)


async def test_unchanged_channels_keep_their_provider_and_changed_ones_close_after_use() -> None:
    created: list[_Tracked] = []
    kept, changed = MockChannel(name="kept", models=["k"]), MockChannel(name="changed", models=["c"])
    pool = _pool(created, [kept, changed])
    async with pool.use("changed") as in_use:
        await pool.replace([kept, msgspec.structs.replace(changed, reply="new")])
        assert len(created) == 3 and not created[0].closed
        assert in_use is created[1] and not created[1].closed, "a provider in use stays open"
    assert created[1].closed
    assert pool.catalog.routes("c")[0].channel.reply == "new"


async def test_removed_channels_leave_the_routing_table() -> None:
    created: list[_Tracked] = []
    pool = _pool(created, [MockChannel(name="a", models=["x"]), MockChannel(name="b", models=["y"])])
    await pool.replace([MockChannel(name="a", models=["x"])])
    assert "y" not in pool.catalog and created[1].closed
    with pytest.raises(UpstreamError) as caught:
        async with pool.use("b"):
            pass
    assert caught.value.code == "channel_removed", "retried on the next candidate like an unreachable upstream"
    await pool.aclose()
    assert created[0].closed


def test_cooldowns_expire_and_notices_from_other_workers_apply() -> None:
    now = [100.0]
    cooldowns = Cooldowns(clock=lambda: now[0])
    cooldowns.apply_encoded(msgspec.json.encode(CooldownNotice("c", "a", 5, "upstream_500: down")))
    cooldowns.apply_encoded(b"not json")
    assert cooldowns.cooling("c", "a") and not cooldowns.cooling("c", "b")
    now[0] = 106
    assert not cooldowns.cooling("c", "a")


async def test_a_starting_worker_takes_over_running_cooldowns(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    now = [100.0]
    await fake_redis.set(ChannelKeys.health("c", "a"), "rate_limited: slow down", px=4000)
    await fake_redis.set(ChannelKeys.health("c", "gone"), "expired", px=1)
    await asyncio.sleep(0.01)
    cooldowns = Cooldowns(clock=lambda: now[0])
    await cooldowns.load(fake_redis, [("c", "a"), ("c", "b"), ("c", "gone")])
    assert cooldowns.cooling("c", "a") and not cooldowns.cooling("c", "b") and not cooldowns.cooling("c", "gone")
    now[0] = 104.1
    assert not cooldowns.cooling("c", "a"), "for what was left of it, not a fresh cooldown"
