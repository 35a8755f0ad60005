"""The Overview page: traffic, latency, errors and spend over the last hour and day, by model and channel.

The page is a frame; its figures come from ``/console/api/overview``, which it polls every few seconds,
so it stays live without a reload. Everything but "in flight" and "queued" is read from the ledger
(finished generations); in flight is what this API instance relays now, queued what no worker took yet.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.response import Template

from api.console.render import page
from api.metrics import REGISTRY
from api.state import GatewayState, gateway_state
from shared.keys import QUEUE
from shared.ledger import UsageRow

__all__ = ("HANDLERS", "Overview", "WindowFigures")

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS


class WindowFigures(msgspec.Struct, kw_only=True):
    requests: int
    errors: int
    requests_per_s: float
    error_rate: float
    cost_usd: float
    by_model: list[UsageRow]
    by_channel: list[UsageRow]


class Overview(msgspec.Struct, kw_only=True):
    now_ms: int
    in_flight: int
    """Generations this API instance is relaying now."""
    queued: int
    """Generations waiting for a worker, across the deployment."""
    hour: WindowFigures
    day: WindowFigures
    hourly: list[UsageRow]
    """The last 24 hours, one row per clock hour (``group`` is the hour's start), with TTFT p50/p95."""


_encoder = msgspec.json.Encoder()


async def _window(state: GatewayState, since_ms: int, length_s: int) -> WindowFigures:
    by_model = await state.ledger.usage("model", since_ms=since_ms)
    by_channel = await state.ledger.usage("channel", since_ms=since_ms)
    requests = sum(row.requests for row in by_model)
    errors = sum(row.errors for row in by_model)
    return WindowFigures(
        requests=requests,
        errors=errors,
        requests_per_s=round(requests / length_s, 4),
        error_rate=round(errors / requests, 4) if requests else 0.0,
        cost_usd=round(sum(row.cost_usd for row in by_model), 6),
        by_model=by_model,
        by_channel=by_channel,
    )


async def overview_figures(state: GatewayState, now_ms: int) -> Overview:
    return Overview(
        now_ms=now_ms,
        in_flight=int(REGISTRY.get_sample_value("aiapi_generations_in_flight") or 0),
        queued=int(await state.redis.zcard(QUEUE)),
        hour=await _window(state, now_ms - _HOUR_MS, 3600),
        day=await _window(state, now_ms - _DAY_MS, 86400),
        hourly=await state.ledger.usage("hour", since_ms=now_ms - _DAY_MS + _HOUR_MS),
    )


@get("/")
async def overview(request: Request[Any, Any, Any]) -> Template:
    return page(request, "overview")


@get("/overview")
async def overview_page(request: Request[Any, Any, Any]) -> Template:
    return page(request, "overview")


@get("/api/overview")
async def overview_data(request: Request[Any, Any, Any]) -> Response[bytes]:
    figures = await overview_figures(gateway_state(request), int(time.time() * 1000))
    return Response(_encoder.encode(figures), media_type="application/json")


HANDLERS = (overview, overview_page, overview_data)
