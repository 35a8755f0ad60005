"""Usage accounts of API keys: written by the worker that ran a generation, read by the admin API.

The worker records every generation it runs for a key, however it ended (finished, failed, cancelled,
the client gone, a background response nobody watched), because only the worker sees them all. When the
upstream reported no usage (a cancelled stream usually has none yet) the tokens are estimated from the
text, about four characters a token, and the request is counted as ``estimated``.

At admission the API reserved an estimate of the prompt (``Billing.reserved_tokens``) in the key's token
window, so tpm limits hold while a generation runs. The record settles that reservation: the difference
to the real figures goes into the reservation's own one-second bucket while it is still inside the
one-minute window, so the window's total becomes exact. A request refused after its admission (409 at
the session gate, the queue unreachable) never reaches a worker: the API gives its reservation back
(:meth:`UsageLedger.release`), or a client retrying 409s would use up its own tpm.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError

from shared.keys import AccessKeys

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from shared.events import Usage

__all__ = ("METRICS", "WINDOW_S", "Billing", "UsageLedger", "estimate_tokens")

log = logging.getLogger(__name__)

WINDOW_S = 60
"""The per-minute limits' window."""
METRICS = ("requests", "errors", "estimated", "input_tokens", "output_tokens", "cached_tokens")
_CHARS_PER_TOKEN = 4


class Billing(msgspec.Struct, frozen=True):
    """Whose account a generation is charged to, and what was reserved for it at admission."""

    key: str
    """The API key's name."""
    model: str
    """The model as the client named it."""
    reserved_tokens: int = 0
    reserved_at: int = 0
    """Unix second of the reservation: the bucket it went into."""


def estimate_tokens(characters: int) -> int:
    return math.ceil(characters / _CHARS_PER_TOKEN)


class UsageLedger:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def record(self, billing: Billing, usage: Usage, *, failed: bool, estimated: bool, now_s: int) -> None:
        """Account one generation and settle its reservation. Never raises: usage is not worth an error."""
        keys = AccessKeys(billing.key)
        amounts = {
            "requests": 1,
            "errors": int(failed),
            "estimated": int(estimated),
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
        }
        tokens = usage.input_tokens + usage.output_tokens
        in_window = now_s - billing.reserved_at < WINDOW_S
        # Inside the window, correct the reservation's bucket; after it, the reservation has left the window
        # and the real figure is counted now.
        window_change = tokens - billing.reserved_tokens if in_window else tokens
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for metric, amount in amounts.items():
                    if amount:
                        pipe.hincrby(keys.usage, f"{metric}:{billing.model}", amount)
                if window_change:
                    pipe.hincrby(keys.tokens, str(billing.reserved_at if in_window else now_s), window_change)
                    pipe.expire(keys.tokens, WINDOW_S + 1)
                if tokens:
                    pipe.incrby(keys.spent, tokens)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("usage of key %s on %s not recorded: %s", billing.key, billing.model, exc)

    async def release(self, billing: Billing, *, now_s: int) -> None:
        """Give back the reservation of a request that will never run. Never raises."""
        if not billing.reserved_tokens or now_s - billing.reserved_at >= WINDOW_S:
            return
        try:
            tokens = AccessKeys(billing.key).tokens
            await self._redis.hincrby(tokens, str(billing.reserved_at), -billing.reserved_tokens)  # type: ignore[misc]
        except (RedisError, OSError) as exc:
            log.warning("reservation of key %s not released: %s", billing.key, exc)
