"""Delivering a generation's events, in order and without loss, to the API instance holding the client.

Workers append every event to the generation's log (a Redis stream) and publish the same bytes on this
instance's pub/sub topic. Pub/sub is only the fast path: it loses messages published while a connection is
down or a reader is slow. So each :class:`Subscription` numbers what it receives, and whenever it sees
a gap, or hears nothing for ``idle_check_s``, it reads the log. The topic is subscribed once per
process at start, before any job is enqueued, so there is no subscribe-after-publish race; while it
lives, the process keeps its presence key (:mod:`api.delivery.presence`) so that workers know someone listens.

A slow client must not make this process hold its whole generation in memory: a subscription buffers
at most ``max_buffered_events`` events ahead of its reader and drops the rest, which it reads back from
the log, a batch at a time, as the reader catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, NoReturn

from redis.exceptions import RedisError

from api.delivery.presence import Presence
from api.metrics import IN_FLIGHT, QUEUE_WAIT
from shared.batching import RedisBatcher
from shared.errors import GenerationLost, RedisUnavailable, ServiceUnavailable, WorkerLost
from shared.events import TERMINAL_EVENTS, Envelope, GenerationEvent, Started, decode_batch, decode_envelope
from shared.keys import GenerationKeys, relay_topic
from shared.redis_retry import RESUBSCRIBE_S, Outage, subscribe_forever
from shared.tracing import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from redis.asyncio import Redis

    from api.draining import Drain
    from shared.config import RelayConfig

__all__ = ("LogTail", "Relay", "Subscription")

_IDLE_GROWTH = 4


class Relay:
    """This process's one pub/sub connection, fanned out to the subscriptions of its generations."""

    def __init__(
        self,
        redis: Redis,
        *,
        instance_id: str,
        config: RelayConfig,
        outage_grace_s: float = 0.0,
        drain: Drain | None = None,
    ) -> None:
        self._redis = redis
        self.batcher = RedisBatcher(redis)
        """Log reads and liveness checks of all subscriptions: idle streams check at about the same time."""
        self.drain = drain
        """This process's shutdown state: once its drain period is over, every subscription ends."""
        self._config = config
        self.outage_grace_s = outage_grace_s
        """How long a subscription waits out an unreachable Redis before it fails its stream."""
        self.topic = relay_topic(instance_id)
        self._subscriptions: dict[str, Subscription] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[NoReturn] | None = None
        self._presence = Presence(redis, self.topic, ttl_s=config.presence_ttl_s)

    async def start(self, wait_s: float = 5.0) -> None:
        self._task = asyncio.create_task(
            subscribe_forever(
                self._redis,
                [self.topic],
                self._dispatch,
                name="relay subscription",
                on_subscribed=self._subscribed,
                on_lost=self._lost,
                retry_s=RESUBSCRIBE_S,
            )
        )
        self._presence.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._ready.wait()

    async def stop(self) -> None:
        await self._presence.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once the topic is subscribed; raise 503 if that does not happen in time."""
        if self._ready.is_set():
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            raise RedisUnavailable() from None

    def subscribe(self, generation_id: str, *, queue_timeout_s: float | None = None) -> Subscription:
        """Follow a generation whose worker publishes to this instance (its ``reply_to`` is our topic)."""
        subscription = Subscription(self, generation_id, queue_timeout_s=queue_timeout_s)
        self._subscriptions[generation_id] = subscription
        # Set, not a function read at scrape time: in multiprocess mode only values written are seen.
        IN_FLIGHT.set(len(self._subscriptions))
        return subscription

    def tail(self, generation_id: str, *, queue_timeout_s: float | None = None) -> Subscription:
        """Follow any generation from its log alone, e.g. one started through another API instance."""
        return LogTail(self, generation_id, queue_timeout_s=queue_timeout_s)

    def _forget(self, generation_id: str) -> None:
        self._subscriptions.pop(generation_id, None)
        IN_FLIGHT.set(len(self._subscriptions))

    def _subscribed(self) -> None:
        self._ready.set()
        # Whatever was published while we were not subscribed is only in the logs now.
        for subscription in list(self._subscriptions.values()):
            subscription.poke()

    def _lost(self) -> None:
        self._ready.clear()
        for subscription in list(self._subscriptions.values()):
            subscription.alarm()

    def _dispatch(self, _topic: bytes, data: bytes) -> None:
        batch = decode_batch(data)
        subscription = self._subscriptions.get(batch[0].generation_id) if batch else None
        if subscription is not None:
            for envelope in batch:
                subscription.deliver(envelope)


class Subscription:
    """The ordered events of one generation. Iterate :meth:`events`; call :meth:`close` when done."""

    def __init__(self, relay: Relay, generation_id: str, *, queue_timeout_s: float | None = None) -> None:
        self._relay = relay
        self._redis = relay._redis
        self._config = relay._config
        self._queue_timeout_s = self._config.queue_timeout_s if queue_timeout_s is None else queue_timeout_s
        self.generation_id = generation_id
        self._keys = GenerationKeys(generation_id)
        self._held: dict[int, GenerationEvent] = {}
        self._next = 0
        self._waiter: asyncio.Future[bool] | None = None
        """The reader's wait for events (:meth:`_wait`), when it waits."""
        self._started = False
        self._limit = self._config.max_buffered_events
        self._behind = False
        """Events were dropped for want of room: they are to be read from the log."""
        self._outage = Outage(relay.outage_grace_s)
        self._alarmed = False
        self._idle_s = self._config.idle_check_s
        """Silence before the next check: doubled after each check that found the stream healthy (up to
        :data:`_IDLE_GROWTH` times ``idle_check_s``), so a generation whose tokens come about as far apart
        as the check interval is not checked at every token."""

    def deliver(self, envelope: Envelope) -> None:
        if envelope.seq < self._next or envelope.seq in self._held:
            return
        if len(self._held) >= self._limit:
            self._behind = True
            return
        self._held[envelope.seq] = envelope.event
        self._wake(True)

    @property
    def buffered(self) -> int:
        """Events received ahead of the reader: at most ``max_buffered_events``."""
        return len(self._held)

    def ready(self) -> bool:
        """Whether the next event is already here, so iterating will not wait."""
        return self._next in self._held

    def poke(self) -> None:
        """Make the reader look at the log now (after a reconnect, messages may be missing)."""
        self._wake(True)

    def _wake(self, arrived: bool) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(arrived)

    def alarm(self) -> None:
        """Check the stream now and at the base interval from here on: Redis may be going away."""
        self._idle_s = self._config.idle_check_s
        self._alarmed = True
        self._wake(True)

    def close(self) -> None:
        self._relay._forget(self.generation_id)

    async def events(self) -> AsyncGenerator[GenerationEvent | None, None]:
        """Events in order, ending after the terminal one. ``None`` marks an idle period (for keep-alives).

        Raises :class:`WorkerLost` if the worker stops without finishing, :class:`GenerationLost` if Redis
        lost the generation's lease and log together (a restart without its data), :class:`ServiceUnavailable` if
        no worker takes the job in time or Redis is unreachable, or the process is done draining.
        """
        queued_at = time.monotonic()
        drain = self._relay.drain
        relaying: Span | None = None
        try:
            while True:
                if drain is not None and drain.draining:
                    drain.check()
                while self._next in self._held:
                    event = self._held.pop(self._next)
                    self._next += 1
                    if isinstance(event, Started) and not self._started:
                        self._started = True
                        QUEUE_WAIT.observe(time.monotonic() - queued_at)
                        if tracing.enabled:
                            relaying = _trace_queue_wait(queued_at)
                    yield event
                    if isinstance(event, TERMINAL_EVENTS):
                        return
                if self._held or self._behind:
                    self._behind = False
                    await self._read_log()
                    if self._next in self._held:
                        continue
                if await self._wait() and not self._alarmed:
                    continue
                self._alarmed = False
                if await self._idle_check(queued_at):
                    yield None
        finally:
            if relaying is not None:
                relaying.end()

    async def _wait(self) -> bool:
        """Wait up to the idle interval for new events; say whether any arrived.

        A future and a timer per wait, not an Event and ``asyncio.timeout``: this runs for every batch of
        events relayed, and the timeout's bookkeeping cost more than the wait itself.
        """
        if self._next in self._held:  # it came while the reader was reading the log
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(self._idle_s, self._wake, False)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _idle_check(self, queued_at: float) -> bool:
        """After a silence: read the log for events pub/sub lost and, once started, ask whether the
        worker still holds the lease (both in one round trip); ``True`` when the stream is still idle."""
        batcher = self._relay.batcher
        calls = [self._log_read()]
        if self._started:
            calls.append(batcher.command("EXISTS", self._keys.lease))
        answers = await asyncio.gather(*calls, return_exceptions=True)
        self._take_log(answers[0])
        base = self._config.idle_check_s
        if self._next in self._held:
            self._idle_s = base
            return False
        if not self._started:
            self._check_queue_wait(queued_at)
        else:
            await self._check_alive(answers[1])
        # Only a check that Redis answered lets the next one wait longer.
        self._idle_s = base if self._outage.ongoing else min(self._idle_s * 2, base * _IDLE_GROWTH)
        return True

    def _log_read(self) -> asyncio.Future[Any]:
        start = f"0-{self._next + 1}"
        return self._relay.batcher.command("XRANGE", self._keys.events, start, "+", "COUNT", self._limit)

    async def _read_log(self) -> None:
        try:
            self._take_log(await self._log_read())
        except RedisError as exc:
            self._take_log(exc)

    def _take_log(self, entries: Any) -> None:
        """Deliver what a read of the log found (or note that Redis did not answer)."""
        if isinstance(entries, RedisError):
            self._unreachable(entries)
            return
        if isinstance(entries, BaseException):
            raise entries
        self._outage.ended()
        for _, fields in entries:
            self.deliver(decode_envelope(fields[b"e"]))

    def _unreachable(self, exc: RedisError) -> None:
        """Redis did not answer: fail the stream once that has lasted the outage grace. Until then the
        reader idles (keep-alives) while the relay reconnects, and the log fills any gap afterwards."""
        if self._outage.outlasts_grace():
            raise RedisUnavailable("The gateway lost its connection to Redis.") from exc

    def _check_queue_wait(self, queued_at: float) -> None:
        if time.monotonic() - queued_at > self._queue_timeout_s:
            raise ServiceUnavailable(
                f"No worker took the request within {self._queue_timeout_s:g} s.",
                code="no_worker_available",
            )

    async def _check_alive(self, leased: Any) -> None:
        """Act on the answer to whether the lease exists (or on Redis's failure to answer)."""
        if isinstance(leased, BaseException):
            self._take_log(leased)  # raises, or notes the outage
            return
        if not leased:
            # The worker writes its last event before it drops the lease: look once more before giving up.
            await self._read_log()
            if self._next in self._held:
                return
            # A dead worker's log stays behind; a log gone as well means Redis lost the generation.
            try:
                logged = await self._redis.exists(self._keys.events)
            except RedisError as exc:
                self._unreachable(exc)
                return
            if not logged:
                raise GenerationLost(
                    "The gateway's store lost this generation (Redis restarted without its data); retry the request."
                )
            raise WorkerLost("The worker running this request stopped before finishing it.")


def _trace_queue_wait(queued_at: float) -> Span:
    """Record the queue wait that just ended (a span from ``queued_at``), and start the relay's span."""
    now_ns = time.time_ns()
    waited = tracing.start("queue wait", start_ns=now_ns - int((time.monotonic() - queued_at) * 1e9))
    waited.end(now_ns)
    return tracing.start("relay", start_ns=now_ns)


class LogTail(Subscription):
    """A subscription fed by blocking reads of the log instead of this instance's topic."""

    async def _wait(self) -> bool:
        try:
            found = await self._redis.xread(
                {self._keys.events: f"0-{self._next}"}, count=self._limit, block=int(self._config.idle_check_s * 1000)
            )
        except RedisError as exc:
            self._unreachable(exc)
            await asyncio.sleep(self._config.idle_check_s)
            return False
        for _, entries in found:
            for _, fields in entries:
                self.deliver(decode_envelope(fields[b"e"]))
        return bool(found)
