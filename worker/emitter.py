"""Numbering a generation's events and writing them to Redis without stalling the provider.

``send`` returns at once; a background flush writes whatever has accumulated in one ``emit.lua`` call
(append to the log, publish, all fenced by the lease; the batch with the terminal event also drops the
lease). Under load this batches events naturally; when idle each event goes out alone, immediately.
A Redis that goes away (a restart, a failover) is waited out for the outage grace and the batch sent
again; meanwhile events queue up, and past the backlog limit the provider waits too.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from shared.events import TERMINAL_EVENTS, Envelope, GenerationEvent, encode_envelope
from shared.redis_retry import REDIS_UNREACHABLE, Outage
from worker.lease import LeaseLost

if TYPE_CHECKING:
    from shared.keys import GenerationKeys
    from shared.scripts import Scripts
    from worker.lease import GenerationLease

__all__ = ("EventEmitter",)

_BACKLOG_LIMIT = 256
"""Pending events beyond which ``send`` waits for Redis, so a stalled Redis cannot grow memory."""


class EventEmitter:
    def __init__(
        self,
        scripts: Scripts,
        keys: GenerationKeys,
        *,
        generation_id: str,
        lease: GenerationLease,
        topic: str,
        ttl_s: int,
        outage_grace_s: float = 0.0,
    ) -> None:
        self._scripts = scripts
        self._outage_grace_s = outage_grace_s
        self._keys = [keys.events, keys.lease]
        self._generation_id = generation_id
        self._lease = lease
        self._head: list[str | int] = [lease.token, ttl_s * 1000, topic]
        self._pending: list[tuple[int, bytes]] = []
        self._seq = 0
        self._flusher: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def send(self, event: GenerationEvent) -> None:
        self._queue(event)
        self._start_flush()
        if len(self._pending) > _BACKLOG_LIMIT:
            await self.drain()

    def announce(self, event: GenerationEvent, *, within_s: float) -> None:
        """Queue ``event`` to go out with the next one, or alone after ``within_s``: an upstream that
        answers at once then costs no write of its own, nor a wake-up of the API, while its first token
        is on the way."""
        self._queue(event)
        self._timer = asyncio.get_running_loop().call_later(within_s, self._start_flush)

    async def drain(self) -> None:
        """Wait until everything sent so far is in Redis; raise what stopped it if it could not be."""
        self._start_flush()
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        if self._failure is not None:
            raise self._failure

    def _queue(self, event: GenerationEvent) -> None:
        if self._failure is not None:
            raise self._failure
        self._pending.append((self._seq, encode_envelope(Envelope(self._generation_id, self._seq, event))))
        self._seq += 1
        if isinstance(event, TERMINAL_EVENTS):
            self._lease.ending = True

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                # The terminal event is queued last: once it is, the batch just taken carries it.
                final = self._lease.ending
                published = b"[" + b",".join(data for _, data in batch) + b"]"
                args: list[str | int | bytes] = [*self._head, int(final), published]
                for seq, data in batch:
                    args += (seq, data)
                if not await self._write(args):
                    raise LeaseLost(self._generation_id)
                self._lease.released = final
        except Exception as exc:  # surfaced to the sender by send() and drain()
            self._failure = exc
            self._pending.clear()

    async def _write(self, args: list[str | int | bytes]) -> bool:
        """One ``emit.lua`` call, sent again while Redis is unreachable, for up to the outage grace."""
        outage = None
        while True:
            try:
                return bool(await self._scripts.batcher.script(self._scripts.emit, self._keys, args))
            except REDIS_UNREACHABLE as exc:
                outage = outage or Outage(self._outage_grace_s)
                await outage.wait_to_retry(exc)
