"""RedisBatcher: commands of many tasks in one round trip, each answered as if sent alone."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from shared.batching import RedisBatcher


class _Counted:
    """Counts the round trips a batcher makes on ``redis`` (each takes a connection from the pool)."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis) -> None:
        self.executions = 0
        pool = redis.connection_pool
        real = pool.get_connection

        async def get_connection(*args: Any, **kwargs: Any) -> Any:
            self.executions += 1
            return await real(*args, **kwargs)

        pool.get_connection = get_connection  # type: ignore[method-assign]


async def test_commands_issued_together_share_one_round_trip(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await fake_redis.set("a", "1")
    counted = _Counted(fake_redis)
    batcher = RedisBatcher(fake_redis)
    answers = await asyncio.gather(*(batcher.command("EXISTS", key) for key in ["a", "b"] * 50))
    assert answers == [1, 0] * 50
    assert counted.executions == 1


async def test_a_sequence_of_commands_goes_in_order_in_one_round_trip(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    counted = _Counted(fake_redis)
    batcher = RedisBatcher(fake_redis)
    assert await batcher.commands(("SET", "k", "1"), ("INCR", "k"), ("GET", "k")) == [True, 2, b"2"]
    assert counted.executions == 1
    with pytest.raises(ResponseError):
        await batcher.commands(("SET", "s", "x"), ("INCR", "s"), ("SET", "after", "1"))
    assert await fake_redis.get("after") == b"1", "the commands after a failed one still ran, as in a pipeline"


async def test_answers_are_parsed_as_alone(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await fake_redis.xadd("log", {"e": "x"}, id="0-1")
    batcher = RedisBatcher(fake_redis)
    assert await batcher.command("XRANGE", "log", "0-1", "+", "COUNT", 10) == await fake_redis.xrange("log")


async def test_commands_arriving_during_a_round_trip_go_in_the_next(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    counted = _Counted(fake_redis)
    batcher = RedisBatcher(fake_redis)
    first = asyncio.ensure_future(batcher.command("INCR", "n"))
    await asyncio.sleep(0)  # the first batch is out
    later = [asyncio.ensure_future(batcher.command("INCR", "n")) for _ in range(10)]
    assert await first == 1
    assert sorted(await asyncio.gather(*later)) == list(range(2, 12))
    assert counted.executions == 2


async def test_a_script_redis_forgot_is_loaded_again(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    script = fake_redis.register_script("return redis.call('INCR', KEYS[1]) + tonumber(ARGV[1])")
    batcher = RedisBatcher(fake_redis)
    assert await batcher.script(script, ["n"], [10]) == 11
    await fake_redis.script_flush()
    # The call Redis refused runs again after its batch: the GET beside it saw the count before.
    assert await asyncio.gather(batcher.script(script, ["n"], [10]), batcher.command("GET", "n")) == [12, b"1"]
    assert await batcher.command("GET", "n") == b"2"


async def test_an_error_reaches_only_its_caller(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await fake_redis.set("text", "x")
    batcher = RedisBatcher(fake_redis)
    wrong, right = await asyncio.gather(
        batcher.command("XRANGE", "text", "-", "+"), batcher.command("GET", "text"), return_exceptions=True
    )
    assert isinstance(wrong, ResponseError)
    assert right == b"x"


async def test_a_lost_connection_fails_the_whole_batch_and_the_next_one_goes_out(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    batcher = RedisBatcher(fake_redis)
    pool = fake_redis.connection_pool
    real = pool.get_connection

    async def broken(*args: Any, **kwargs: Any) -> Any:
        pool.get_connection = real  # type: ignore[method-assign]
        raise RedisConnectionError("gone")

    pool.get_connection = broken  # type: ignore[method-assign]
    answers = await asyncio.gather(*(batcher.command("PING") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(answer, RedisConnectionError) for answer in answers)
    assert await batcher.command("PING") is True


async def test_a_cancelled_caller_leaves_the_others_answered(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    batcher = RedisBatcher(fake_redis)
    leaving = asyncio.ensure_future(batcher.command("INCR", "n"))
    staying = asyncio.ensure_future(batcher.command("INCR", "n"))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == 2
    with pytest.raises(asyncio.CancelledError):
        await leaving
