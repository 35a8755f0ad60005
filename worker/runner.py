"""Running one generation: lease, provider call, events, and a terminal event whatever happens.

Every generation the worker starts ends with exactly one terminal event (``finished`` or ``failed``) in
its log, unless the worker lost the lease (then the new holder, or the API's liveness check, speaks for
it) or Redis itself is gone (then the API reports the worker lost once the lease expires).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from typing import TYPE_CHECKING, assert_never

import msgspec
from redis.exceptions import RedisError

from shared import logs
from shared.errors import ClientClosed, Conflict, GatewayError, InternalError, ServiceUnavailable
from shared.events import Failed, Finished, Started, Usage
from shared.keys import GenerationKeys
from shared.ledger.prices import PriceBook
from shared.tracing import tracing
from shared.usage import UsageLedger
from worker.accounting import Tally
from worker.emitter import EventEmitter
from worker.lease import Acquired, GenerationLease, LeaseLost, StopReason
from worker.metrics import GENERATIONS, IN_FLIGHT
from worker.presence import ApiPresence
from worker.session_turn import SessionTurn

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from shared.config import Settings
    from shared.generation import GenerationRequest
    from shared.scripts import Scripts
    from worker.failover import Router

__all__ = ("GenerationRunner", "stop_error")

log = logging.getLogger(__name__)

_ANNOUNCE_S = 0.05
"""How long an event nobody waits for (``Started``, ``Usage``) may wait to share a write with the next."""


def stop_error(reason: StopReason) -> GatewayError | None:
    """The error a generation stopped for ``reason`` reports, or None when it must report nothing (a
    lost lease: the new holder, or the API's liveness check, speaks for it)."""
    match reason:
        case StopReason.CANCELLED:
            return ClientClosed("The request was cancelled.")
        case StopReason.SHUTDOWN:
            return ServiceUnavailable("The worker shut down before the generation finished.", code="worker_shutdown")
        case StopReason.SUPERSEDED:
            return Conflict("A newer request in this conversation took over.", code="superseded")
        case StopReason.ORPHANED:
            return ClientClosed("The API instance holding the client's connection is gone.", code="api_gone")
        case StopReason.LEASE_LOST:
            return None
        case _:
            assert_never(reason)


class GenerationRunner:
    def __init__(
        self,
        *,
        scripts: Scripts,
        settings: Settings,
        router: Router,
        worker_id: str,
        prices: PriceBook | None = None,
    ) -> None:
        self._scripts = scripts
        self._settings = settings
        self._router = router
        self.worker_id = worker_id
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stop_reasons: dict[str, StopReason] = {}
        self._ledger = UsageLedger(scripts.redis)
        self._prices = prices or PriceBook(scripts.redis, settings.prices)
        self._presence = ApiPresence(scripts.batcher)

    @property
    def running(self) -> int:
        return len(self._running)

    def cancel(self, generation_id: str, reason: StopReason = StopReason.CANCELLED) -> bool:
        """Stop a generation running in this process; the provider call is cancelled with it."""
        task = self._running.get(generation_id)
        if task is None:
            return False
        self._stop_reasons.setdefault(generation_id, reason)
        task.cancel()
        return True

    def new_lease(self, generation_id: str) -> GenerationLease:
        """A lease on ``generation_id`` for this worker, not taken yet."""
        token = f"{self.worker_id}:{os.urandom(6).hex()}"
        return GenerationLease(self._scripts, GenerationKeys(generation_id), token, self._lease_ttl)

    async def reject(self, generation_id: str, message: str, lease: GenerationLease | None = None) -> None:
        """Fail a generation whose request cannot be run at all (e.g. an API newer than this worker).

        Its reply topic is unknown, so the failure goes to the log only; the API finds it there at
        its next idle check.
        """
        keys = GenerationKeys(generation_id)
        lease = lease or self.new_lease(generation_id)
        if await lease.acquire() is not Acquired.TAKEN:
            return
        emitter = EventEmitter(
            self._scripts, keys, generation_id=generation_id, lease=lease, topic="", ttl_s=self._event_ttl
        )
        log.error("generation %s rejected: %s", generation_id, message)
        try:
            await emitter.send(Failed(InternalError(message, code="unreadable_request").info()))
            await emitter.drain()
        finally:
            await self._release(lease)

    async def run(self, request: GenerationRequest, lease: GenerationLease | None = None) -> None:
        """Run ``request`` under ``lease`` (one of :meth:`new_lease`, perhaps taken with the job's claim)."""
        logs.request_id.set(request.request_id)
        logs.generation_id.set(request.id)
        keys = GenerationKeys(request.id)
        lease = lease or self.new_lease(request.id)
        turn = self._turn(request)
        claim = self._claim_span(request) if tracing.enabled else None
        acquired = await lease.acquire()
        if claim is not None:
            claim.set_attribute("aiapi.claim", acquired.name.lower())
            claim.end()
        if acquired is not Acquired.TAKEN:
            log.info("generation %s not started: %s", request.id, acquired.name.lower())
            if acquired is Acquired.CANCELLED and turn is not None:
                await turn.release()
            return
        emitter = EventEmitter(
            self._scripts,
            keys,
            generation_id=request.id,
            lease=lease,
            topic=request.reply_to,
            ttl_s=request.retain_s or self._event_ttl,
            outage_grace_s=self._settings.redis.outage_grace_s,
        )
        task = asyncio.current_task()
        assert task is not None
        self._running[request.id] = task

        listening = None
        if request.reply_to and not request.detached:
            listening = functools.partial(self._presence.alive, request.reply_to)
        heartbeat = asyncio.create_task(lease.keep(functools.partial(self.cancel, request.id), turn, listening))
        tally = Tally(request, self._settings.ledger, self._prices)
        outcome = "abandoned"
        started = time.perf_counter()
        IN_FLIGHT.inc()
        try:
            generate = self._generate_traced if tracing.enabled else self._generate
            outcome = await generate(request, emitter, turn, tally)
        except asyncio.CancelledError:
            reason = self._stop_reasons.get(request.id, StopReason.SHUTDOWN)
            outcome = reason.value
            error = stop_error(reason)
            if error is not None:
                tally.error = error.info()
                await asyncio.shield(self._fail(request, emitter, error, turn))
        finally:
            IN_FLIGHT.dec()
            GENERATIONS.labels(outcome).inc()
            heartbeat.cancel()
            self._running.pop(request.id, None)
            self._stop_reasons.pop(request.id, None)
            await asyncio.shield(self._release(lease))
            if turn is not None:
                await asyncio.shield(turn.release())
            await asyncio.shield(tally.settle(self._ledger, outcome=outcome, elapsed_s=time.perf_counter() - started))

    def _turn(self, request: GenerationRequest) -> SessionTurn | None:
        if request.session is None:
            return None
        return SessionTurn(self._scripts, request, request.session, ttl_s=self._settings.sessions.ttl_s)

    @property
    def _event_ttl(self) -> int:
        return self._settings.relay.event_ttl_s

    @property
    def _lease_ttl(self) -> float:
        return self._settings.worker.lease_ttl_s

    def _claim_span(self, request: GenerationRequest) -> Span:
        attributes = {"aiapi.generation_id": request.id, "aiapi.worker_id": self.worker_id}
        return tracing.start("claim", kind="consumer", traceparent=request.traceparent, attributes=attributes)

    async def _generate_traced(
        self, request: GenerationRequest, emitter: EventEmitter, turn: SessionTurn | None, tally: Tally
    ) -> str:
        """:meth:`_generate` inside the generation's span, the parent of its upstream attempts."""
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": request.model}
        span = tracing.start(f"chat {request.model}", traceparent=request.traceparent, attributes=attributes)
        outcome = "cancelled"
        try:
            with tracing.active(span):
                outcome = await self._generate(request, emitter, turn, tally)
            return outcome
        finally:
            usage, estimated = tally.figures()
            span.set_attributes(
                {
                    "gen_ai.usage.input_tokens": usage.input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "aiapi.usage_estimated": estimated,
                    "aiapi.outcome": outcome,
                }
            )
            if outcome != "completed":
                tracing.fail(span, outcome)
            span.end()

    async def _generate(
        self, request: GenerationRequest, emitter: EventEmitter, turn: SessionTurn | None, tally: Tally
    ) -> str:
        """Run the generation to its terminal event; say how it ended (the ``outcome`` metric label)."""
        try:
            emitter.announce(Started(self.worker_id), within_s=_ANNOUNCE_S)
            waiting_for_first = True
            async with contextlib.aclosing(self._router.stream(request, turn, tally.trail)) as outputs:
                async for output in outputs:
                    if isinstance(output, Finished):
                        if turn is not None:
                            marker = turn.marker()
                            if marker is not None:
                                await emitter.send(marker)
                            await turn.bind()
                            # The client may send its next turn the moment it sees the end: free the gate first.
                            await turn.release()
                        output = msgspec.structs.replace(output, finished_at=int(time.time()))
                        if tracing.enabled:
                            tracing.annotate({"gen_ai.response.finish_reasons": (output.finish_reason,)})
                    elif turn is not None:
                        turn.observe(output)
                    tally.observe(output)
                    if isinstance(output, Usage):
                        # Nobody needs usage before the end, which follows: one write for both.
                        emitter.announce(output, within_s=_ANNOUNCE_S)
                    else:
                        await emitter.send(output)
                    if waiting_for_first:
                        # The first token leaves before the provider reads on: an upstream that has
                        # already sent more would otherwise be parsed first, all of it.
                        waiting_for_first = False
                        await emitter.drain()
            await emitter.drain()
        except GatewayError as error:
            tally.error = error.info()
            await self._fail(request, emitter, error, turn)
            return "failed"
        except (LeaseLost, RedisError) as exc:
            log.warning("generation %s abandoned: %r", request.id, exc)
            return "abandoned"
        except Exception:
            log.exception("generation %s failed", request.id)
            internal = InternalError("The gateway failed while generating.")
            tally.error = internal.info()
            await self._fail(request, emitter, internal, turn)
            return "failed"
        return "completed"

    async def _fail(
        self, request: GenerationRequest, emitter: EventEmitter, error: GatewayError, turn: SessionTurn | None
    ) -> None:
        log.info("generation %s failed: %s %s", request.id, error.status, error.message)
        try:
            if turn is not None:
                await turn.release()
            await emitter.send(Failed(error.info()))
            await emitter.drain()
        except (LeaseLost, RedisError) as exc:
            log.warning("generation %s: could not report failure: %r", request.id, exc)

    async def _release(self, lease: GenerationLease) -> None:
        try:
            await lease.release()
        except RedisError as exc:
            log.warning("lease release failed (it will expire): %s", exc)
