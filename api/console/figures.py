"""The Overview's figures, kept cheap with a large request log: per-hour rollups, and one short scan per refresh.

Summing a day of the log on every poll costs a scan of every row (seconds with 100k rows on a small
machine). Instead each clock hour is rolled up once, by model and channel, with a histogram of the
time to first token, and kept in this process; a refresh reads only the rows of the last hour and of
the hours that may still receive rows (a row is written when its generation ends, stamped with its
start, so an hour is final once the longest generation started in it must have ended). Percentiles
come from the histogram: exact to 1 ms below 100 ms, to 10 ms below 1 s, to 100 ms above. The page is
answered from the last figures at once; a refresh they need runs in the background.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import ColumnElement, Integer, case, cast, func, select
from sqlalchemy.exc import SQLAlchemyError

from shared.ledger.schema import request_log

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = (
    "LEDGER_DOWN",
    "Computed",
    "DayUsage",
    "Figures",
    "OverviewFigures",
    "Rollup",
    "UsageFigures",
    "daily_usage",
    "summarize",
)

log = logging.getLogger(__name__)

LEDGER_DOWN = (SQLAlchemyError, OSError)
"""What reading a request log that cannot answer (its database down, or not migrated yet) raises: the
console shows the rest of its pages and says so, rather than failing."""
HOUR_MS = 3_600_000
_DAY_MS = 24 * HOUR_MS
_REFRESH_S = 2.0
"""Figures older than this are refreshed (in the background) when asked for."""


class Rollup(msgspec.Struct, kw_only=True):
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    ttft: dict[int, int] = msgspec.field(default_factory=dict)
    """Bucket's lower bound in ms → generations whose first token came in that bucket."""

    def add(self, other: Rollup) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd
        for bucket, count in other.ttft.items():
            self.ttft[bucket] = self.ttft.get(bucket, 0) + count

    def percentile(self, fraction: float) -> float | None:
        """Nearest-rank percentile of the histogram (a bucket's lower bound)."""
        total = sum(self.ttft.values())
        if not total:
            return None
        rank, seen = max(1, math.ceil(fraction * total)), 0
        for bucket in sorted(self.ttft):
            seen += self.ttft[bucket]
            if seen >= rank:
                return float(bucket)
        raise AssertionError("unreachable: the ranks add up to the total")


class UsageFigures(msgspec.Struct, kw_only=True):
    group: str | None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None


Cells = dict[tuple[str, str | None], Rollup]
"""(model, channel) → rollup."""


class Figures(msgspec.Struct, kw_only=True):
    total: UsageFigures
    by_model: list[UsageFigures]
    by_channel: list[UsageFigures]


Computed = tuple[Figures, Figures, list[tuple[int, Figures]]]
"""The last 60 minutes, the last 24 clock hours, and each of those hours (by its start, unix ms)."""


def _figures(group: str | None, rollup: Rollup) -> UsageFigures:
    return UsageFigures(
        group=group,
        requests=rollup.requests,
        errors=rollup.errors,
        input_tokens=rollup.input_tokens,
        output_tokens=rollup.output_tokens,
        cost_usd=round(rollup.cost_usd, 6),
        ttft_p50_ms=rollup.percentile(0.5),
        ttft_p95_ms=rollup.percentile(0.95),
    )


def summarize(cells: Iterable[Cells]) -> Figures:
    """Totals, by model and by channel, of the given cells merged."""
    total, models, channels = Rollup(), dict[str, Rollup](), dict[str | None, Rollup]()
    for part in cells:
        for (model, channel), rollup in part.items():
            total.add(rollup)
            models.setdefault(model, Rollup()).add(rollup)
            channels.setdefault(channel, Rollup()).add(rollup)
    return Figures(
        total=_figures(None, total),
        by_model=[_figures(name, rollup) for name, rollup in sorted(models.items())],
        by_channel=[_figures(name, rollup) for name, rollup in sorted(channels.items(), key=lambda c: c[0] or "")],
    )


def _bucket() -> ColumnElement[Any]:
    ttft = request_log.c.ttft_ms
    return case(
        (ttft.is_(None), -1),
        (ttft < 100, cast(ttft, Integer)),
        (ttft < 1000, cast(ttft / 10, Integer) * 10),
        else_=cast(ttft / 100, Integer) * 100,
    )


class OverviewFigures:
    """One per API process: the closed hours' rollups, and the last computation."""

    def __init__(self, engine: AsyncEngine, settle_ms: int) -> None:
        self._engine = engine
        self._settle_ms = settle_ms
        """How long after its end an hour may still receive rows (the longest a generation may run)."""
        self._closed: dict[int, Cells] = {}
        self._lock = asyncio.Lock()
        self._last: tuple[float, Computed] | None = None
        self._refreshing: asyncio.Task[None] | None = None

    async def _scan(self, since_ms: int, recent_ms: int) -> dict[tuple[int, bool], Cells]:
        """Rows from ``since_ms`` on, rolled up per (clock hour, started at or after ``recent_ms``)."""
        bucket = _bucket().label("bucket")
        hour = (request_log.c.at_ms - request_log.c.at_ms % HOUR_MS).label("hour")
        recent = case((request_log.c.at_ms >= recent_ms, 1), else_=0).label("recent")
        query = (
            select(
                hour,
                recent,
                request_log.c.model,
                request_log.c.channel,
                bucket,
                func.count().label("requests"),
                func.sum(case((request_log.c.outcome != "completed", 1), else_=0)).label("errors"),
                func.sum(request_log.c.input_tokens).label("input_tokens"),
                func.sum(request_log.c.output_tokens).label("output_tokens"),
                func.sum(request_log.c.cost_usd).label("cost_usd"),
            )
            .where(request_log.c.at_ms >= since_ms)
            .group_by(hour, recent, request_log.c.model, request_log.c.channel, bucket)
        )
        parts: dict[tuple[int, bool], Cells] = {}
        async with self._engine.connect() as connection:
            for row in (await connection.execute(query)).all():
                cells = parts.setdefault((int(row.hour), bool(row.recent)), {})
                cells.setdefault((row.model, row.channel), Rollup()).add(
                    Rollup(
                        requests=int(row.requests),
                        errors=int(row.errors or 0),
                        input_tokens=int(row.input_tokens or 0),
                        output_tokens=int(row.output_tokens or 0),
                        cost_usd=float(row.cost_usd or 0),
                        ttft={int(row.bucket): int(row.requests)} if row.bucket >= 0 else {},
                    )
                )
        return parts

    async def compute(self, now_ms: int) -> Computed:
        """Figures as of ``now_ms``, from the rollups kept and one scan of the hours not yet final."""
        current = now_ms - now_ms % HOUR_MS
        starts = [current - hours * HOUR_MS for hours in range(23, -1, -1)]
        for start in [start for start in self._closed if start < starts[0]]:
            del self._closed[start]
        open_from = min([start for start in starts if start not in self._closed], default=current)
        parts = await self._scan(min(open_from, now_ms - HOUR_MS), now_ms - HOUR_MS)
        hours: list[Cells] = []
        for start in starts:
            cells = self._closed.get(start)
            if cells is None:
                cells = {}
                for recent in (False, True):
                    for key, rollup in parts.get((start, recent), {}).items():
                        cells.setdefault(key, Rollup()).add(rollup)
                if start + HOUR_MS + self._settle_ms < now_ms:
                    self._closed[start] = cells
            hours.append(cells)
        last_hour = [cells for (_, recent), cells in parts.items() if recent]
        return (
            summarize(last_hour),
            summarize(hours),
            [(start, summarize([cells])) for start, cells in zip(starts, hours, strict=True)],
        )

    async def _refresh(self) -> None:
        try:
            self._last = (time.monotonic(), await self.compute(int(time.time() * 1000)))
        except LEDGER_DOWN as exc:
            log.warning("the overview's figures could not be computed: %s", exc)
        finally:
            self._refreshing = None

    async def figures(self) -> Computed:
        """The last 60 minutes, the last 24 clock hours (this one included), and each of those hours.

        Only the first call waits for the computation; later ones get the last figures at once and, when
        those are older than :data:`_REFRESH_S`, start a refresh in the background.
        """
        if self._last is None:
            async with self._lock:
                if self._last is None:
                    self._last = (time.monotonic(), await self.compute(int(time.time() * 1000)))
            return self._last[1]
        if time.monotonic() - self._last[0] >= _REFRESH_S and self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh())
        return self._last[1]


class DayUsage(msgspec.Struct, kw_only=True):
    day: str
    """The UTC day, ``YYYY-MM-DD``."""
    start_ms: int
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


async def daily_usage(engine: AsyncEngine, key: str, since_ms: int) -> list[DayUsage]:
    """One key's totals per UTC day from ``since_ms`` on: one aggregate over the key's index, no row fetched."""
    day = (request_log.c.at_ms - request_log.c.at_ms % _DAY_MS).label("day")
    query = (
        select(
            day,
            func.count().label("requests"),
            func.sum(case((request_log.c.outcome != "completed", 1), else_=0)).label("errors"),
            func.sum(request_log.c.input_tokens).label("input_tokens"),
            func.sum(request_log.c.output_tokens).label("output_tokens"),
            func.sum(request_log.c.cost_usd).label("cost_usd"),
        )
        .where(request_log.c.key == key, request_log.c.at_ms >= since_ms)
        .group_by(day)
        .order_by(day)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        DayUsage(
            day=time.strftime("%Y-%m-%d", time.gmtime(int(row.day) // 1000)),
            start_ms=int(row.day),
            requests=int(row.requests),
            errors=int(row.errors or 0),
            input_tokens=int(row.input_tokens or 0),
            output_tokens=int(row.output_tokens or 0),
            cost_usd=round(float(row.cost_usd or 0), 6),
        )
        for row in rows
    ]
