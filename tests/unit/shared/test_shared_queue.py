from __future__ import annotations

import fakeredis
from arq.jobs import deserialize_job

from shared import keys
from shared.batching import RedisBatcher
from shared.generation import GenerationRequest, Message, TextPart, decode_request
from shared.queue import deserialize_job as deserializer
from shared.queue import enqueue_generation


async def test_enqueue_writes_an_arq_job_and_wakes_a_worker(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    request = GenerationRequest("gen1", "req", "m", [Message("user", [TextPart("hi")])], "reply", 1)
    await enqueue_generation(RedisBatcher(fake_redis), request, expires_s=30)
    assert await fake_redis.zscore(keys.QUEUE, "gen1") is not None
    assert 0 < await fake_redis.pttl(keys.GenerationKeys("gen1").job) <= 30000
    job = deserialize_job(await fake_redis.get(keys.GenerationKeys("gen1").job), deserializer=deserializer)
    assert job.function == keys.JOB_FUNCTION
    assert decode_request(job.args[0]) == request
    assert await fake_redis.lrange(keys.READY, 0, -1) == [b"gen1"]
    assert 0 < await fake_redis.pttl(keys.READY) <= 30000, "wake-ups nobody takes do not pile up"
