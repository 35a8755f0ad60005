"""The Requests page: the request log (the ledger) with filters, and one request's page.

A request's page shows its ledger row as a timeline (claimed, first token, done), its attempts, tokens,
cost and error, and, while Redis still has them, its raw events and its stored Responses record.
"""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
from litestar import Request, get
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from api.console.figures import LEDGER_DOWN
from api.console.render import page
from api.state import gateway_state
from shared.keys import GenerationKeys, ResponseKeys
from shared.ledger.queries import BadCursor, RequestFilters
from shared.ledger.record import LedgerRecord

__all__ = ("HANDLERS",)

_DOWN = "The request log's database is unavailable."
_PAGE = 50
_EVENTS_SHOWN = 500
_FILTERS = ("key", "model", "channel", "outcome")


class Step(msgspec.Struct):
    label: str
    at: str
    offset_ms: float | None


def _clock(at_ms: float) -> str:
    return datetime.datetime.fromtimestamp(at_ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _timeline(record: LedgerRecord) -> list[Step]:
    steps = [Step("claimed by a worker", _clock(record.at_ms), 0.0)]
    if record.ttft_ms is not None:
        steps.append(Step("first token", _clock(record.at_ms + record.ttft_ms), record.ttft_ms))
    steps.append(Step(f"done ({record.outcome})", _clock(record.at_ms + record.total_ms), record.total_ms))
    return steps


@get("/requests")
async def requests(request: Request[Any, Any, Any], cursor: FromQuery[str | None] = None) -> Template:
    chosen = {name: value for name in _FILTERS if (value := request.query_params.get(name, "").strip())}
    filters = msgspec.convert(chosen, RequestFilters)
    try:
        found = await gateway_state(request).ledger.list_requests(filters, cursor, _PAGE)
    except BadCursor:
        return page(
            request, "requests", 400, rows=[], filters=chosen, next_cursor=None, error="That page link is broken."
        )
    except LEDGER_DOWN:
        return page(request, "requests", 503, rows=[], filters=chosen, next_cursor=None, error=_DOWN)
    rows = [(record, _clock(record.at_ms)) for record in found.data]
    return page(request, "requests", rows=rows, filters=chosen, next_cursor=found.next_cursor)


@get("/requests/{generation:str}")
async def request_detail(request: Request[Any, Any, Any], generation: FromPath[str]) -> Template:
    state = gateway_state(request)
    try:
        record = await state.ledger.get_request(generation)
        error = None
    except LEDGER_DOWN:
        record, error = None, _DOWN
    entries = await state.redis.xrange(GenerationKeys(generation).events, count=_EVENTS_SHOWN)
    events = [fields[b"e"].decode(errors="replace") for _, fields in entries]
    stored: bytes | None = await state.redis.get(ResponseKeys(generation).record)
    if record is None and not events:
        status = 503 if error else 404
        return page(
            request,
            "request",
            status,
            record=None,
            generation=generation,
            events=[],
            stored=None,
            steps=[],
            error=error,
        )
    return page(
        request,
        "request",
        record=record,
        generation=generation,
        steps=_timeline(record) if record else [],
        events=events,
        stored=stored.decode(errors="replace") if stored else None,
        error=error,
    )


HANDLERS = (requests, request_detail)
