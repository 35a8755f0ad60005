"""The Overview page: traffic, latency, errors and spend over the last hour and day, by model and channel.

The page is a frame; its figures come from ``/console/api/overview``, which it polls every few seconds,
so it stays live without a reload. Everything but "in flight" and "queued" is read from the ledger
(finished generations) through :mod:`api.console.figures`; in flight is what this API instance relays
now, queued what no worker took yet.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.response import Template

from api.console.figures import LEDGER_DOWN, Figures, OverviewFigures, UsageFigures
from api.console.render import page
from api.metrics import generations_in_flight
from api.state import gateway_state
from shared.keys import QUEUE

__all__ = ("HANDLERS", "Overview", "WindowFigures", "overview_figures")

_STATE = "console_figures"
_SETTLE_MARGIN_MS = 60_000


class WindowFigures(msgspec.Struct, kw_only=True):
    requests: int
    errors: int
    requests_per_s: float
    error_rate: float
    cost_usd: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    by_model: list[UsageFigures]
    by_channel: list[UsageFigures]


class Overview(msgspec.Struct, kw_only=True):
    now_ms: int
    in_flight: int
    """Generations this API instance is relaying now."""
    queued: int
    """Generations waiting for a worker, across the deployment."""
    hour: WindowFigures
    """The last 60 minutes."""
    day: WindowFigures
    """The last 24 clock hours, this one included."""
    hourly: list[UsageFigures]
    """Those 24 hours, one row each (``group`` is the hour's start, ISO 8601)."""


_encoder = msgspec.json.Encoder()


def _window(figures: Figures, length_s: int) -> WindowFigures:
    total = figures.total
    return WindowFigures(
        requests=total.requests,
        errors=total.errors,
        requests_per_s=round(total.requests / length_s, 4),
        error_rate=round(total.errors / total.requests, 4) if total.requests else 0.0,
        cost_usd=total.cost_usd,
        ttft_p50_ms=total.ttft_p50_ms,
        ttft_p95_ms=total.ttft_p95_ms,
        by_model=figures.by_model,
        by_channel=figures.by_channel,
    )


def _hour_label(start_ms: int) -> str:
    return datetime.datetime.fromtimestamp(start_ms / 1000, tz=datetime.UTC).isoformat().replace("+00:00", "Z")


def overview_figures(request: Request[Any, Any, Any]) -> OverviewFigures:
    """This process's rollups, made on first use (the ledger's engine exists only once the app started)."""
    state = gateway_state(request)
    figures: OverviewFigures | None = getattr(request.app.state, _STATE, None)
    if figures is None:
        settle_ms = int(state.settings.worker.job_timeout_s * 1000) + _SETTLE_MARGIN_MS
        figures = OverviewFigures(state.ledger.engine, settle_ms)
        setattr(request.app.state, _STATE, figures)
    return figures


@get("/")
async def overview(request: Request[Any, Any, Any]) -> Template:
    return page(request, "overview")


@get("/overview")
async def overview_page(request: Request[Any, Any, Any]) -> Template:
    return page(request, "overview")


@get("/api/overview")
async def overview_data(request: Request[Any, Any, Any]) -> Response[bytes]:
    now_ms = int(time.time() * 1000)
    try:
        hour, day, hourly = await overview_figures(request).figures()
    except LEDGER_DOWN:
        return Response(b'{"error": "ledger_unavailable"}', status_code=503, media_type="application/json")
    figures = Overview(
        now_ms=now_ms,
        in_flight=generations_in_flight(),
        queued=int(await gateway_state(request).redis.zcard(QUEUE)),
        hour=_window(hour, 3600),
        day=_window(day, 86400),
        hourly=[msgspec.structs.replace(figures.total, group=_hour_label(start)) for start, figures in hourly],
    )
    return Response(_encoder.encode(figures), media_type="application/json")


HANDLERS = (overview, overview_page, overview_data)
