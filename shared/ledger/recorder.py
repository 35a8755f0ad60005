"""The recorder: drains the ledger stream into the database, losing nothing when the database is away.

Delivery is at least once, writing is idempotent. Recorders read the stream in one consumer group
(:data:`shared.keys.LEDGER_GROUP`), so each record goes to one of them; a record is acknowledged and
deleted from the stream only after the transaction that wrote it committed. A database that refuses
or does not answer is retried with backoff, holding the batch, while new records wait in the stream
(bounded by ``[ledger] stream_max_len``). A recorder that dies leaves its records pending; another
takes them over with ``XAUTOCLAIM`` once they have been idle for ``claim_idle_s``. Either way a record may
be written twice, which the primary key (the generation id) turns into a no-op.

The recorder also deletes rows older than ``[ledger] retention_days``, once an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.exc import SQLAlchemyError

from shared.keys import LEDGER_GROUP, LEDGER_STREAM
from shared.ledger.backlog import backlog
from shared.ledger.metrics import BACKLOG, BACKLOG_AGE, WRITE_FAILURES, WRITES
from shared.ledger.record import LedgerRecord, decode_record
from shared.ledger.writer import delete_before, write_records

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from shared.ledger_config import LedgerConfig

__all__ = ("Recorder",)

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
_RETENTION_EVERY_S = 3600.0
_MAX_BACKOFF_S = 30.0


class Recorder:
    def __init__(
        self,
        redis: Redis,
        engine: AsyncEngine,
        config: LedgerConfig,
        *,
        consumer: str,
        block_ms: int = 1000,
        claim_idle_s: float = 60.0,
        backoff_s: float = 0.5,
        flush_interval_s: float = 0.0,
    ) -> None:
        self._redis = redis
        self._engine = engine
        self._config = config
        self.consumer = consumer
        self._block_ms = block_ms
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._backoff_s = backoff_s
        self._flush_interval_s = flush_interval_s
        self._own_pending = True
        """Read this consumer's pending entries (claimed or left by a crash) before new ones."""
        self._next_claim = 0.0
        self._next_retention = 0.0

    async def start(self) -> None:
        """Create the consumer group if it is not there yet (reading from the stream's start)."""
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists already
            await self._redis.xgroup_create(LEDGER_STREAM, LEDGER_GROUP, id="0", mkstream=True)

    async def run(self) -> None:
        """Record until cancelled."""
        await self.start()
        log.info("recorder %s draining %s", self.consumer, LEDGER_STREAM)
        while True:
            try:
                if 0 < await self.step() < self._config.batch_size:
                    # Let records gather: one transaction for many, and CPU left to the hot path.
                    await asyncio.sleep(self._flush_interval_s)
            except (RedisError, OSError) as exc:
                log.warning("recorder: Redis unavailable (%s); retrying", exc)
                # A batch written but not acknowledged is still pending here: read it again first.
                self._own_pending = True
                await asyncio.sleep(self._backoff_s)

    async def step(self) -> int:
        """One round: housekeeping when due, then read one batch and write it; how many records it read."""
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self._claim_idle_ms / 2000
            await self._claim_abandoned()
        if now >= self._next_retention:
            self._next_retention = now + _RETENTION_EVERY_S
            await self._apply_retention()
        entries = await self._read()
        if entries:
            await self._write(entries)
        await self._report()
        return len(entries)

    async def _claim_abandoned(self) -> None:
        """Take over what consumers that went quiet left pending."""
        start = "0-0"
        while True:
            reply: Any = await self._redis.xautoclaim(
                LEDGER_STREAM, LEDGER_GROUP, self.consumer, self._claim_idle_ms, start_id=start, count=1000
            )
            start, claimed = reply[0], reply[1]
            if claimed:
                log.info("recorder %s took over %d pending record(s)", self.consumer, len(claimed))
                self._own_pending = True
            if start in (b"0-0", "0-0"):
                return

    async def _read(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        batch = self._config.batch_size
        if self._own_pending:
            reply: Any = await self._redis.xreadgroup(LEDGER_GROUP, self.consumer, {LEDGER_STREAM: "0"}, count=batch)
            entries = reply[0][1] if reply else []
            if entries:
                return list(entries)
            self._own_pending = False
        reply = await self._redis.xreadgroup(
            LEDGER_GROUP, self.consumer, {LEDGER_STREAM: ">"}, count=batch, block=self._block_ms
        )
        return list(reply[0][1]) if reply else []

    async def _write(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Write the batch, retrying until the database takes it, then acknowledge and delete it."""
        records: list[LedgerRecord] = []
        for entry_id, fields in entries:
            try:
                records.append(decode_record(fields[b"r"]))
            except (KeyError, msgspec.DecodeError) as exc:
                log.error("recorder: dropping unreadable ledger entry %s: %s", entry_id, exc)
        delay = self._backoff_s
        while True:
            try:
                WRITES.inc(await write_records(self._engine, records))
                break
            except (SQLAlchemyError, OSError) as exc:
                WRITE_FAILURES.inc()
                log.warning(
                    "recorder: database unavailable (%s); retrying %d record(s) in %.1fs", exc, len(records), delay
                )
                await asyncio.sleep(delay)
                delay = min(_MAX_BACKOFF_S, delay * 2)
        ids = [entry_id for entry_id, _ in entries]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(LEDGER_STREAM, LEDGER_GROUP, *ids)
            pipe.xdel(LEDGER_STREAM, *ids)
            await pipe.execute()

    async def _apply_retention(self) -> None:
        if not self._config.retention_days:
            return
        cutoff = int(time.time() * 1000) - self._config.retention_days * _DAY_MS
        try:
            deleted = await delete_before(self._engine, cutoff)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("recorder: retention not applied (%s); next try in an hour", exc)
            return
        if deleted:
            log.info("recorder: deleted %d row(s) older than %d days", deleted, self._config.retention_days)

    async def _report(self) -> None:
        behind = await backlog(self._redis)
        BACKLOG.set(behind.records)
        BACKLOG_AGE.set(behind.oldest_age_s)
