"""The overview's rollups: histogram percentiles, and figures from a real (SQLite) request log."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.console.figures import HOUR_MS, OverviewFigures, Rollup, daily_usage
from shared.ledger.database import create_engine, database_url
from shared.ledger.migrate import migrate
from shared.ledger.record import LedgerRecord
from shared.ledger.writer import write_records
from shared.ledger_config import DatabaseConfig

NOW_MS = 1_800_000_000_000 + 30 * 60_000
"""Half past a clock hour."""


def test_percentiles_are_nearest_rank_over_the_buckets() -> None:
    rollup = Rollup(ttft={10: 50, 20: 45, 700: 5})
    assert rollup.percentile(0.5) == 10
    assert rollup.percentile(0.95) == 20
    assert rollup.percentile(0.96) == 700
    assert Rollup().percentile(0.5) is None


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url(DatabaseConfig(url=f"sqlite:///{tmp_path / 'ledger.db'}"), str(tmp_path)))
    await migrate(engine)
    yield engine
    await engine.dispose()


def _record(number: int, minutes_ago: float, **fields: object) -> LedgerRecord:
    values: dict[str, object] = {
        "model": "m1",
        "channel": "a",
        "outcome": "completed",
        "status": 200,
        "ttft_ms": 12.7,
        "cost_usd": 0.5,
        "input_tokens": 10,
        "output_tokens": 5,
        **fields,
    }
    return LedgerRecord(id=f"g{number}", request_id=f"r{number}", at_ms=int(NOW_MS - minutes_ago * 60_000), **values)  # type: ignore[arg-type]


async def test_windows_hours_models_and_channels(engine: AsyncEngine) -> None:
    await write_records(
        engine,
        [
            _record(1, 5),
            _record(2, 50, channel="b", ttft_ms=350.0),  # last 60 minutes, previous clock hour
            _record(3, 90, model="m2", outcome="failed", ttft_ms=None),
            _record(4, 23 * 60 + 10, cost_usd=1.0),  # 23 h ago: in the day, in the oldest hour
            _record(5, 25 * 60),  # outside the day
        ],
    )
    figures = OverviewFigures(engine, settle_ms=0)
    hour, day, hourly = await figures.compute(NOW_MS)
    assert hour.total.requests == 2 and hour.total.cost_usd == 1.0
    assert [row.group for row in hour.by_channel] == ["a", "b"]
    assert hour.total.ttft_p50_ms == 12 and hour.total.ttft_p95_ms == 350
    assert day.total.requests == 4 and day.total.errors == 1 and day.total.cost_usd == 2.5
    assert [(row.group, row.requests) for row in day.by_model] == [("m1", 3), ("m2", 1)]
    assert len(hourly) == 24 and hourly[-1][0] == NOW_MS - NOW_MS % HOUR_MS
    assert [figures.total.requests for _, figures in hourly if figures.total.requests] == [1, 2, 1]


async def test_a_final_hour_is_read_once_and_an_open_one_again(engine: AsyncEngine) -> None:
    figures = OverviewFigures(engine, settle_ms=40 * 60_000)
    await write_records(engine, [_record(1, 45), _record(2, 120)])
    await figures.compute(NOW_MS)
    # Late rows: the hour that ended 90 minutes ago is final (past the 40 minutes' settling) and is not
    # read again; the one that ended 30 minutes ago is still open, as is the current one.
    await write_records(engine, [_record(3, 119), _record(4, 44), _record(5, 1)])
    _, day, _ = await figures.compute(NOW_MS)
    assert day.total.requests == 4


async def test_a_keys_usage_per_day(engine: AsyncEngine) -> None:
    await write_records(
        engine,
        [
            _record(1, 5, key="k"),
            _record(2, 6, key="k", outcome="failed"),
            _record(3, 7, key="other"),
            _record(4, 26 * 60, key="k", cost_usd=2.0),
        ],
    )
    days = await daily_usage(engine, "k", since_ms=NOW_MS - 3 * 86_400_000)
    assert [(day.requests, day.errors, day.cost_usd) for day in days] == [(1, 0, 2.0), (2, 1, 1.0)]
    assert days[1].day == time.strftime("%Y-%m-%d", time.gmtime(NOW_MS // 1000))
    assert await daily_usage(engine, "k", since_ms=NOW_MS) == []
