"""The recorder on fakeredis and SQLite: drains the stream, survives a database outage and a dead consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import fakeredis
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.keys import LEDGER_GROUP, LEDGER_STREAM
from shared.ledger.backlog import backlog
from shared.ledger.database import create_engine
from shared.ledger.migrate import migrate
from shared.ledger.queries import LedgerQueries, RequestFilters
from shared.ledger.record import LedgerRecord, encode_record
from shared.ledger.recorder import Recorder
from shared.ledger_config import LedgerConfig
from tests.ledger_databases import ledger_engine


def _record(n: int) -> LedgerRecord:
    return LedgerRecord(
        id=f"g{n}", request_id="r", at_ms=1_000 + n, model="m", outcome="completed", status=200, attempts=1
    )


async def _append(redis: fakeredis.FakeAsyncRedis, numbers: range) -> None:
    for n in numbers:
        await redis.xadd(LEDGER_STREAM, {"r": encode_record(_record(n))})


async def _ids(engine: AsyncEngine) -> set[str]:
    page = await LedgerQueries(engine).list_requests(RequestFilters(), limit=1000)
    return {record.id for record in page.data}


async def _drain(recorder: Recorder) -> None:
    await recorder.start()
    while await recorder.step():
        pass


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with ledger_engine("sqlite", tmp_path) as engine:
        yield engine


def _recorder(redis: fakeredis.FakeAsyncRedis, engine: AsyncEngine, name: str = "rec-1", **options: float) -> Recorder:
    config = LedgerConfig(batch_size=7, retention_days=0)
    return Recorder(redis, engine, config, consumer=name, block_ms=10, backoff_s=0.01, **options)  # type: ignore[arg-type]


async def test_records_are_written_once_and_leave_the_stream(
    fake_redis: fakeredis.FakeAsyncRedis, engine: AsyncEngine
) -> None:
    await _append(fake_redis, range(20))
    await _append(fake_redis, range(5))  # delivered twice: written once
    recorder = _recorder(fake_redis, engine)
    await _drain(recorder)
    assert await _ids(engine) == {f"g{n}" for n in range(20)}
    assert (await backlog(fake_redis)).records == 0


async def test_a_dead_consumers_records_are_taken_over(
    fake_redis: fakeredis.FakeAsyncRedis, engine: AsyncEngine
) -> None:
    await fake_redis.xgroup_create(LEDGER_STREAM, LEDGER_GROUP, id="0", mkstream=True)
    await _append(fake_redis, range(10))
    # A recorder read these, then died before writing them.
    await fake_redis.xreadgroup(LEDGER_GROUP, "dead", {LEDGER_STREAM: ">"}, count=10)
    recorder = _recorder(fake_redis, engine, claim_idle_s=0)
    await _drain(recorder)
    assert await _ids(engine) == {f"g{n}" for n in range(10)}


async def test_a_database_outage_delays_records_and_loses_none(
    fake_redis: fakeredis.FakeAsyncRedis, tmp_path: Path
) -> None:
    # The database has no schema yet: every write fails until the migration below.
    engine = create_engine(make_url(f"sqlite+aiosqlite:///{tmp_path / 'late.db'}"))
    try:
        await _append(fake_redis, range(30))
        recorder = _recorder(fake_redis, engine)
        drained = asyncio.create_task(_drain(recorder))
        await asyncio.sleep(0.2)
        assert not drained.done()
        assert (await backlog(fake_redis)).records == 30
        await migrate(engine)
        await asyncio.wait_for(drained, 10)
        assert await _ids(engine) == {f"g{n}" for n in range(30)}
    finally:
        await engine.dispose()
