"""The admin API over the request log: what was asked, what failed and why, what it cost.

    GET /admin/requests          newest first; filters key, model, channel, outcome, since, until (ISO-8601),
                                 paged by cursor (``limit`` ≤ 1000, ``cursor`` from the previous page);
                                 ``format=csv`` for a CSV export of the same page
    GET /admin/requests.csv      the same, as CSV
    GET /admin/requests/{id}     one generation (its id, or a Responses API response's id)
    GET /admin/usage             totals grouped by ``group_by`` (key, model, channel, day, hour) over
                                 ``since``/``until``, with the same filters: requests, errors, tokens, cost,
                                 p50/p95 time to first token

The rows are written by the recorder, so a generation shows here a moment after it ended (see
``/readyz`` for how far behind the recorder is). A bad date, cursor or group is a 400.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import logging
from collections.abc import Iterator
from typing import Any, get_args

import msgspec
from litestar import Request, Response, get
from litestar.params import FromPath
from sqlalchemy.exc import SQLAlchemyError

from api.admin._common import json_response
from api.openapi import documented
from api.state import gateway_state
from shared.errors import InvalidRequest, NotFound, ServiceUnavailable
from shared.ledger.queries import BadCursor, RequestFilters, RequestPage, UsageGroup, UsageRow
from shared.ledger.record import LedgerRecord

__all__ = ("HANDLERS", "get_request", "list_requests", "requests_csv", "usage")

log = logging.getLogger(__name__)

_MAX_LIMIT = 1000
_CSV_FIELDS = tuple(LedgerRecord.__struct_fields__)
_GROUPS: tuple[UsageGroup, ...] = get_args(UsageGroup)


class RequestList(msgspec.Struct, kw_only=True):
    data: list[LedgerRecord]
    next_cursor: str | None
    object: str = "list"


class UsageList(msgspec.Struct, kw_only=True):
    group_by: str
    data: list[UsageRow]
    object: str = "list"


def _time_ms(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"'{name}' must be an ISO-8601 date or time (e.g. 2026-12-01T00:00:00Z), not {value!r}.", param=name
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def _filters(request: Request[Any, Any, Any]) -> RequestFilters:
    query = request.query_params
    return RequestFilters(
        key=query.get("key"),
        model=query.get("model"),
        channel=query.get("channel"),
        outcome=query.get("outcome"),
        since_ms=_time_ms("since", query.get("since")),
        until_ms=_time_ms("until", query.get("until")),
    )


def _limit(request: Request[Any, Any, Any]) -> int:
    raw = request.query_params.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {_MAX_LIMIT}.", param="limit")
    return int(raw)


@contextlib.contextmanager
def _database() -> Iterator[None]:
    """A database that cannot answer (down, not migrated yet) is a 503, not a 500."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        log.warning("request log unavailable: %s", exc)
        raise ServiceUnavailable("The request log's database is unavailable.", code="ledger_unavailable") from None


async def _page(request: Request[Any, Any, Any]) -> RequestPage:
    filters, limit = _filters(request), _limit(request)
    try:
        with _database():
            return await gateway_state(request).ledger.list_requests(filters, request.query_params.get("cursor"), limit)
    except BadCursor:
        raise InvalidRequest("'cursor' is not one this API returned.", param="cursor") from None


def _csv(page: RequestPage) -> Response[bytes]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_FIELDS)
    for record in page.data:
        writer.writerow(["" if (value := getattr(record, field)) is None else value for field in _CSV_FIELDS])
    headers = {"content-disposition": 'attachment; filename="requests.csv"'}
    if page.next_cursor:
        headers["x-next-cursor"] = page.next_cursor
    return Response(out.getvalue().encode(), media_type="text/csv; charset=utf-8", headers=headers)


@get("/requests", operation_class=documented(RequestList))
async def list_requests(request: Request[Any, Any, Any]) -> Response[bytes]:
    page = await _page(request)
    if request.query_params.get("format") == "csv":
        return _csv(page)
    return json_response(RequestList(data=page.data, next_cursor=page.next_cursor))


@get("/requests.csv", include_in_schema=False)
async def requests_csv(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _csv(await _page(request))


@get("/requests/{generation_id:str}", operation_class=documented(LedgerRecord))
async def get_request(request: Request[Any, Any, Any], generation_id: FromPath[str]) -> Response[bytes]:
    with _database():
        record = await gateway_state(request).ledger.get_request(generation_id)
    if record is None:
        raise NotFound(f"No request '{generation_id}' in the log (yet).", code="request_not_found")
    return json_response(record)


@get("/usage", operation_class=documented(UsageList))
async def usage(request: Request[Any, Any, Any]) -> Response[bytes]:
    group_by: UsageGroup | str = request.query_params.get("group_by", "key")
    if group_by not in _GROUPS:
        raise InvalidRequest(f"'group_by' must be one of {', '.join(_GROUPS)}.", param="group_by")
    filters = _filters(request)
    with _database():
        rows = await gateway_state(request).ledger.usage(group_by, filters.since_ms, filters.until_ms, filters)
    return json_response(UsageList(group_by=group_by, data=rows))


HANDLERS = (list_requests, requests_csv, get_request, usage)
