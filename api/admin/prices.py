"""The admin API for prices: override the config's ``[prices]`` table at runtime.

    GET    /admin/prices           the effective table, each price with its source (config or admin)
    PUT    /admin/prices/{model}   set the price of a model a channel serves (body: input, output,
                                   cached_input; USD per 1M tokens, none negative)
    DELETE /admin/prices/{model}   drop the override: the configured price (or none) applies again

Workers pick a change up within a few seconds; generations ending after that are costed at it.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, Response, delete, get, put
from litestar.params import FromPath

from api.admin._common import Deleted, json_response
from api.intake.decoding import decode_body
from api.openapi import documented
from api.state import gateway_state
from shared.errors import InvalidRequest, NotFound
from shared.ledger.prices import PriceBook
from shared.ledger_config import Price

__all__ = ("HANDLERS", "delete_price", "list_prices", "put_price")

_ONE = "/prices/{model:str}"


class PriceView(msgspec.Struct, kw_only=True):
    model: str
    input: float
    output: float
    cached_input: float | None
    source: Literal["config", "admin"]
    object: Literal["price"] = "price"


class PriceList(msgspec.Struct):
    data: list[PriceView]
    object: Literal["list"] = "list"


_price_decoder = msgspec.json.Decoder(Price)


def _book(request: Request[Any, Any, Any]) -> PriceBook:
    state = gateway_state(request)
    return PriceBook(state.redis, state.settings.prices)


def _view(model: str, price: Price, source: Literal["config", "admin"]) -> PriceView:
    return PriceView(
        model=model, input=price.input, output=price.output, cached_input=price.cached_input, source=source
    )


@get("/prices", operation_class=documented(PriceList))
async def list_prices(request: Request[Any, Any, Any]) -> Response[bytes]:
    book = _book(request)
    overrides = await book.overrides()
    table = {model: _view(model, price, "config") for model, price in book.configured.items()}
    table |= {model: _view(model, price, "admin") for model, price in overrides.items()}
    return json_response(PriceList([table[model] for model in sorted(table)]))


@put(_ONE, status_code=200, operation_class=documented(PriceView, body=Price))
async def put_price(request: Request[Any, Any, Any], model: FromPath[str]) -> Response[bytes]:
    price = decode_body(_price_decoder, await request.body())
    if model not in gateway_state(request).catalog:
        raise InvalidRequest(f"No channel serves the model '{model}'.", code="model_not_found", param="model")
    await _book(request).put(model, price)
    return json_response(_view(model, price, "admin"))


@delete(_ONE, status_code=200, operation_class=documented(Deleted))
async def delete_price(request: Request[Any, Any, Any], model: FromPath[str]) -> Response[bytes]:
    if not await _book(request).remove(model):
        raise NotFound(f"No price override for '{model}'.", code="price_not_found")
    return json_response(Deleted(model))


HANDLERS = (list_prices, put_price, delete_price)
