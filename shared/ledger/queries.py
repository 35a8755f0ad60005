"""Reading the request log: filtered pages of requests, one request, and usage grouped for reports.

The admin API and the operator's console both read through :class:`LedgerQueries`, built on the
database's ``AsyncEngine``. Pages are keyset-paged on ``(at_ms, id)``, newest first, so a page is as
cheap deep in the log as at its start, and rows arriving meanwhile do not shift it. Percentiles of the
time to first token are computed here from the sorted values, as SQLite has no percentile function.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from sqlalchemy import ColumnElement, and_, case, func, or_, select

from shared.ledger.record import LedgerRecord
from shared.ledger.schema import request_log

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ("BadCursor", "LedgerQueries", "RequestFilters", "RequestPage", "UsageGroup", "UsageRow")

UsageGroup = Literal["key", "model", "channel", "day", "hour"]

_MS_PER = {"day": 86_400_000, "hour": 3_600_000}
_RECORD_FIELDS = tuple(LedgerRecord.__struct_fields__)


class RequestFilters(msgspec.Struct, kw_only=True):
    """Which rows to read; every field left ``None`` matches all. Times are unix milliseconds,
    ``since_ms`` inclusive and ``until_ms`` exclusive."""

    key: str | None = None
    model: str | None = None
    channel: str | None = None
    outcome: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


class RequestPage(msgspec.Struct, kw_only=True):
    data: list[LedgerRecord]
    next_cursor: str | None
    """Pass it back for the next (older) page; ``None`` on the last one."""


class UsageRow(msgspec.Struct, kw_only=True):
    group: str | None
    """The key, model or channel name, or the hour's or day's start (ISO-8601, UTC)."""
    requests: int
    errors: int
    """Requests that did not complete (failed, cancelled, …)."""
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None


class BadCursor(ValueError):
    """A cursor this module did not make."""


def _conditions(filters: RequestFilters) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    for name in ("key", "model", "channel", "outcome"):
        value = getattr(filters, name)
        if value is not None:
            found.append(request_log.c[name] == value)
    if filters.since_ms is not None:
        found.append(request_log.c.at_ms >= filters.since_ms)
    if filters.until_ms is not None:
        found.append(request_log.c.at_ms < filters.until_ms)
    return found


def _encode_cursor(record: LedgerRecord) -> str:
    return f"{record.at_ms}:{record.id}"


def _decode_cursor(cursor: str) -> tuple[int, str]:
    at, _, generation_id = cursor.partition(":")
    if not at.isdigit() or not generation_id:
        raise BadCursor(f"invalid cursor {cursor!r}")
    return int(at), generation_id


def _record(row: Any) -> LedgerRecord:
    return LedgerRecord(**{name: row._mapping[name] for name in _RECORD_FIELDS})


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return None
    rank = max(1, math.ceil(round(fraction * len(values), 9)))
    return float(values[rank - 1])


class LedgerQueries:
    """Typed reads of the request log; one instance per process, sharing the engine's pool."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def list_requests(self, filters: RequestFilters, cursor: str | None = None, limit: int = 50) -> RequestPage:
        """Rows matching ``filters``, newest first, ``limit`` at most, from ``cursor`` on.

        Raises :class:`BadCursor` for a cursor that is not one of ours.
        """
        query = select(request_log).where(*_conditions(filters))
        if cursor is not None:
            at, generation_id = _decode_cursor(cursor)
            query = query.where(
                or_(request_log.c.at_ms < at, and_(request_log.c.at_ms == at, request_log.c.id < generation_id))
            )
        query = query.order_by(request_log.c.at_ms.desc(), request_log.c.id.desc()).limit(limit + 1)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        records = [_record(row) for row in rows[:limit]]
        more = len(rows) > limit
        return RequestPage(data=records, next_cursor=_encode_cursor(records[-1]) if more and records else None)

    async def get_request(self, generation_id: str) -> LedgerRecord | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(request_log).where(request_log.c.id == generation_id))).first()
        return _record(row) if row is not None else None

    async def usage(
        self,
        group_by: UsageGroup,
        since_ms: int | None = None,
        until_ms: int | None = None,
        filters: RequestFilters | None = None,
    ) -> list[UsageRow]:
        """Totals per key, model, channel, hour or day over ``[since_ms, until_ms)``, with TTFT p50/p95.

        A bound left ``None`` is taken from ``filters``."""
        base = filters or RequestFilters()
        bounds = msgspec.structs.replace(
            base,
            since_ms=base.since_ms if since_ms is None else since_ms,
            until_ms=base.until_ms if until_ms is None else until_ms,
        )
        conditions = _conditions(bounds)
        group: ColumnElement[Any] = (
            request_log.c.at_ms // _MS_PER[group_by] if group_by in _MS_PER else request_log.c[group_by]
        )
        totals = (
            select(
                group.label("g"),
                func.count().label("requests"),
                func.sum(case((request_log.c.outcome != "completed", 1), else_=0)).label("errors"),
                func.sum(request_log.c.input_tokens).label("input_tokens"),
                func.sum(request_log.c.output_tokens).label("output_tokens"),
                func.sum(request_log.c.cached_tokens).label("cached_tokens"),
                func.sum(request_log.c.cost_usd).label("cost_usd"),
            )
            .where(*conditions)
            .group_by(group)
            .order_by(group)
        )
        latencies = (
            select(group.label("g"), request_log.c.ttft_ms)
            .where(*conditions, request_log.c.ttft_ms.is_not(None))
            .order_by(group, request_log.c.ttft_ms)
        )
        ttfts: dict[Any, list[float]] = {}
        async with self.engine.connect() as connection:
            rows = (await connection.execute(totals)).all()
            async for row in await connection.stream(latencies):
                ttfts.setdefault(row.g, []).append(row.ttft_ms)
        return [
            UsageRow(
                group=_label(group_by, row.g),
                requests=int(row.requests),
                errors=int(row.errors or 0),
                input_tokens=int(row.input_tokens or 0),
                output_tokens=int(row.output_tokens or 0),
                cached_tokens=int(row.cached_tokens or 0),
                cost_usd=round(float(row.cost_usd or 0), 9),
                ttft_p50_ms=_percentile(ttfts.get(row.g, []), 0.5),
                ttft_p95_ms=_percentile(ttfts.get(row.g, []), 0.95),
            )
            for row in rows
        ]


def _label(group_by: UsageGroup, value: Any) -> str | None:
    if value is None or group_by not in _MS_PER:
        return None if value is None else str(value)
    start = datetime.datetime.fromtimestamp(int(value) * _MS_PER[group_by] / 1000, tz=datetime.UTC)
    return start.isoformat().replace("+00:00", "Z")
