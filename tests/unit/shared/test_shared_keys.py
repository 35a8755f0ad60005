"""Key names: what one Lua script or transaction touches together shares a Redis Cluster slot."""

from __future__ import annotations

from redis.crc import key_slot

from shared import keys


def _slots(*names: str) -> set[int]:
    return {key_slot(name.encode()) for name in names}


def test_a_generations_keys_share_its_slot_and_generations_spread() -> None:
    generation = keys.GenerationKeys("g1")
    # claim.lua (job, lease, cancel), emit.lua (events, lease), renew.lua (lease, cancel)
    assert len(_slots(generation.job, generation.lease, generation.cancel, generation.events)) == 1
    response = keys.ResponseKeys("resp_1")
    assert _slots(response.record) == _slots(keys.GenerationKeys("resp_1").events)
    assert len(_slots(*(keys.GenerationKeys(f"g{n}").job for n in range(64)))) > 32, "hashed by the id"


def test_the_queues_keys_share_one_slot() -> None:
    # The enqueue's queue part and the wake-up list; arq's health key goes with them.
    assert len(_slots(keys.QUEUE, keys.READY, keys.WORKER_HEALTH)) == 1


def test_sessions_keys_and_channels_keys_each_share_a_slot() -> None:
    session = keys.SessionKeys("owner", "s1")
    # admit.lua (gate, fence), save_state.lua (state, gate)
    assert len(_slots(session.gate, session.fence, session.provider_state("chayns"))) == 1
    # access_limit.lua and settle.lua
    access = keys.AccessKeys("team")
    window = (access.requests, access.requests_total, access.tokens, access.tokens_total)
    assert len(_slots(*window, access.spent, access.spent_usd, access.usage)) == 1
    assert len(_slots(keys.AccessKeys.records, keys.AccessKeys.names)) == 1
    assert len(_slots(keys.ChannelKeys.book, keys.ChannelKeys.version)) == 1
    assert len(_slots(keys.ChannelKeys.running("c"), keys.ChannelKeys.health("c", "a"))) == 1
