"""The worker's ledger record: one per generation however it ends, priced, and charged to the key's spend."""

from __future__ import annotations

import fakeredis

from shared.config import LedgerConfig, MockChannel, Price, Settings
from shared.generation import GenerationRequest, Message, TextPart
from shared.keys import LEDGER_STREAM, AccessKeys
from shared.ledger.record import LedgerRecord, decode_record
from shared.usage import Billing
from tests.runners import build_runner


def _request(generation_id: str, model: str = "mock-1") -> GenerationRequest:
    return GenerationRequest(
        generation_id,
        "req-1",
        model,
        [Message("user", [TextPart("hello there")])],
        "relay",
        1,
        billing=Billing("team-a", model),
    )


def _settings(**ledger: object) -> Settings:
    return Settings(
        channels=[MockChannel(name="mock", models=["mock-1"], reply="one two three")],
        prices={"mock-1": Price(input=1_000_000, output=2_000_000)},
        ledger=LedgerConfig(**ledger),  # type: ignore[arg-type]
    )


async def _records(redis: fakeredis.FakeAsyncRedis) -> list[LedgerRecord]:
    return [decode_record(fields[b"r"]) for _, fields in await redis.xrange(LEDGER_STREAM)]


async def test_a_completed_generation_is_recorded_priced_and_charged(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await build_runner(fake_redis, _settings()).run(_request("g1"))
    [record] = await _records(fake_redis)
    assert (record.id, record.request_id, record.key, record.model) == ("g1", "req-1", "team-a", "mock-1")
    assert (record.channel, record.account, record.attempts, record.failovers) == ("mock", "default", 1, 0)
    assert (record.outcome, record.status, record.error_code) == ("completed", 200, None)
    assert (record.input_tokens, record.output_tokens) == (2, 3)
    # 2 input tokens at $1 each, 3 output tokens at $2 each
    assert record.cost_usd == 8.0
    assert record.ttft_ms is not None and 0 < record.ttft_ms <= record.total_ms
    assert record.request_body is None and record.output is None
    spent = await fake_redis.hgetall(AccessKeys("team-a").spent_usd)
    assert spent[b"total"] == b"8000000" and len(spent) == 2


async def test_a_failed_generation_is_recorded_with_its_error(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await build_runner(fake_redis, _settings()).run(_request("g2", model="unknown"))
    [record] = await _records(fake_redis)
    assert (record.outcome, record.status, record.error_code) == ("failed", 404, "model_not_found")
    assert record.channel is None and record.attempts == 0 and record.ttft_ms is None
    assert record.error_message


async def test_bodies_are_kept_only_when_asked_and_cut_at_the_cap(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await build_runner(fake_redis, _settings(store_bodies=True, max_body_bytes=7)).run(_request("g3"))
    [record] = await _records(fake_redis)
    assert record.output == "one two"
    assert record.request_body is not None and len(record.request_body) == 7


async def test_the_ledger_can_be_turned_off(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await build_runner(fake_redis, _settings(enabled=False)).run(_request("g4"))
    assert await _records(fake_redis) == []
    assert await fake_redis.hget(AccessKeys("team-a").spent_usd, "total") == b"8000000"
