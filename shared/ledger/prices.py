"""What a model's tokens cost: the config's price table, overridden at runtime through the admin API.

Overrides live in one Redis hash (:data:`shared.keys.PRICES`); each worker reads it every few seconds,
off the request path, and prices every generation it ends from memory. A model with no price costs 0.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError

from shared.keys import PRICES
from shared.ledger_config import Price

if TYPE_CHECKING:
    from collections.abc import Mapping

    from redis.asyncio import Redis

__all__ = ("PriceBook",)


_decoder = msgspec.json.Decoder(Price)
_encoder = msgspec.json.Encoder()


class PriceBook:
    """The effective prices: the configured ones, and the admin API's over them."""

    def __init__(self, redis: Redis, configured: Mapping[str, Price]) -> None:
        self._redis = redis
        self.configured = dict(configured)
        self.prices = dict(configured)

    def cost(self, model: str, input_tokens: int, output_tokens: int, cached_tokens: int) -> float:
        price = self.prices.get(model)
        return price.cost(input_tokens, output_tokens, cached_tokens) if price is not None else 0.0

    async def overrides(self) -> dict[str, Price]:
        stored: dict[bytes, bytes] = await self._redis.hgetall(PRICES)  # type: ignore[misc]
        return {model.decode(): _decoder.decode(data) for model, data in stored.items()}

    async def refresh(self) -> dict[str, Price]:
        """Read the overrides now; the effective table."""
        self.prices = self.configured | await self.overrides()
        return self.prices

    async def put(self, model: str, price: Price) -> None:
        await self._redis.hset(PRICES, model, _encoder.encode(price).decode())  # type: ignore[misc]
        self.prices[model] = price

    async def remove(self, model: str) -> bool:
        """Drop the override of ``model`` (its configured price applies again); ``False`` if there was none."""
        removed = bool(await self._redis.hdel(PRICES, model))  # type: ignore[misc]
        await self.refresh()
        return removed

    async def follow(self, interval_s: float) -> None:
        """Refresh every ``interval_s`` until cancelled."""
        while True:
            with contextlib.suppress(RedisError, OSError):
                await self.refresh()
            await asyncio.sleep(interval_s)
