"""The Lua scripts, on fakeredis: lease, fencing, emit, claim."""

from __future__ import annotations

import fakeredis

from shared.keys import GenerationKeys
from shared.scripts import Scripts


async def test_lease_acquire_renew_release_and_fencing(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    scripts, keys = Scripts(fake_redis), GenerationKeys("g1")
    lease_keys = [keys.lease, keys.cancel]
    assert await scripts.acquire(keys=lease_keys, args=["a", 5000]) == 1
    assert await scripts.acquire(keys=lease_keys, args=["b", 5000]) == 0
    assert await scripts.renew(keys=lease_keys, args=["a", 5000]) == 1
    assert await scripts.renew(keys=lease_keys, args=["b", 5000]) == 0
    await fake_redis.set(keys.cancel, 1)
    assert await scripts.renew(keys=lease_keys, args=["a", 5000]) == 2
    assert await scripts.release(keys=[keys.lease], args=["b"]) == 0
    assert await scripts.release(keys=[keys.lease], args=["a"]) == 1
    assert await scripts.acquire(keys=lease_keys, args=["c", 5000]) == -1


async def test_emit_appends_publishes_and_refuses_when_fenced(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    scripts, keys = Scripts(fake_redis), GenerationKeys("g2")
    await fake_redis.set(keys.lease, "owner")
    pubsub = fake_redis.pubsub()
    await pubsub.subscribe("relay")
    assert (
        await scripts.emit(
            keys=[keys.events, keys.lease], args=["owner", 60000, "relay", 0, b"[a,b]", 0, b"a", 1, b"b"]
        )
        == 1
    )
    entries = await fake_redis.xrange(keys.events)
    assert [(entry_id, fields[b"e"]) for entry_id, fields in entries] == [(b"0-1", b"a"), (b"0-2", b"b")]
    assert 0 < await fake_redis.pttl(keys.events) <= 60000
    messages = [await pubsub.get_message(timeout=1) for _ in range(2)]
    assert messages[1] is not None and messages[1]["data"] == b"[a,b]"
    await fake_redis.set(keys.lease, "usurper")
    assert await scripts.emit(keys=[keys.events, keys.lease], args=["owner", 60000, "relay", 0, b"[c]", 2, b"c"]) == 0
    assert await fake_redis.xlen(keys.events) == 2
    await fake_redis.set(keys.lease, "owner")
    assert await scripts.emit(keys=[keys.events, keys.lease], args=["owner", 60000, "relay", 1, b"[c]", 2, b"c"]) == 1
    assert await fake_redis.xlen(keys.events) == 3
    assert not await fake_redis.exists(keys.lease), "the last batch drops the lease"
    await pubsub.aclose()


async def test_emit_sent_again_appends_only_what_the_log_lacks(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    scripts, keys = Scripts(fake_redis), GenerationKeys("g3")
    await fake_redis.set(keys.lease, "owner")
    emit = {"keys": [keys.events, keys.lease]}
    assert await scripts.emit(**emit, args=["owner", 60000, "relay", 0, b"[a,b]", 0, b"a", 1, b"b"]) == 1
    # The answer was lost with the connection: the worker sends the batch again, with what came since.
    assert await scripts.emit(**emit, args=["owner", 60000, "relay", 0, b"[a,b,c]", 0, b"a", 1, b"b", 2, b"c"]) == 1
    entries = await fake_redis.xrange(keys.events)
    assert [(entry_id, fields[b"e"]) for entry_id, fields in entries] == [
        (b"0-1", b"a"),
        (b"0-2", b"b"),
        (b"0-3", b"c"),
    ]


async def test_claim_takes_a_queued_job_once_with_its_payload_and_lease(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    scripts = Scripts(fake_redis)
    for job in ("job", "stopped"):
        await fake_redis.set(GenerationKeys(job).job, f"{job} payload")

    async def claim(job: str) -> list[bytes | int] | None:
        keys = GenerationKeys(job)
        answer: list[bytes | int] | None = await scripts.claim(
            keys=[keys.job, keys.lease, keys.cancel], args=["token", 10000]
        )
        return answer

    assert await claim("job") == [b"job payload", 1]
    assert await fake_redis.get(GenerationKeys("job").lease) == b"token", "the lease is taken with the job"
    assert not await fake_redis.exists(GenerationKeys("job").job), "nothing of a claimed job is left to clean up"
    assert await claim("job") is None, "a job is claimed once"
    assert await claim("expired") is None
    await fake_redis.set(GenerationKeys("stopped").cancel, 1)
    assert await claim("stopped") == [b"stopped payload", -1], "cancelled before it started"
    assert not await fake_redis.exists(GenerationKeys("stopped").lease)
