"""Usage accounts of API keys: written by the worker that ran a generation, read by the admin API.

The worker records every generation it runs for a key, however it ended (finished, failed, cancelled,
the client gone, a background response nobody watched), because only the worker sees them all. The same
round trip adds the generation's cost to the key's spend (in micro-dollars, in total and per month,
which admission checks against the key's dollar budgets) and appends its record to the ledger stream. When the
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

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import RedisError

from shared.keys import LEDGER_STREAM, AccessKeys
from shared.scripts import Scripts

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from shared.events import Usage

__all__ = ("METRICS", "MICRO_USD", "WINDOW_S", "Billing", "LedgerEntry", "UsageLedger", "estimate_tokens")

log = logging.getLogger(__name__)

WINDOW_S = 60
"""The per-minute limits' window."""
METRICS = ("requests", "errors", "estimated", "input_tokens", "output_tokens", "cached_tokens")
_CHARS_PER_TOKEN = 4
MICRO_USD = 1_000_000
"""Spend is counted in Redis in micro-dollars: integers, so concurrent additions are exact."""


class Billing(msgspec.Struct, frozen=True):
    """Whose account a generation is charged to, and what was reserved for it at admission."""

    key: str
    """The API key's name."""
    model: str
    """The model as the client named it."""
    reserved_tokens: int = 0
    reserved_at: int = 0
    """Unix second of the reservation: the bucket it went into."""


class LedgerEntry(msgspec.Struct, frozen=True):
    """An encoded ledger record, and the bound of the stream it is appended to."""

    data: bytes
    max_len: int


def estimate_tokens(characters: int) -> int:
    return math.ceil(characters / _CHARS_PER_TOKEN)


class UsageLedger:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._scripts = Scripts(redis)

    async def record(
        self,
        billing: Billing | None,
        usage: Usage,
        *,
        failed: bool,
        estimated: bool,
        now_s: int,
        cost_usd: float = 0.0,
        entry: LedgerEntry | None = None,
    ) -> None:
        """Account one generation to its key (if any), settle its reservation, add its cost to the key's
        spend, and append ``entry`` to the ledger stream: one round trip. Never raises: usage is not
        worth an error (a record lost to a Redis outage is logged)."""
        # Both calls are queued before either is awaited: one round trip, shared with other generations'.
        calls: list[asyncio.Future[Any]] = []
        if billing is not None:
            calls.append(self._settle(billing, usage, failed, estimated, now_s, cost_usd))
        if entry is not None:
            xadd = ("XADD", LEDGER_STREAM, "MAXLEN", "~", entry.max_len, "*", "r", entry.data)
            calls.append(self._scripts.batcher.command(*xadd))
        try:
            await asyncio.gather(*calls)
        except (RedisError, OSError) as exc:
            log.warning("usage of generation on %s not recorded: %s", billing.model if billing else "-", exc)

    def _settle(
        self,
        billing: Billing,
        usage: Usage,
        failed: bool,
        estimated: bool,
        now_s: int,
        cost_usd: float,
    ) -> asyncio.Future[Any]:
        keys = AccessKeys(billing.key)
        tokens = usage.input_tokens + usage.output_tokens
        in_window = now_s - billing.reserved_at < WINDOW_S
        # Inside the window, correct the reservation's bucket; after it, the reservation has left the window
        # and the real figure is counted now.
        window_change = tokens - billing.reserved_tokens if in_window else tokens
        month = time.strftime("%Y-%m", time.gmtime(now_s))
        return self._scripts.batcher.script(
            self._scripts.settle,
            [keys.usage, keys.tokens, keys.spent, keys.spent_usd, keys.tokens_total],
            [
                billing.model,
                1,
                int(failed),
                int(estimated),
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_tokens,
                billing.reserved_at if in_window else now_s,
                window_change,
                WINDOW_S + 1,
                tokens,
                round(cost_usd * MICRO_USD),
                month,
            ],
        )

    async def release(self, billing: Billing, *, now_s: int) -> None:
        """Give back the reservation of a request that will never run. Never raises."""
        if not billing.reserved_tokens or now_s - billing.reserved_at >= WINDOW_S:
            return
        keys = AccessKeys(billing.key)
        # A settlement that counts nothing but the reservation given back (so the window's total follows).
        uncounted = (0,) * len(METRICS)
        window = (billing.reserved_at, -billing.reserved_tokens, WINDOW_S + 1)
        try:
            await self._scripts.batcher.script(
                self._scripts.settle,
                [keys.usage, keys.tokens, keys.spent, keys.spent_usd, keys.tokens_total],
                [billing.model, *uncounted, *window, 0, 0, ""],
            )
        except (RedisError, OSError) as exc:
            log.warning("reservation of key %s not released: %s", billing.key, exc)
