"""The ledger on both databases with the same test bodies: SQLite and the local PostgreSQL (skipped with a
message when it is not reachable), with the recorder on the session's real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.keys import LEDGER_STREAM
from shared.ledger.migrate import migrate, migrate_locked
from shared.ledger.queries import LedgerQueries, RequestFilters
from shared.ledger.record import LedgerRecord, encode_record
from shared.ledger.recorder import Recorder
from shared.ledger.writer import delete_before, write_records
from shared.ledger_config import LedgerConfig
from tests.ledger_databases import ledger_engine

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % DAY_MS


def _record(n: int, **changes: object) -> LedgerRecord:
    fields: dict[str, object] = {
        "id": f"gen-{n:04d}",
        "request_id": f"req-{n}",
        "at_ms": T0 + n * 1000,
        "key": ("a", "b", "c")[n % 3],
        "model": "m",
        "channel": "c1",
        "outcome": "failed" if n % 10 == 0 else "completed",
        "status": 502 if n % 10 == 0 else 200,
        "input_tokens": n,
        "output_tokens": 2,
        "cost_usd": 0.25,
        "ttft_ms": float(n % 100),
        "total_ms": 100.0,
        "attempts": 1,
        "request_body": "x" * 10,
    }
    fields.update(changes)
    return LedgerRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with ledger_engine(request.param, tmp_path) as engine:
        yield engine


async def test_writes_are_idempotent_and_round_trip(engine: AsyncEngine) -> None:
    records = [_record(n) for n in range(1, 101)]
    assert await write_records(engine, records) == 100
    assert await write_records(engine, [*records[:40], _record(101)]) == 1
    queries = LedgerQueries(engine)
    assert await queries.get_request("gen-0007") == records[6]
    page = await queries.list_requests(RequestFilters(key="a"), limit=1000)
    assert len(page.data) == 33 and page.next_cursor is None


async def test_pages_and_usage_agree_on_both_databases(engine: AsyncEngine) -> None:
    await write_records(engine, [_record(n) for n in range(1, 301)])
    queries = LedgerQueries(engine)
    seen, cursor = [], None
    while True:
        page = await queries.list_requests(RequestFilters(outcome="completed"), cursor, 17)
        seen += [record.id for record in page.data]
        if (cursor := page.next_cursor) is None:
            break
    assert len(seen) == len(set(seen)) == 270 and seen == sorted(seen, reverse=True)
    [day] = await queries.usage("day")
    assert (day.requests, day.errors, day.output_tokens) == (300, 30, 600)
    assert day.cost_usd == pytest.approx(75.0)
    assert (day.ttft_p50_ms, day.ttft_p95_ms) == (49.0, 94.0)
    by_key = await queries.usage("key", since_ms=T0, until_ms=T0 + 31_000)
    assert [(row.group, row.requests) for row in by_key] == [("a", 10), ("b", 10), ("c", 10)]


async def test_retention_and_a_second_migration(engine: AsyncEngine) -> None:
    await write_records(engine, [_record(1, at_ms=T0 - 40 * DAY_MS), _record(2)])
    assert await delete_before(engine, T0 - 30 * DAY_MS) == 1
    await migrate(engine)  # up to date: nothing to do
    ids = [r.id for r in (await LedgerQueries(engine).list_requests(RequestFilters())).data]
    assert ids == ["gen-0002"]


async def test_the_recorder_drains_a_real_stream(engine: AsyncEngine, redis: Redis) -> None:
    await migrate_locked(engine, redis)
    for n in range(1, 1201):
        await redis.xadd(LEDGER_STREAM, {"r": encode_record(_record(n))})
    recorder = Recorder(redis, engine, LedgerConfig(retention_days=0), consumer="it", block_ms=10)
    await recorder.start()
    while await recorder.step():
        pass
    assert await redis.xlen(LEDGER_STREAM) == 0
    [day] = await LedgerQueries(engine).usage("day")
    assert day.requests == 1200


async def test_overlong_values_are_cut_to_their_columns(engine: AsyncEngine) -> None:
    long = _record(1, model="m" * 300, request_id="r" * 200, client="c" * 999, error_message="e" * 5000)
    assert await write_records(engine, [long]) == 1
    stored = await LedgerQueries(engine).get_request("gen-0001")
    assert stored is not None
    assert (len(stored.model), len(stored.request_id), len(stored.client)) == (256, 128, 256)
    assert stored.error_message == "e" * 5000
