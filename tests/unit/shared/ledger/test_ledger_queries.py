"""The request log's queries on SQLite: filters, keyset pages, one request, usage groups and percentiles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.ledger.queries import BadCursor, LedgerQueries, RequestFilters
from shared.ledger.record import LedgerRecord
from shared.ledger.writer import write_records
from tests.ledger_databases import ledger_engine

HOUR_MS = 3_600_000
DAY0 = 1_780_000_000_000 - 1_780_000_000_000 % (24 * HOUR_MS)


def _record(n: int, **changes: object) -> LedgerRecord:
    fields: dict[str, object] = {
        "id": f"gen-{n:03d}",
        "request_id": f"req-{n}",
        "at_ms": DAY0 + n * 60_000,
        "key": "team-a" if n % 2 else "team-b",
        "model": "m1",
        "channel": "c1",
        "outcome": "completed",
        "status": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_usd": 0.001,
        "ttft_ms": float(n),
        "total_ms": 2.0 * n,
        "attempts": 1,
    }
    fields.update(changes)
    return LedgerRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with ledger_engine("sqlite", tmp_path) as engine:
        yield engine


async def test_pages_walk_every_matching_row_newest_first(engine: AsyncEngine) -> None:
    await write_records(engine, [_record(n) for n in range(1, 26)])
    queries = LedgerQueries(engine)
    seen: list[str] = []
    cursor = None
    while True:
        page = await queries.list_requests(RequestFilters(key="team-a"), cursor, limit=4)
        seen += [record.id for record in page.data]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"gen-{n:03d}" for n in range(25, 0, -2)]


async def test_filters_and_time_range(engine: AsyncEngine) -> None:
    await write_records(engine, [_record(1), _record(2, outcome="failed", status=502), _record(3, model="m2")])
    queries = LedgerQueries(engine)
    failed = await queries.list_requests(RequestFilters(outcome="failed"))
    assert [record.id for record in failed.data] == ["gen-002"]
    ranged = await queries.list_requests(RequestFilters(since_ms=DAY0 + 120_000, until_ms=DAY0 + 180_000))
    assert [record.id for record in ranged.data] == ["gen-002"]
    assert [r.id for r in (await queries.list_requests(RequestFilters(model="m2"))).data] == ["gen-003"]


async def test_get_request_returns_the_whole_record(engine: AsyncEngine) -> None:
    record = _record(7, error_code="x", session_id="s", output="hi", estimated=True)
    await write_records(engine, [record])
    queries = LedgerQueries(engine)
    assert await queries.get_request("gen-007") == record
    assert await queries.get_request("nope") is None


async def test_usage_by_day_hour_and_key(engine: AsyncEngine) -> None:
    records = [_record(n) for n in range(1, 21)]
    records.append(_record(99, at_ms=DAY0 + 25 * HOUR_MS, outcome="cancelled", ttft_ms=None, cost_usd=0.5))
    await write_records(engine, records)
    queries = LedgerQueries(engine)
    days = await queries.usage("day")
    assert [(row.group, row.requests, row.errors) for row in days] == [
        ("2026-05-28T00:00:00Z", 20, 0),
        ("2026-05-29T00:00:00Z", 1, 1),
    ]
    first = days[0]
    assert (first.input_tokens, first.output_tokens) == (200, 100)
    assert first.cost_usd == pytest.approx(0.02)
    assert (first.ttft_p50_ms, first.ttft_p95_ms) == (10.0, 19.0)
    assert days[1].ttft_p50_ms is None
    keys = await queries.usage("key", since_ms=DAY0, until_ms=DAY0 + HOUR_MS)
    assert [(row.group, row.requests) for row in keys] == [("team-a", 10), ("team-b", 10)]
    hours = await queries.usage("hour", filters=RequestFilters(key="team-a"))
    assert [row.requests for row in hours] == [10, 1]


async def test_a_foreign_cursor_is_refused(engine: AsyncEngine) -> None:
    with pytest.raises(BadCursor):
        await LedgerQueries(engine).list_requests(RequestFilters(), cursor="garbage")


async def test_usage_takes_bounds_from_the_filters_too(engine: AsyncEngine) -> None:
    await write_records(engine, [_record(n) for n in range(1, 11)])
    queries = LedgerQueries(engine)
    [row] = await queries.usage("model", filters=RequestFilters(since_ms=DAY0 + 6 * 60_000))
    assert row.requests == 5
    [row] = await queries.usage("model", None, DAY0 + 3 * 60_000, RequestFilters(since_ms=DAY0 + 2 * 60_000))
    assert row.requests == 1
