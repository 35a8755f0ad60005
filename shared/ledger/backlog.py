"""How far behind the recorder is: records in the ledger stream not yet in the database, and the oldest's age.

The recorder deletes each record from the stream once the database has it, so what the stream holds is
exactly the backlog; the oldest entry's id carries the millisecond it was appended.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from shared.keys import LEDGER_STREAM

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ("Backlog", "backlog")


class Backlog(msgspec.Struct):
    records: int
    """Records waiting for the database."""
    oldest_age_s: float
    """How long the oldest of them has waited (0 when none)."""


async def backlog(redis: Redis) -> Backlog:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xlen(LEDGER_STREAM)
        pipe.xrange(LEDGER_STREAM, count=1)
        length, first = await pipe.execute()
    if not first:
        return Backlog(int(length), 0.0)
    appended_ms = int(first[0][0].split(b"-")[0])
    return Backlog(int(length), max(0.0, round(time.time() - appended_ms / 1000, 3)))
