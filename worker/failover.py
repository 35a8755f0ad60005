"""Routing one generation: which channel and account serve it, and trying the next when one fails.

Candidates come from the routing table in priority order; among channels of equal priority the order is
drawn by weight, and each channel's accounts take turns. Accounts cooling down after a failure go last.
A 429, 5xx, timeout or connection error before any output reached the client is retried on the next
candidate, after a short backoff, and the failing account cools down; once output has gone out, the
error ends the generation. A channel with ``max_concurrency`` takes a place in its running set first
(in Redis, shared by all workers) and is skipped when it is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError

from shared.config import Account, RoutingConfig
from shared.errors import GatewayError, ModelNotFound, RateLimited, UpstreamError, UpstreamTimeout
from shared.events import Finished, TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.keys import COOLDOWN_TOPIC, ChannelKeys
from shared.tracing import AttributeValue, tracing
from worker.cooldowns import CooldownNotice, Cooldowns
from worker.error_texts import ErrorTextGuard
from worker.metrics import UPSTREAM_ERRORS, UPSTREAM_LATENCY
from worker.providers import NO_STATE, ProviderOutput, UpstreamCall
from worker.redaction import scrub

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from shared.catalog import Route
    from shared.generation import GenerationRequest
    from shared.scripts import Scripts
    from worker.accounting import RouteTrail
    from worker.provider_pool import ProviderPool
    from worker.session_turn import SessionTurn

__all__ = ("Attempt", "Router")

log = logging.getLogger(__name__)

_RETRYABLE = (RateLimited, UpstreamError, UpstreamTimeout)
_VISIBLE = (TextDelta, ThinkingDelta, ToolCallStarted, ToolCallDelta)
_MAX_BACKOFF_S = 2.0


class Attempt(msgspec.Struct, frozen=True):
    route: Route
    account: Account


class Router:
    def __init__(
        self,
        *,
        providers: ProviderPool,
        scripts: Scripts,
        routing: RoutingConfig,
        cooldowns: Cooldowns,
        slot_ttl_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self._providers = providers
        self._scripts = scripts
        self._routing = routing
        self._cooldowns = cooldowns
        self._slot_ttl_ms = int(slot_ttl_s * 1000)
        self._rng = rng or random.Random()
        self._turns: dict[str, itertools.count[int]] = {}

    def plan(self, model: str) -> list[Attempt]:
        """Every (channel, account) that could serve ``model``, in the order to try them."""
        ready: list[Attempt] = []
        resting: list[Attempt] = []
        routes = self._providers.catalog.routes(model)
        for _, group in itertools.groupby(routes, key=lambda route: route.channel.priority):
            queues = [self._accounts(route) for route in self._by_weight(list(group))]
            # One account per channel first: a failing channel is more often down as a whole.
            for column in itertools.zip_longest(*queues):
                for attempt in column:
                    if attempt is None:
                        continue
                    cooling = self._cooldowns.cooling(attempt.route.channel.name, attempt.account.name)
                    (resting if cooling else ready).append(attempt)
        return ready + resting

    def _by_weight(self, routes: list[Route]) -> list[Route]:
        if len(routes) < 2:
            return routes
        # Weighted order without replacement (Efraimidis-Spirakis): key u^(1/w), largest first.
        return sorted(routes, key=lambda route: self._rng.random() ** (1 / route.channel.weight), reverse=True)

    def _accounts(self, route: Route) -> list[Attempt]:
        accounts = route.channel.resolved_accounts()
        turn = next(self._turns.setdefault(route.channel.name, itertools.count()))
        start = turn % len(accounts)
        return [Attempt(route, account) for account in accounts[start:] + accounts[:start]]

    async def stream(
        self, request: GenerationRequest, turn: SessionTurn | None, trail: RouteTrail | None = None
    ) -> AsyncGenerator[ProviderOutput, None]:
        """The generation's output, from the first candidate that does not fail before answering;
        ``trail`` learns each attempt's channel and account."""
        plan = self.plan(request.model)
        if not plan:
            raise ModelNotFound(request.model)
        failure: GatewayError | None = None
        tried = 0
        for attempt in plan:
            if tried == self._routing.max_attempts:
                break
            async with self._slot(attempt, request.id) as admitted:
                if not admitted:
                    continue
                if tried:
                    await asyncio.sleep(self._backoff(tried))
                tried += 1
                if trail is not None:
                    trail.attempt(attempt.route.channel.name, attempt.account.name)
                answered = False
                span = _attempt_span(attempt, tried) if tracing.enabled else None
                try:
                    async for output in self._call(attempt, request, turn, span):
                        answered = answered or isinstance(output, _VISIBLE)
                        yield output
                    return
                except _RETRYABLE as error:
                    if answered:
                        raise
                    failure = error
                    log.info(
                        "generation %s: %s/%s failed (%s); %s",
                        request.id,
                        attempt.route.channel.name,
                        attempt.account.name,
                        error.message,
                        "trying the next" if tried < self._routing.max_attempts else "giving up",
                    )
                    await self._cool_down(attempt, error)
                finally:
                    if span is not None:
                        span.end()
        if failure is not None:
            raise failure
        raise RateLimited(
            f"Every channel serving '{request.model}' is at its concurrency limit.", code="channels_busy", retry_after=1
        )

    async def _call(
        self, attempt: Attempt, request: GenerationRequest, turn: SessionTurn | None, span: Span | None
    ) -> AsyncGenerator[ProviderOutput, None]:
        channel = attempt.route.channel
        state = turn.provider_state(channel.name) if turn is not None else NO_STATE
        traceparent = tracing.traceparent(span) if span is not None else None
        call = UpstreamCall(request, attempt.route.upstream_model, attempt.account, state, traceparent)
        guard = ErrorTextGuard(channel.error_texts)
        provider_type = channel.__struct_config__.tag
        sent_at: float | None = time.perf_counter()
        # Usage is held to the end, so a failed attempt's figures never reach the client.
        usage: list[Usage] = []
        try:
            async with (
                self._providers.use(channel.name) as provider,
                contextlib.aclosing(provider.stream(call)) as outputs,
            ):
                async for output in outputs:
                    if sent_at is not None and isinstance(output, _VISIBLE):
                        UPSTREAM_LATENCY.labels(provider_type).observe(time.perf_counter() - sent_at)
                        sent_at = None
                    if isinstance(output, TextDelta):
                        text = guard.feed(output.text)
                        if not text:
                            continue
                        output = TextDelta(text)
                    elif isinstance(output, Usage):
                        usage.append(output)
                        continue
                    elif isinstance(output, Finished) and (matched := guard.matched()) is not None:
                        raise UpstreamError(
                            f"upstream '{channel.name}' answered with an error text: {matched}",
                            code="upstream_error_text",
                        )
                    held = guard.release()
                    if held:
                        yield TextDelta(held)
                    if isinstance(output, Finished):
                        _trace_result(span, output, usage)
                        for figures in usage:
                            yield figures
                    yield output
        except GatewayError as error:
            UPSTREAM_ERRORS.labels(provider_type, error.code or error.type).inc()
            # Every error out of here is relayed and logged: none may carry the channel's keys.
            error.message = scrub(error.message, (account.api_key for account in channel.resolved_accounts()))
            error.args = (error.message,)
            _trace_failure(span, error)
            raise

    def _backoff(self, tried: int) -> float:
        delay = self._routing.backoff_s * 2 ** (tried - 1)
        return float(min(_MAX_BACKOFF_S, delay * self._rng.uniform(0.5, 1.5)))

    @contextlib.asynccontextmanager
    async def _slot(self, attempt: Attempt, generation_id: str) -> AsyncIterator[bool]:
        limit = attempt.route.channel.max_concurrency
        if limit <= 0:
            yield True
            return
        key = ChannelKeys.running(attempt.route.channel.name)
        admitted = bool(await self._scripts.slot(keys=[key], args=[generation_id, limit, self._slot_ttl_ms]))
        if not admitted:
            yield False
            return
        keeper = asyncio.create_task(self._keep_slot(key, generation_id, limit))
        try:
            yield True
        finally:
            keeper.cancel()
            with contextlib.suppress(RedisError):
                await asyncio.shield(self._scripts.redis.zrem(key, generation_id))

    async def _keep_slot(self, key: str, generation_id: str, limit: int) -> None:
        while True:
            await asyncio.sleep(self._slot_ttl_ms / 3000)
            with contextlib.suppress(RedisError):
                await self._scripts.slot(keys=[key], args=[generation_id, limit, self._slot_ttl_ms])

    async def _cool_down(self, attempt: Attempt, error: GatewayError) -> None:
        channel = attempt.route.channel
        seconds = channel.cooldown_s if channel.cooldown_s is not None else self._routing.cooldown_s
        if isinstance(error, RateLimited) and error.retry_after:
            seconds = max(seconds, error.retry_after)
        if seconds <= 0:
            return
        notice = CooldownNotice(channel.name, attempt.account.name, seconds, f"{error.code}: {error.message}")
        self._cooldowns.apply(notice)
        try:
            redis = self._scripts.redis
            await redis.set(
                ChannelKeys.health(channel.name, attempt.account.name), notice.reason, px=int(seconds * 1000)
            )
            await redis.publish(COOLDOWN_TOPIC, msgspec.json.encode(notice))
        except RedisError as exc:
            log.warning("could not share the cooldown of %s/%s: %s", channel.name, attempt.account.name, exc)


_GEN_AI_PROVIDERS = {"openai": "openai", "openai_responses": "openai", "anthropic": "anthropic"}


def _attempt_span(attempt: Attempt, tried: int) -> Span:
    """The span of one upstream attempt: which channel and account, in GenAI terms where they exist."""
    channel = attempt.route.channel
    tag = str(channel.__struct_config__.tag)
    provider = _GEN_AI_PROVIDERS.get(tag, tag)
    attributes: dict[str, AttributeValue] = {
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": attempt.route.upstream_model,
        "aiapi.channel": channel.name,
        "aiapi.account": attempt.account.name,
        "aiapi.attempt": tried,
    }
    return tracing.start(f"upstream {channel.name}", kind="client", attributes=attributes)


def _trace_failure(span: Span | None, error: GatewayError) -> None:
    if span is not None:
        tracing.fail(span, f"{error.code or error.type}: {error.message}")


def _trace_result(span: Span | None, finished: Finished, usage: list[Usage]) -> None:
    if span is None:
        return
    attributes: dict[str, AttributeValue] = {"gen_ai.response.finish_reasons": (finished.finish_reason,)}
    if usage:
        attributes["gen_ai.usage.input_tokens"] = sum(figures.input_tokens for figures in usage)
        attributes["gen_ai.usage.output_tokens"] = sum(figures.output_tokens for figures in usage)
    span.set_attributes(attributes)
