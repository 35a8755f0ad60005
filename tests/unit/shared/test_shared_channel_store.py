"""Channels stored by the admin API, laid over the config file's."""

from __future__ import annotations

import asyncio

import fakeredis

from shared.channel_store import ChannelStore
from shared.config import ChannelConfig, MockChannel, OpenAIChannel

FILE = [MockChannel(name="mock", models=["mock-1"]), MockChannel(name="other", models=["o"])]


async def test_stored_changes_replace_remove_and_add(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store = ChannelStore(fake_redis, FILE)
    assert await store.effective() == FILE and await store.version() == 0
    replaced = MockChannel(name="mock", models=["mock-2"])
    added = OpenAIChannel(name="new", base_url="http://up", models=["gpt"], api_key="sk")
    await store.put(replaced)
    await store.put(added)
    await store.remove("other")
    assert await store.effective() == [replaced, added]
    assert await store.version() == 3
    await store.remove("new")
    assert await store.effective() == [replaced]
    assert "other" in await store.stored(), "removing a file channel leaves a tombstone"


async def test_follow_applies_now_and_after_each_change(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store = ChannelStore(fake_redis, FILE)
    seen: list[list[ChannelConfig]] = []
    wake = asyncio.Event()

    async def apply(channels: list[ChannelConfig]) -> None:
        seen.append(channels)

    follower = asyncio.create_task(store.follow(apply, interval_s=30, wake=wake))
    await asyncio.sleep(0.05)
    await store.remove("other")
    wake.set()
    await asyncio.sleep(0.05)
    follower.cancel()
    assert seen == [FILE, FILE[:1]]
